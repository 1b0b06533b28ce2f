#!/usr/bin/env bash
# Validation-only re-check of SLIF-MR's four non-paper defaults (readout, prune_ratio, beta, gamma)
# on the synthetic side-information family with its OWN data seed (dataset.data_seed=1; the study
# in sweeps/side_info.yaml uses data_seed=0), informative side information, seed 1, 1000 users x
# 400 items. test=false: no test number is computed. One change at a time from the defaults.
# Read: valid Recall@20 and best epoch in each run's record.json (outputs/tune_synth/<variant>/<dataset>/).
# One variant: ONLY=beta_0.1 ONLY_ARGS=model.consistency.beta=0.1 LEVELS=5,10 scripts/tune_defaults_synth.sh
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${1:-outputs/tune_synth}
PY=${PY:-.venv/bin/python}
run() {  # name, levels, overrides...
  local name=$1 levels=$2; shift 2
  "$PY" -m slifmr.train -m dataset=synthetic dataset.data_seed=1 dataset.per_user="$levels" model=slifmr seed=1 \
    test=false trainer.max_epochs=80 trainer.enable_progress_bar=false callbacks.progress_bar=null logger=csv \
    "$@" hydra.sweep.dir="$out/$name" 'hydra.sweep.subdir=${dataset.name}' >"$out/$name.log" 2>&1
}
mkdir -p "$out"
if [ -n "${ONLY:-}" ]; then run "$ONLY" "${LEVELS:-5,10,30}" ${ONLY_ARGS:-}; exit; fi
# 2026-11-27 (issue 14), a_block cosine, while prune_ratio 0.7 was the default:
run defaults 5,10,30 model.prune_ratio=0.7
run readout_residual 5,10,30 model.prune_ratio=0.7 model.readout=residual
run prune_0 5,10,30 model.prune_ratio=0.0
# then at the new default prune_ratio 0 (compare with prune_0), 5 and 10 per user only (CPU):
run beta_0.1 5,10 model.consistency.beta=0.1
run gamma_1e-3 5,10 model.consistency.gamma=1e-3
