"""Result records and reports: ``python -m slifmr.report <run or multirun dir ...>``.

Records are written by the run-record callback (``callbacks/run_record.py``, format in
:mod:`slifmr.records`); this package only reads them. Its top level stays light (no matplotlib,
no scipy); the table, significance and plot modules are imported by the CLI.
"""

from slifmr.report.records import (
    PER_USER_FILE,
    RECORD_FILE,
    SCHEMA,
    ReportError,
    load_per_user,
    load_records,
)

__all__ = [
    "PER_USER_FILE", "RECORD_FILE", "SCHEMA", "ReportError",
    "load_per_user", "load_records",
]
