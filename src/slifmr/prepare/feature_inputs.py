"""Side inputs of prepare: precomputed feature files and item metadata (text for the encoders).

Precomputed features (``--feature NAME=FILE``):

* ``.npy`` -- row i = the source's item i (KGAT / MMRec remap ids); an all-zero row = missing.
* ``.csv`` / ``.tsv`` / ``.txt`` -- first column the item id, the rest numbers; items without
  a row are missing.
* ``.b`` -- the Amazon image-feature binary of VBPR / McAuley et al.: repeated records of a
  10-byte ASIN and 4096 little-endian float32 (``image_features_Books.b``).

Missing rows are zero in the matrix *and* false in the mask; nothing is silently zero-filled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slifmr.data.dataset import check_features, presence_mask
from slifmr.errors import DataError
from slifmr.prepare.tables import open_table

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
VBPR_DIM = 4096
VBPR_ID_BYTES = 10


@dataclass
class KeyedFeature:
    """A feature matrix aligned to a list of item ids, its mask, and bookkeeping for the summary."""

    matrix: np.ndarray
    mask: np.ndarray
    unknown_ids: int = 0  # rows in the file whose item is not in the dataset
    missing: int = 0  # dataset items without a row


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise DataError(f"feature name '{name}' must be letters, digits, '_' or '-' (it names <name>_feat.npy)")
    return name


def load_feature_file(path: str | Path, item_ids: Sequence[str], name: str) -> KeyedFeature:
    """Load one precomputed feature file aligned to ``item_ids`` (the source's items, in order)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"feature file for '{name}' not found", path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            feat = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"feature '{name}' is not a readable .npy matrix ({exc})", path) from exc
        feat = check_features(name, feat, len(item_ids), str(path))
        mask = presence_mask(feat)
        return KeyedFeature(feat, mask, 0, int((~mask).sum()))
    if suffix == ".b":
        ids, rows = _read_vbpr(path)
        return _align(ids, rows, item_ids, name, path, [0] * len(ids))
    return _read_keyed_table(path, item_ids, name)


def _read_keyed_table(path: Path, item_ids: Sequence[str], name: str) -> KeyedFeature:
    table = open_table(path)  # header expected: id column first, then one column per dimension
    dim = len(table.header) - 1
    if dim < 1:
        raise DataError(f"feature table '{name}' needs an id column and at least one value column", path, 1)
    ids: list[str] = []
    lines: list[int] = []
    values: list[list[float]] = []
    for line, fields in table.rows():
        if len(fields) != dim + 1:
            raise DataError(f"malformed line: {len(fields)} field(s) but the header has {dim + 1}", path, line)
        try:
            values.append([float(v) for v in fields[1:]])
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_float(v))
            raise DataError(f"feature value '{bad}' is not a number", path, line) from None
        ids.append(fields[0].strip())
        lines.append(line)
    rows = np.asarray(values, dtype=np.float32).reshape(-1, dim)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        raise DataError(f"feature '{name}' has a NaN/inf value", path, lines[int(bad[0])])
    return _align(ids, rows, item_ids, name, path, lines)


def _read_vbpr(path: Path) -> tuple[list[str], np.ndarray]:
    record = np.dtype([("id", f"S{VBPR_ID_BYTES}"), ("f", "<f4", (VBPR_DIM,))])
    size = path.stat().st_size
    if size % record.itemsize:
        raise DataError(
            f"not an Amazon image-feature .b file: {size} bytes is not a multiple of the "
            f"{record.itemsize}-byte record (10-byte ASIN + {VBPR_DIM} float32)",
            path,
        )
    data = np.fromfile(path, dtype=record)
    ids = [b.decode("ascii", errors="replace").strip() for b in data["id"]]
    rows = np.ascontiguousarray(data["f"], dtype=np.float32)
    if not np.isfinite(rows).all():
        k = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise DataError(f"record {k} (ASIN {ids[k]}) has NaN/inf values", path)
    return ids, rows


