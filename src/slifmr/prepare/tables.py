"""Delimited text tables (CSV/TSV/atomic): delimiter sniffing, header handling, line numbers.

Used for plain interaction files (``--layout csv``), item metadata and keyed feature tables.
Every error names the file and the line.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slifmr.errors import DataError

CANDIDATES = ",\t;|"
_ATOMIC_TYPES = {"token", "token_seq", "float", "float_seq"}  # RecBole's `name:type` headers

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long descriptions


@dataclass
class Table:
    """An open delimited file: its header (plain names) and the delimiter used."""

    path: Path
    header: list[str]
    delimiter: str
    has_header: bool

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(1-based line, fields) of every non-blank data row."""
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=self.delimiter, **_quoting(self.delimiter))
            try:
                for fields in reader:
                    if reader.line_num == 1 and self.has_header:
                        continue
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue
                    yield reader.line_num, fields
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 text ({exc})", self.path, reader.line_num + 1) from exc
            except csv.Error as exc:
                raise DataError(f"malformed line: {exc}", self.path, reader.line_num) from exc

    def column(self, wanted: str | None, aliases: tuple[str, ...], what: str, required: bool = True) -> int | None:
        """Index of a column: by name (or 0-based number without a header), else by alias."""
        if wanted is not None:
            if wanted in self.header:
                return self.header.index(wanted)
            lower = [h.lower() for h in self.header]
            if wanted.lower() in lower:
                return lower.index(wanted.lower())
            if wanted.isdigit() and int(wanted) < len(self.header):
                return int(wanted)
            raise DataError(f"no {what} column '{wanted}'; the header has {self.header}", self.path, 1)
        norm = [h.lower().replace("_", "").replace(" ", "") for h in self.header]
        for alias in aliases:
            if alias in norm:
                return norm.index(alias)
        if required:
            raise DataError(
                f"cannot tell which column holds the {what}: none of {self.header} is one of "
                f"{list(aliases)}; name it with the matching --{what.split()[0]}-col option",
                self.path,
                1,
            )
        return None


def open_table(path: str | Path, delimiter: str | None = None, header: bool = True) -> Table:
    """Open a table, sniffing the delimiter among ``, TAB ; |`` when not given."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError("file not found", path)
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        sample = f.read(1 << 16)
    if not sample.strip():
        raise DataError("file is empty", path)
    delim = _unescape(delimiter) if delimiter else sniff_delimiter(sample, path)
    first = next(csv.reader([sample.splitlines()[0]], delimiter=delim, **_quoting(delim)))
    if header:
        names = [_plain(h) for h in first]
        if len(set(names)) != len(names):
            raise DataError(f"duplicate column names in the header {names}", path, 1)
    else:
        names = [str(k) for k in range(len(first))]
    return Table(path, names, delim, header)


def sniff_delimiter(sample: str, path: Path) -> str:
    """The delimiter of a text sample: csv.Sniffer first, then the most consistent candidate."""
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if len(sample) == 1 << 16 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters=CANDIDATES).delimiter
        if found in CANDIDATES and lines[0].count(found) > 0:
            return found
    except csv.Error:
        pass
    best, best_score = None, (0.0, 0)
    for cand in CANDIDATES:  # in the header, and on as many lines as possible as often as there
        head = lines[0].count(cand)
        if head == 0:
            continue
        score = (sum(ln.count(cand) == head for ln in lines) / len(lines), head)
        if score > best_score:
            best, best_score = cand, score
    if best is None:
        raise DataError(f"cannot detect the delimiter (tried {CANDIDATES!r}); pass --delimiter", path)
    return best


def _quoting(delimiter: str) -> dict:
    # TSV / atomic files are not quoted (a stray '"' in a title must stay a character)
    return {"quoting": csv.QUOTE_NONE} if delimiter == "\t" else {}


def _unescape(delimiter: str) -> str:
    table = {"\\t": "\t", "tab": "\t", "TAB": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
    out = table.get(delimiter, delimiter)
    if len(out) != 1:
        raise DataError(f"--delimiter must be one character (or tab/comma/semicolon/pipe/space), got {delimiter!r}")
    return out


def _plain(name: str) -> str:
    """Header name without RecBole's ``:type`` suffix (``item_id:token`` -> ``item_id``)."""
    name = name.strip()
    base, sep, kind = name.rpartition(":")
    return base if sep and kind in _ATOMIC_TYPES and base else name
