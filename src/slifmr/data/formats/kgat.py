"""Reader for the KGAT / KGIN layout (Amazon-Book, Last-FM, Yelp2018 and our derived sets).

Files (ids already dense and 0-based): ``train.txt`` / ``test.txt`` with one ``user item item
...`` line per user, optional ``kg_final.txt`` (``head relation tail``, item ``i`` is entity
``i``), optional ``{user,item,entity,relation}_list.txt`` (``org_id remap_id ...`` with a
header) and ``<name>_feat.npy`` feature matrices (row ``i`` = item ``i``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, RawDataset
from slifmr.data.formats._common import (
    MAX_ID,
    check_ids,
    dataset_dir,
    feature_files,
    first_occurrences,
    is_integer_token,
    load_features,
    parse_int_lines,
    read_bytes,
    token_layout,
)
from slifmr.errors import DataError


def read_kgat(path: str | Path, name: str | None = None, features: list[str] | None = None) -> RawDataset:
    """Read a KGAT-layout directory into a :class:`RawDataset` with the given train/test split.

    ``features=None`` loads every ``*_feat.npy`` of the directory (name = part before
    ``_feat.npy``); a list loads exactly those, a missing one is an error. A (user, item) pair
    repeated within one file keeps its first occurrence (duplicates are dropped, as KGAT's
    own loader does by building sets); a pair in both train.txt and test.txt is an error,
    since it would leak test items into training.
    """
    directory = dataset_dir(path)
    user_list = _read_list(directory / "user_list.txt")
    item_list = _read_list(directory / "item_list.txt")
    entity_list = _read_list(directory / "entity_list.txt")
    relation_list = _read_list(directory / "relation_list.txt")

    tr_u, tr_i, tr_line, tr_max_user = _read_interactions(directory / "train.txt", user_list, item_list)
    te_u, te_i, te_line, te_max_user = _read_interactions(directory / "test.txt", user_list, item_list)
    # a user line without items still makes that user exist
    n_users = max(len(user_list) if user_list is not None else 0, tr_max_user + 1, te_max_user + 1)
    n_items = max(
        len(item_list) if item_list is not None else 0,
        int(tr_i.max(initial=-1)) + 1,
        int(te_i.max(initial=-1)) + 1,
    )

    tr_keep = first_occurrences(tr_u, tr_i, n_items)
    te_keep = first_occurrences(te_u, te_i, n_items)
    tr_u, tr_i, tr_line = tr_u[tr_keep], tr_i[tr_keep], tr_line[tr_keep]
    te_u, te_i, te_line = te_u[te_keep], te_i[te_keep], te_line[te_keep]
    _check_disjoint(directory, (tr_u, tr_i, tr_line), (te_u, te_i, te_line), n_items)

    kg, n_entities, relation_names = _read_kg(directory / "kg_final.txt", n_items, entity_list, relation_list)

    wanted = feature_files(directory) if features is None else {f: directory / f"{f}_feat.npy" for f in features}
    feats, masks = load_features(wanted, n_items)

    users = np.concatenate([tr_u, te_u])
    items = np.concatenate([tr_i, te_i])
    split = np.concatenate([np.full(len(tr_u), TRAIN, np.int8), np.full(len(te_u), TEST, np.int8)])
    return RawDataset(
        name=name or directory.name,
        users=users,
        items=items,
        n_users=n_users,
        n_items=n_items,
        user_ids=_org_ids(user_list, n_users),
        item_ids=_org_ids(item_list, n_items),
        split=split,
        kg=kg,
        n_entities=n_entities,
        relation_names=relation_names,
        entity_ids=None if entity_list is None or kg is None else _org_ids(entity_list, n_entities),
        features=feats,
        feature_masks=masks,
        source=f"kgat:{directory}",
    )


def _read_interactions(
    path: Path, user_list: np.ndarray | None, item_list: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(users, items, 1-based lines, largest user id incl. item-less lines), ids validated."""
    table = parse_int_lines(path, read_bytes(path))
    is_first = np.ones(len(table.values), dtype=bool)
    is_first[1:] = table.token_line[1:] != table.token_line[:-1]
    line_users = table.values[is_first]
    user_lines = table.token_line[is_first] + 1
    check_ids(line_users, user_lines, path, "user", _size(user_list), "user_list.txt")
    group = np.cumsum(is_first) - 1
    item_tok = ~is_first
    items = table.values[item_tok]
    lines = table.token_line[item_tok] + 1
    if len(items) == 0:
        raise DataError("interactions file is empty (no user has an item)", path)
    check_ids(items, lines, path, "item", _size(item_list), "item_list.txt")
    return line_users[group[item_tok]], items, lines, int(line_users.max(initial=-1))


def _check_disjoint(
    directory: Path,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_items: int,
) -> None:
    """A pair in both splits would put test items into training: refuse it."""
    tr_keys = train[0] * np.int64(n_items) + train[1]
    te_keys = test[0] * np.int64(n_items) + test[1]
    common, tr_idx, te_idx = np.intersect1d(tr_keys, te_keys, assume_unique=True, return_indices=True)
    if len(common):
        k = int(np.argmin(test[2][te_idx]))
        u, i = int(test[0][te_idx[k]]), int(test[1][te_idx[k]])
        raise DataError(
            f"user {u} item {i} is in both train.txt (line {int(train[2][tr_idx[k]])}) and test.txt "
            f"({len(common)} overlapping pair(s) in all)",
            directory / "test.txt",
            int(test[2][te_idx[k]]),
        )


