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

import json
from pathlib import Path
from typing import Any

from slifmr.errors import DataError
from slifmr.records import RECORD_FILE

SWITCH = "skip_completed"


def _comparable(overrides: list[str]) -> list[str]:
    """The overrides that define the job: the switch itself does not (a re-run adds it)."""
    return sorted(o for o in overrides if o.lstrip("+~").split("=", 1)[0] != SWITCH)


def completed_metrics(run_dir: Path, overrides: list[str], tested: bool) -> dict[str, float] | None:
    """The finished run's metrics (``val/<m>``, ``test/<m>``) if ``run_dir`` holds a completed record
    of these overrides (and with test metrics when ``tested``); None when the job must run."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        rec: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete the file to run the job again") from e
    if rec.get("status") != "completed" or (tested and not rec.get("test")):
        return None
    if _comparable([str(o) for o in rec.get("overrides") or []]) != _comparable(overrides):
        return None
    out = {f"val/{k}": float(v) for k, v in (rec.get("val") or {}).items() if isinstance(v, (int, float))}
    out.update({f"test/{k}": float(v) for k, v in (rec.get("test") or {}).items() if isinstance(v, (int, float))})
    return out
