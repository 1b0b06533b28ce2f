"""Result records and reports: ``python -m slifmr.report <run or multirun dir ...>``.

This package's top level stays light (no matplotlib, no scipy) because ``train.py`` writes
records through it; the table, significance and plot modules are imported by the CLI.
"""

from slifmr.report.records import (
    PER_USER_FILE,
    RECORD_FILE,
    SCHEMA,
    ReportError,
    load_per_user,
    load_records,
    save_run_record,
    write_record,
)

__all__ = [
    "PER_USER_FILE", "RECORD_FILE", "SCHEMA", "ReportError",
    "load_per_user", "load_records", "save_run_record", "write_record",
]