def _align(
    ids: list[str], rows: np.ndarray, item_ids: Sequence[str], name: str, path: Path, lines: list[int]
) -> KeyedFeature:
    """Rows keyed by item id -> a matrix in ``item_ids`` order; a repeated id is an error."""
    index = {str(t): k for k, t in enumerate(item_ids)}
    matrix = np.zeros((len(item_ids), rows.shape[1]), dtype=np.float32)
    mask = np.zeros(len(item_ids), dtype=bool)
    seen: dict[str, int] = {}
    unknown = 0
    for r, item in enumerate(ids):
        if item in seen:
            where = f"line {lines[seen[item]]}" if lines[seen[item]] else f"record {seen[item]}"
            raise DataError(f"item '{item}' has two rows in feature '{name}' (first at {where})", path, lines[r] or None)
        seen[item] = r
        k = index.get(item)
        if k is None:
            unknown += 1
            continue
        matrix[k] = rows[r]
        mask[k] = True
    if not mask.any():
        raise DataError(
            f"no row of feature '{name}' matches a dataset item id (e.g. file has '{ids[0] if ids else ''}', "
            f"dataset has '{item_ids[0] if len(item_ids) else ''}')",
            path,
        )
    return KeyedFeature(matrix, mask, unknown, int((~mask).sum()))


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def read_item_texts(
    path: str | Path,
    item_ids: Sequence[str],
    columns: Sequence[str],
    id_col: str | None = None,
    delimiter: str | None = None,
) -> tuple[list[str | None], dict[str, int]]:
    """One text per item: the non-empty ``columns`` joined with '. ' (None when nothing).

    The metadata table is keyed by the item id (``id_col``, else a column named like an item
    id). Returns the texts in ``item_ids`` order and counts for the summary.
    """
    from slifmr.prepare.csv_source import ITEM_ALIASES

    table = open_table(path, delimiter)
    key = table.column(id_col, ITEM_ALIASES, "item id (metadata)")
    cols = [table.column(c, (), "text") for c in columns]
    index = {str(t): k for k, t in enumerate(item_ids)}
    texts: list[str | None] = [None] * len(item_ids)
    first_line: dict[str, int] = {}
    unknown = 0
    for line, fields in table.rows():
        item = fields[key].strip() if key < len(fields) else ""
        if not item:
            raise DataError(f"empty item id (column '{table.header[key]}')", table.path, line)
        if item in first_line:
            raise DataError(f"item '{item}' has two metadata rows (first on line {first_line[item]})", table.path, line)
        first_line[item] = line
        k = index.get(item)
        if k is None:
            unknown += 1
            continue
        parts = [" ".join(fields[c].split()) for c in cols if c < len(fields)]
        text = ". ".join(p for p in parts if p)
        texts[k] = text or None
    stats = {
        "rows": len(first_line),
        "rows_for_unknown_items": unknown,
        "items_without_row": sum(item not in first_line for item in map(str, item_ids)),
        "items_without_text": sum(t is None for t in texts),
    }
    return texts, stats


ITEM_TEXT = "item_text.tsv"  # what a prepared directory writes beside text features (writer.write_dataset)


def read_source_item_texts(path: str | Path, n_items: int) -> list[str | None]:
    """A prepared source's ``item_text.tsv`` (``remap_id<TAB>text``), one entry per source item
    (None: no row or empty text), so that prepare can carry it over to the items it keeps."""
    path = Path(path)
    texts: list[str | None] = [None] * n_items
    seen: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for line, raw in enumerate(f, start=1):
            raw = raw.rstrip("\r\n")
            if line == 1:
                if raw.split("\t")[:2] != ["remap_id", "text"]:
                    raise DataError(f"header must be 'remap_id<TAB>text', found {raw[:60]!r}", path, line)
                continue
            if not raw.strip():
                continue
            key, sep, text = raw.partition("\t")
            if not sep or not key.strip().isdigit():
                raise DataError(f"expected '<remap_id><TAB><text>' with an integer id, found {raw[:60]!r}", path, line)
            k = int(key)
            if k >= n_items:
                raise DataError(f"remap_id {k} is not an item of the source ({n_items} items)", path, line)
            if k in seen:
                raise DataError(f"remap_id {k} has two rows (first on line {seen[k]})", path, line)
            seen[k] = line
            texts[k] = text.strip() or None
    return texts