def _read_kg(
    path: Path, n_items: int, entity_list: np.ndarray | None, relation_list: np.ndarray | None
) -> tuple[np.ndarray | None, int, list[str]]:
    """Triples (m, 3) as in the file, the entity count and relation names; None when absent."""
    if not path.is_file():
        return None, 0, []
    table = parse_int_lines(path, read_bytes(path))
    bad = np.flatnonzero((table.counts != 0) & (table.counts != 3))
    if len(bad):
        line = int(bad[0])
        raise DataError(
            f"malformed line: expected 3 fields 'head relation tail', got {int(table.counts[line])}",
            path,
            line + 1,
        )
    kg = table.values.reshape(-1, 3)
    lines = table.token_line[::3] + 1
    check_ids(kg[:, 0], lines, path, "head entity", _size(entity_list), "entity_list.txt")
    check_ids(kg[:, 2], lines, path, "tail entity", _size(entity_list), "entity_list.txt")
    check_ids(kg[:, 1], lines, path, "relation", _size(relation_list), "relation_list.txt")
    max_entity = int(max(kg[:, 0].max(initial=-1), kg[:, 2].max(initial=-1)))
    n_entities = max(n_items, max_entity + 1, _size(entity_list) or 0)
    n_relations = max(int(kg[:, 1].max(initial=-1)) + 1, _size(relation_list) or 0)
    if relation_list is not None:
        names = [str(r) for r in relation_list]
    else:
        names = [f"r{k}" for k in range(n_relations)]
    return kg.astype(np.int64, copy=False), n_entities, names


def _read_list(path: Path) -> np.ndarray | None:
    """Original ids indexed by remap id from an ``org_id remap_id ...`` file, or None if absent.

    The header line is recognised by a non-integer second field. Yelp2018's item_list has
    the remap id glued to the business id (``abc 0abc``); the org id is then the first field.
    """
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc})", path) from exc
    parsed = _read_list_fast(data, text)
    orgs, ids, lines = parsed if parsed is not None else _read_list_slow(path, text)
    n = len(ids)
    bad = np.flatnonzero((ids < 0) | (ids >= n))
    if len(bad):
        k = int(bad[0])
        raise DataError(
            f"remap_id {int(ids[k])} out of range: the file has {n} rows (remap ids must be 0..{n - 1})",
            path,
            int(lines[k]),
        )
    order = np.argsort(ids, kind="stable")
    dup = order[1:][ids[order][1:] == ids[order][:-1]]
    if len(dup):
        k = int(dup.min())
        raise DataError(f"duplicate remap_id {int(ids[k])}", path, int(lines[k]))
    names = np.array(orgs, dtype=str)
    out = np.empty_like(names)
    out[ids] = names
    return out


def _read_list_fast(data: bytes, text: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """One split for the whole file when every row has the same number of fields."""
    first = text.split("\n", 1)[0].split()
    skip = 1 if first and _remap_id(first) is None else 0
    _, token_line, counts = token_layout(data, skip)
    rows = np.flatnonzero(counts)
    if len(rows) == 0:
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = int(counts[rows[0]])
    if width < 2 or np.any(counts[rows] != width):
        return None
    body = text.split("\n", 1)[1] if skip else text
    flat = body.split()
    if len(flat) != len(token_line):  # unicode whitespace: let the slow path decide
        return None
    try:
        ids = np.array(flat[1::width], dtype=np.int64)
    except (ValueError, OverflowError):  # glued, malformed or huge remap ids
        return None
    return flat[0::width], ids, rows.astype(np.int64) + 1


def _read_list_slow(path: Path, text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Row by row, for ragged or glued files; names the first malformed line."""
    orgs: list[str] = []
    remaps: list[int] = []
    lines: list[int] = []
    first = True
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        remap = _remap_id(fields)
        if first:
            first = False
            if remap is None:  # header
                continue
        if len(fields) < 2:
            raise DataError("malformed line: expected 'org_id remap_id'", path, number)
        if remap is None:
            raise DataError(f"malformed line: remap_id '{fields[1]}' is not an integer", path, number)
        if remap > MAX_ID:
            raise DataError(f"remap_id {remap} is too large", path, number)
        orgs.append(fields[0])
        remaps.append(remap)
        lines.append(number)
    return orgs, np.asarray(remaps, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def _remap_id(fields: list[str]) -> int | None:
    if len(fields) < 2:
        return None
    org, remap = fields[0], fields[1]
    if is_integer_token(remap):
        return int(remap)
    if len(remap) > len(org) and remap.endswith(org) and is_integer_token(remap[: -len(org)]):
        return int(remap[: -len(org)])  # Yelp2018: remap id glued to the org id
    return None


def _size(table: np.ndarray | None) -> int | None:
    return None if table is None else len(table)


def _org_ids(table: np.ndarray | None, n: int) -> np.ndarray:
    """Original ids from a list file, padded with the dense id for rows the file lacks."""
    if table is not None and len(table) == n:
        return table
    dense = np.arange(n).astype(str)
    if table is None:
        return dense
    return np.concatenate([table, dense[len(table) :]])
