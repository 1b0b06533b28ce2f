"""``skip_completed=true``: a job whose run directory already holds a finished run of the same
overrides is not trained again.

A study's jobs are named by their overrides (``conf/hydra/study.yaml``: no timestamp), so running
a killed grid again reaches the same directories. With the switch on, each job first reads its
directory's ``record.json``: a completed record of the same overrides (the switch itself aside),
with test metrics when the job tests, stands for the job, and its metrics are returned as if it had
run. Anything else (no record, a run that did not finish, other overrides) runs as usual and
replaces the directory's contents, as a re-run always did.
"""

from __future__ import annotations

from pathlib import Path

from slifmr.records import read_finished_record

SWITCH = "skip_completed"


def _comparable(overrides: list[str]) -> list[str]:
    """The overrides that define the job: the switch itself does not (a re-run adds it)."""
    return sorted(o for o in overrides if o.lstrip("+~").split("=", 1)[0] != SWITCH)


def completed_metrics(run_dir: Path, overrides: list[str], tested: bool) -> dict[str, float] | None:
    """The finished run's metrics (``val/<m>``, ``test/<m>``) if ``run_dir`` holds a completed record
    of these overrides (and with test metrics when ``tested``); None when the job must run."""
    rec = read_finished_record(run_dir)
    if rec is None or (tested and not rec.get("test")):
        return None
    if _comparable([str(o) for o in rec.get("overrides") or []]) != _comparable(overrides):
        return None
    return {f"{split}/{k}": float(v) for split in ("val", "test") for k, v in (rec.get(split) or {}).items()
            if isinstance(v, (int, float))}
