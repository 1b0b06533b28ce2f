"""Helpers shared by the format readers: fast integer-table parsing, id checks, features.

Parsing is vectorised (one pass of numpy over the file bytes plus ``np.fromstring``) so the
KGAT Amazon-Book files load in well under a second; the slow line-by-line scan only runs
after the fast path failed, to name the offending line in the :class:`DataError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slifmr.data.dataset import check_features, presence_mask
from slifmr.errors import DataError

# Dense ids above this are surely a corrupt file (and would make id tables explode).
MAX_ID = 2**31 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FEAT_SUFFIX = "_feat.npy"


def dataset_dir(path: str | Path) -> Path:
    """The dataset directory, or a DataError naming it when it does not exist."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise DataError("dataset directory not found", directory)
    return directory


BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as some editors write at a text file's start


def read_bytes(path: Path) -> bytes:
    """File contents without a leading UTF-8 BOM, or a DataError naming the expected path when
    the file is missing."""
    if not path.is_file():
        raise DataError("required file is missing", path)
    try:
        return path.read_bytes().removeprefix(BOM)
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path) from exc


@dataclass
class IntLines:
    """Whitespace-separated integers of a file, flat, with the 0-based line of each token."""

    values: np.ndarray  # (n_tokens,) int64 (or float64 for parse_numeric(dtype=float))
    token_line: np.ndarray  # (n_tokens,) int64, 0-based line index
    counts: np.ndarray  # (n_lines,) tokens per line


def parse_int_lines(path: Path, data: bytes, skip_lines: int = 0) -> IntLines:
    """Parse a file of whitespace-separated integers, keeping each token's line number."""
    table = parse_numeric(data, skip_lines, np.int64)
    if table is None:
        raise _locate_bad_token(path, data, skip_lines)
    return table


