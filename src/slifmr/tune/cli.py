"""The Hydra entry point of the search: compose ``conf/tune.yaml``, run (or resume) the study."""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig

from slifmr.config import register_resolvers

log = logging.getLogger(__name__)
register_resolvers()


@hydra.main(version_base="1.3", config_path="pkg://slifmr.conf", config_name="tune")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from slifmr.tune.search import run_search

    summary = run_search(cfg, [str(o) for o in HydraConfig.get().overrides.task])
    keys = ("model", "dataset", "budget", "trials", "completed", "pruned", "duplicates", "epochs_run",
            "epochs_saved_by_pruning", "trial_seconds", "session_wall_s")
    print(json.dumps({k: summary[k] for k in keys} | {"best": summary["best"]}, indent=1), flush=True)
    return summary["best"]["value"] if summary["best"] else None
