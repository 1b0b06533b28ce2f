"""Equal-budget, validation-only hyper-parameter search (Optuna) and tuned points.

``python -m slifmr.tune model=<m> dataset=<d> tune.trials=<n>`` searches the model's declared
space (``conf/tune/<m>.yaml``, :mod:`slifmr.tune.space`) with every trial a normal training run
that never sees the test split (:mod:`slifmr.tune.search`); ``tuned=<set>`` on a train command
runs each model at its selected point (:mod:`slifmr.tune.points`).
"""
