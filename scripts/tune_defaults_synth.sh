#!/usr/bin/env bash
# Validation-only re-check of SLIF-MR's four non-paper defaults (readout, prune_ratio, beta, gamma)
# on the synthetic side-information family with its OWN data seed (dataset.data_seed=1; the study
# in sweeps/side_info.yaml uses data_seed=0), informative side information, 5/10/30 interactions per
# user, seed 1. test=false: no test number is computed. One change at a time from the defaults.
# Read with: python scripts/summarize_val.py outputs/tune_synth   (valid Recall@20 per variant)
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${1:-outputs/tune_synth}
PY=${PY:-.venv/bin/python}
common="dataset=synthetic dataset.data_seed=1 dataset.per_user=5,10,30 model=slifmr seed=1 test=false
 trainer.max_epochs=80 trainer.enable_progress_bar=false callbacks.progress_bar=null logger=csv"
run() {  # name, overrides...
  local name=$1; shift
  "$PY" -m slifmr.train -m $common "$@" hydra.sweep.dir="$out/$name" \
    'hydra.sweep.subdir=${dataset.name}' >"$out/$name.log" 2>&1
}
mkdir -p "$out"
run defaults
run readout_residual model.readout=residual
run prune_0 model.prune_ratio=0.0
run beta_0.1 model.consistency.beta=0.1
run gamma_1e-3 model.consistency.gamma=1e-3
run prune_0.5 model.prune_ratio=0.5
