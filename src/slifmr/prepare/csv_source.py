"""``--layout csv``: a plain interactions CSV/TSV -> :class:`RawDataset` (+ timestamps).

Users and items get dense ids in the sorted order of their original tokens (numeric when all
are integers), as the RecBole reader does. Rows below ``min_rating`` are dropped (implicit
feedback from explicit ratings); a repeated (user, item) pair keeps its first row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from slifmr.data.dataset import RawDataset
from slifmr.data.formats._common import dense_ids, first_occurrences
from slifmr.errors import DataError
from slifmr.prepare.tables import open_table

USER_ALIASES = ("userid", "user", "uid", "reviewerid", "customerid", "userremapid")
ITEM_ALIASES = ("itemid", "item", "iid", "movieid", "businessid", "asin", "productid", "bookid", "itemremapid")
TIME_ALIASES = ("timestamp", "time", "ts", "unixreviewtime", "date", "datetime")
RATING_ALIASES = ("rating", "score", "stars", "overall")


@dataclass
class CsvOptions:
    """Column names (or 0-based numbers with ``header=False``); None = recognise by name."""

    user_col: str | None = None
    item_col: str | None = None
    time_col: str | None = None
    rating_col: str | None = None
    min_rating: float | None = None  # keep rows with rating >= this
    delimiter: str | None = None  # None = sniff
    header: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CsvResult:
    raw: RawDataset
    timestamps: np.ndarray | None  # (n,) float64 aligned with raw.users, or None
    dropped_by_rating: int
    duplicates: int
    columns: dict[str, str | None]  # role -> column name used
    delimiter: str


def read_interactions_csv(path: str | Path, options: CsvOptions, name: str) -> CsvResult:
    """Read the interactions; every bad row is a DataError naming the file and the line."""
    table = open_table(path, options.delimiter, options.header)
    u_col = table.column(options.user_col, USER_ALIASES, "user id")
    i_col = table.column(options.item_col, ITEM_ALIASES, "item id")
    t_col = table.column(options.time_col, TIME_ALIASES, "time", required=options.time_col is not None)
    r_col = table.column(options.rating_col, RATING_ALIASES, "rating", required=options.rating_col is not None)
    if options.min_rating is not None and r_col is None:
        raise DataError("--min-rating needs a rating column (none found; pass --rating-col)", table.path)
    if u_col == i_col:
        raise DataError(f"the user and item columns are the same ('{table.header[u_col]}')", table.path)
    width = max(c for c in (u_col, i_col, t_col, r_col) if c is not None) + 1

    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    dropped = 0
    for line, fields in table.rows():
        if len(fields) < width:
            raise DataError(
                f"malformed line: {len(fields)} field(s), but column '{table.header[width - 1]}' is field {width}",
                table.path,
                line,
            )
        user, item = fields[u_col].strip(), fields[i_col].strip()
        if not user:
            raise DataError(f"empty user id (column '{table.header[u_col]}')", table.path, line)
        if not item:
            raise DataError(f"empty item id (column '{table.header[i_col]}')", table.path, line)
        if r_col is not None:
            rating = _number(fields[r_col], table.path, line, f"rating (column '{table.header[r_col]}')")
            if options.min_rating is not None and rating < options.min_rating:
                dropped += 1
                continue
        if t_col is not None:
            times.append(_time(fields[t_col], table.path, line, table.header[t_col]))
        users.append(user)
        items.append(item)
    if not users:
        raise DataError(
            "no interaction left" + (f" after --min-rating {options.min_rating}" if dropped else " (no data rows)"),
            table.path,
        )
    u_ids, u_names = dense_ids(users)
    i_ids, i_names = dense_ids(items)
    keep = first_occurrences(u_ids, i_ids, len(i_names))
    raw = RawDataset(
        name=name,
        users=u_ids[keep],
        items=i_ids[keep],
        n_users=len(u_names),
        n_items=len(i_names),
        user_ids=u_names,
        item_ids=i_names,
        source=f"csv:{table.path}",
    )
    # users/items whose only rows were duplicates still exist; compaction happens in build
    ts = np.asarray(times, dtype=np.float64)[keep] if t_col is not None else None
    cols = {
        "user": table.header[u_col],
        "item": table.header[i_col],
        "time": None if t_col is None else table.header[t_col],
        "rating": None if r_col is None else table.header[r_col],
    }
    return CsvResult(raw, ts, dropped, len(users) - len(keep), cols, table.delimiter)


def _number(token: str, path: Path, line: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise DataError(f"{what} '{token}' is not a number", path, line) from None
    if not np.isfinite(value):
        raise DataError(f"{what} '{token}' is not finite", path, line)
    return value


def _time(token: str, path: Path, line: int, column: str) -> float:
    """Unix time as a number, or an ISO date/time string -> seconds."""
    token = token.strip()
    try:
        return float(token)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(token).timestamp()
    except ValueError:
        raise DataError(
            f"timestamp '{token}' (column '{column}') is neither a number nor an ISO date", path, line
        ) from None
