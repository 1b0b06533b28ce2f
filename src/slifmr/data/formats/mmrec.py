"""Reader for the MMRec layout: ``<name>.inter`` with a given split plus ``*_feat.npy``.

``<name>.inter`` is tab separated with a plain header (``userID itemID rating timestamp
x_label``); ids are already dense and 0-based, ``x_label`` is 0 train / 1 valid / 2 test.
Feature matrices have row ``i`` = item ``i``: ``image_feat.npy`` -> "image",
``text_feat.npy`` -> "text", any other ``<x>_feat.npy`` -> "x".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset
from slifmr.data.formats._common import (
    MAX_ID,
    check_ids,
    dataset_dir,
    first_occurrences,
    is_integer_token,
    load_features,
    wanted_feature_files,
    parse_numeric,
    read_bytes,
)
from slifmr.errors import DataError

_LABEL_TO_SPLIT = np.array([TRAIN, VALID, TEST], dtype=np.int8)  # x_label 0 / 1 / 2


def read_mmrec(
    path: str | Path,
    name: str | None = None,
    features: list[str] | None = None,
    user_field: str = "userID",
    item_field: str = "itemID",
    split_field: str = "x_label",
) -> RawDataset:
    """Read an MMRec directory into a :class:`RawDataset` with the split given by ``x_label``.

    ``name`` defaults to the directory name, or to the only ``*.inter`` file there. Without
    a ``split_field`` column the split is None. A (user, item) pair repeated with the same
    label keeps its first occurrence; with different labels it is an error (test leakage).
    ``features`` as for :func:`~slifmr.data.formats.kgat.read_kgat`.
    """
    directory = dataset_dir(path)
    inter_path = _inter_file(directory, name)
    data = read_bytes(inter_path)
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    fields = [f.split(":", 1)[0].strip() for f in (header.split("\t") if "\t" in header else header.split())]
    for f in (user_field, item_field):
        if f not in fields:
            raise DataError(f"header lacks field '{f}'; it has {fields}", inter_path, 1)
    wanted = [user_field, item_field] + ([split_field] if split_field in fields else [])
    cols, lines = _columns(inter_path, data, fields, wanted)
    if len(lines) == 0:
        raise DataError("interactions file is empty (no rows after the header)", inter_path)
    users, items = cols[user_field], cols[item_field]
    check_ids(users, lines, inter_path, "user")
    check_ids(items, lines, inter_path, "item")
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1

    split = None
    keep = first_occurrences(users, items, n_items)
    if split_field in cols:
        labels = cols[split_field]
        bad = np.flatnonzero((labels < 0) | (labels > 2))
        if len(bad):
            k = int(bad[0])
            raise DataError(
                f"{split_field} must be 0 (train), 1 (valid) or 2 (test), got {int(labels[k])}",
                inter_path,
                int(lines[k]),
            )
        split = _LABEL_TO_SPLIT[labels]
        _check_consistent(inter_path, users, items, split, lines, n_items, split_field)
        split = split[keep]

    feats, masks = load_features(wanted_feature_files(directory, features), n_items)
    return RawDataset(
        name=name or inter_path.stem,
        users=users[keep],
        items=items[keep],
        n_users=n_users,
        n_items=n_items,
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        split=split,
        features=feats,
        feature_masks=masks,
        source=f"mmrec:{inter_path}",
    )


def mmrec_inputs(path: str | Path, name: str | None = None, features: list[str] | None = None,
                 **_: object) -> list[Path]:
    """The files :func:`read_mmrec` reads (that exist): what the dataset cache hashes."""
    directory = dataset_dir(path)
    files = [_inter_file(directory, name)]
    for feat in wanted_feature_files(directory, features).values():
        files += [feat, feat.with_name(feat.name[: -len("_feat.npy")] + "_mask.npy")]
    return [p for p in files if p.is_file()]


def _inter_file(directory: Path, name: str | None) -> Path:
    """``<name>.inter``; without a name the directory's name, else its only ``.inter`` file."""
    if name is not None:
        return directory / f"{name}.inter"
    default = directory / f"{directory.name}.inter"
    if default.is_file():
        return default
    found = sorted(p for p in directory.glob("*.inter") if p.is_file())
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"several .inter files ({[p.name for p in found]}); pass name=", directory)
    return default  # read_bytes names the missing file


def _columns(
    path: Path, data: bytes, fields: list[str], wanted: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """int64 columns ``wanted`` and 1-based lines; vectorised, line-by-line only on trouble."""
    ncol = len(fields)
    table = parse_numeric(data, skip_lines=1, dtype=np.float64)
    if table is not None and np.all((table.counts[1:] == 0) | (table.counts[1:] == ncol)):
        values = table.values.reshape(-1, ncol)
        lines = table.token_line[::ncol] + 1
        cols = {}
        for f in wanted:
            v = values[:, fields.index(f)]
            bad = np.flatnonzero(~np.isfinite(v) | (v != np.floor(v)) | (np.abs(v) > MAX_ID))
            if len(bad):
                break
            cols[f] = v.astype(np.int64)
        else:
            return cols, lines
    return _columns_slow(path, data, fields, wanted)


def _columns_slow(
    path: Path, data: bytes, fields: list[str], wanted: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Line-by-line parse that names the first malformed line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc})", path) from exc
    rows = text.replace("\r\n", "\n").split("\n")
    tab = "\t" in rows[0]
    index = {f: fields.index(f) for f in wanted}
    picked: dict[str, list[int]] = {f: [] for f in wanted}
    numbers: list[int] = []
    for number, line in enumerate(rows[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t") if tab else line.split()
        if len(parts) != len(fields):
            raise DataError(f"malformed line: {len(parts)} field(s) but the header has {len(fields)}", path, number)
        for f, c in index.items():
            token = parts[c].strip()
            if is_integer_token(token):
                value = int(token)
            elif _integral_float(token):
                value = int(float(token))
            else:
                raise DataError(f"malformed line: {f} '{token}' is not an integer", path, number)
            if abs(value) > MAX_ID:
                raise DataError(f"{f} {value} is too large for a dense id", path, number)
            picked[f].append(value)
        numbers.append(number)
    return {f: np.asarray(v, dtype=np.int64) for f, v in picked.items()}, np.asarray(numbers, dtype=np.int64)


def _integral_float(token: str) -> bool:
    """MMRec files written by pandas may hold ids as '12.0'."""
    try:
        value = float(token)
    except ValueError:
        return False
    return np.isfinite(value) and value == int(value)


def _check_consistent(
    path: Path,
    users: np.ndarray,
    items: np.ndarray,
    split: np.ndarray,
    lines: np.ndarray,
    n_items: int,
    split_field: str,
) -> None:
    """A pair labelled with two different splits would leak test items into training."""
    keys = users * np.int64(n_items) + items
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first_of_row = first[inverse.reshape(-1)]
    bad = np.flatnonzero(split != split[first_of_row])
    if len(bad):
        k = int(bad[0])
        j = int(first_of_row[k])
        raise DataError(
            f"user {int(users[k])} item {int(items[k])} has {split_field} {int(split[k])} here but "
            f"{int(split[j])} on line {int(lines[j])} (a pair must be in one split)",
            path,
            int(lines[k]),
        )