def token_layout(data: bytes, skip_lines: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte offsets of whitespace-separated tokens, their 0-based lines, and tokens per line.

    The first ``skip_lines`` lines (a header) are left out; lines keep file numbering.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    space = (raw == 32) | ((raw >= 9) & (raw <= 13))  # C isspace(), as np.fromstring uses
    newlines = np.flatnonzero(raw == 10)
    start = ~space
    start[1:] &= space[:-1]
    starts = np.flatnonzero(start)
    token_line = np.searchsorted(newlines, starts).astype(np.int64, copy=False)  # newlines before = line
    if skip_lines:
        keep = token_line >= skip_lines
        starts, token_line = starts[keep], token_line[keep]
    return starts, token_line, np.bincount(token_line, minlength=len(newlines) + 1)


def parse_numeric(data: bytes, skip_lines: int = 0, dtype: type = np.int64) -> IntLines | None:
    """Vectorised parse of whitespace-separated numbers; None when some token is not one."""
    starts, token_line, counts = token_layout(data, skip_lines)
    if len(starts) == 0:  # np.fromstring would read a blank text as [0]
        return IntLines(np.zeros(0, dtype), token_line, counts)
    text = data[int(starts[0]) :].decode("latin-1")
    try:
        values = np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:
        return None
    if len(values) != len(starts):
        return None
    return IntLines(values, token_line, counts)


def fields_per_line(data: bytes, sep: int) -> np.ndarray:
    """Number of ``sep``-separated fields on each ``\\n``-terminated line (1 + separators)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    seps = np.flatnonzero(raw == sep)
    return np.bincount(np.searchsorted(newlines, seps), minlength=len(newlines) + 1) + 1


def _locate_bad_token(path: Path, data: bytes, skip_lines: int) -> DataError:
    """Slow path: find the first token that is not an integer and describe it."""
    text = data.decode("utf-8", errors="replace")
    for number, line in enumerate(text.split("\n"), start=1):
        if number <= skip_lines:
            continue
        for token in line.split():
            if not _INT_RE.fullmatch(token):
                return DataError(f"malformed line: '{token}' is not an integer id", path, number)
    return DataError("could not parse the file as whitespace-separated integers", path)


def check_ids(
    values: np.ndarray,
    lines: np.ndarray,
    path: Path,
    what: str,
    upper: int | None = None,
    upper_source: str = "",
) -> None:
    """Ids must be non-negative, below ``upper`` (a list file's size) and sane.

    ``lines`` holds the 1-based line of each value; only consulted when a check fails.
    """
    if len(values) == 0:
        return
    bad = np.flatnonzero(values < 0)
    if len(bad):
        i = int(bad[0])
        raise DataError(f"negative {what} id {int(values[i])}", path, int(lines[i]))
    if upper is not None:
        bad = np.flatnonzero(values >= upper)
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{what} id {int(values[i])} out of range: {upper_source} has {upper} rows",
                path,
                int(lines[i]),
            )
    bad = np.flatnonzero(values > MAX_ID)
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{what} id {int(values[i])} is too large for a dense id", path, int(lines[i]))


def check_dense(values: np.ndarray, lines: np.ndarray, path: Path, what: str, list_file: str,
                in_use: int) -> None:
    """Without a list file the largest id sets the table size: refuse one far beyond the ``in_use``
    distinct ids (a stray ``2000000`` would allocate two million embeddings), naming its line."""
    if len(values) == 0:
        return
    top = int(values.max())
    if top >= 2 * in_use + 1000:
        k = int(np.argmax(values))
        raise DataError(f"{what} id {top} is far beyond the {in_use} distinct {what} ids in use: ids must be "
                        f"dense 0..n-1; put {list_file} next to it to declare the id range", path, int(lines[k]))


def first_occurrences(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Indices of the first occurrence of each (user, item) pair, in file order."""
    keys = users * np.int64(max(n_items, 1)) + items
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def is_integer_token(token: str) -> bool:
    return _INT_RE.fullmatch(token) is not None


def sorted_tokens(tokens: set[str] | list[str]) -> list[str]:
    """Distinct tokens in numeric order when all are integers ("2" < "10"), else lexicographic.

    Ties between spellings of one number ("7", "07") are broken by the string, so distinct
    tokens never merge.
    """
    unique = set(tokens)
    if unique and all(_INT_RE.fullmatch(t) for t in unique):
        return sorted(unique, key=lambda t: (int(t), t))
    return sorted(unique)


def dense_ids(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids of string tokens in :func:`sorted_tokens` order: (ids (n,) int64, names)."""
    names = sorted_tokens(tokens)
    index = {t: k for k, t in enumerate(names)}
    ids = np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    return ids, np.array(names, dtype=str)


def feature_files(directory: Path) -> dict[str, Path]:
    """Every ``<name>_feat.npy`` in a directory, by feature name, sorted."""
    found = sorted(directory.glob("*" + _FEAT_SUFFIX))
    return {p.name[: -len(_FEAT_SUFFIX)]: p for p in found if p.is_file() and len(p.name) > len(_FEAT_SUFFIX)}


def wanted_feature_files(directory: Path, features: list[str] | None) -> dict[str, Path]:
    """The feature files a reader loads: every ``*_feat.npy`` (``features=None``) or exactly the
    named ones (a missing one is then an error of :func:`load_features`)."""
    if features is None:
        return feature_files(directory)
    return {f: directory / f"{f}{_FEAT_SUFFIX}" for f in features}


def load_features(
    files: dict[str, Path], n_items: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Load and validate feature matrices (row i = item i); missing files are DataErrors.

    A ``<name>_mask.npy`` next to ``<name>_feat.npy`` is the explicit presence mask (written by
    ``slifmr.prepare``); without one an all-zero row means "missing".
    """
    features: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for name, path in files.items():
        if not path.is_file():
            raise DataError(f"feature file for '{name}' is missing", path)
        feat = _load_npy(path, f"feature '{name}'", "matrix")
        feat = check_features(name, feat, n_items, str(path))
        features[name] = feat
        mask_path = path.with_name(f"{name}_mask.npy")
        masks[name] = _load_mask(mask_path, name, n_items) if mask_path.is_file() else presence_mask(feat)
        if not masks[name].any():
            raise DataError(f"feature '{name}' covers no item (every row is zero or masked out): it carries "
                            "no information; fix the file or remove it", path)
    return features, masks


def _load_npy(path: Path, what: str, kind: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{what} is not a readable .npy {kind} ({exc})", path) from exc
    if not isinstance(arr, np.ndarray):  # np.load opens an .npz archive whatever its name
        names = list(arr.files)
        arr.close()
        raise DataError(f"{what} is an .npz archive (arrays {names}), not a .npy {kind}: "
                        "save the matrix itself with np.save", path)
    return arr


def _load_mask(path: Path, name: str, n_items: int) -> np.ndarray:
    """A presence mask: one bool (or 0/1) per item."""
    mask = _load_npy(path, f"presence mask of '{name}'", "array")
    if mask.shape != (n_items,):
        raise DataError(f"presence mask of '{name}' must have shape ({n_items},) (one per item), got {mask.shape}", path)
    if mask.dtype != np.bool_:
        bad = np.flatnonzero((mask != 0) & (mask != 1))
        if len(bad):
            raise DataError(f"presence mask of '{name}' must be boolean, got {mask[bad[0]]!r} at row {int(bad[0])}", path)
    return mask.astype(bool)
