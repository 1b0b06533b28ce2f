"""One error type for bad input, so callers (and tests) can tell it from bugs."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data or configuration: the message names the file, line/row/field and the problem."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line
