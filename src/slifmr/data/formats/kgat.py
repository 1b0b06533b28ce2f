"""Reader for the KGAT / KGIN layout (Amazon-Book, Last-FM, Yelp2018 and our derived sets).

Files (ids already dense and 0-based): ``train.txt`` / ``test.txt`` (and optionally
``valid.txt``, written by ``slifmr.prepare``) with one ``user item item ...`` line per user,
optional ``kg_final.txt`` (``head relation tail``, item ``i`` is entity
``i``), optional ``{user,item,entity,relation}_list.txt`` (``org_id remap_id ...`` with a
header) and ``<name>_feat.npy`` feature matrices (row ``i`` = item ``i``), each with an optional
``<name>_mask.npy`` presence mask (without one, an all-zero row means "missing").
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset
from slifmr.data.formats._common import (
    MAX_ID,
    check_dense,
    check_ids,
    dataset_dir,
    first_occurrences,
    is_integer_token,
    load_features,
    wanted_feature_files,
    parse_int_lines,
    read_bytes,
    token_layout,
)
from slifmr.errors import DataError

log = logging.getLogger(__name__)


def read_kgat(path: str | Path, name: str | None = None, features: list[str] | None = None) -> RawDataset:
    """Read a KGAT-layout directory into a :class:`RawDataset` with the given train/test split.

    ``features=None`` loads every ``*_feat.npy`` of the directory (name = part before
    ``_feat.npy``); a list loads exactly those, a missing one is an error. A (user, item) pair
    repeated within one file keeps its first occurrence (duplicates are dropped, as KGAT's
    own loader does by building sets); a pair in two of train.txt / valid.txt / test.txt is an
    error, since it would leak held-out items into training.
    """
    directory = dataset_dir(path)
    user_list = _read_list(directory / "user_list.txt")
    item_list = _read_list(directory / "item_list.txt")
    entity_list = _read_list(directory / "entity_list.txt")
    relation_list = _read_list(directory / "relation_list.txt")

    # valid.txt is optional (KGAT has none; slifmr.prepare writes one when the source had a valid split)
    names = ["train.txt", "valid.txt", "test.txt"] if (directory / "valid.txt").is_file() else ["train.txt", "test.txt"]
    read = {f: _read_interactions(directory / f, user_list, item_list) for f in names}
    for col, what, table in ((0, "user", user_list), (1, "item", item_list)):
        if table is None:  # the largest id sizes the tables: it must be near the ids in use
            in_use = len(np.unique(np.concatenate([r[col] for r in read.values()])))
            for f, r in read.items():
                check_dense(r[col], r[2], directory / f, what, f"{what}_list.txt", in_use=in_use)
    # a user line without items still makes that user exist
    n_users = max([len(user_list) if user_list is not None else 0] + [r[3] + 1 for r in read.values()])
    n_items = max(
        [len(item_list) if item_list is not None else 0] + [int(r[1].max(initial=-1)) + 1 for r in read.values()]
    )
    parts = {}
    for f, (u, i, line, _) in read.items():
        keep = first_occurrences(u, i, n_items)
        parts[f] = (u[keep], i[keep], line[keep])
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            _check_disjoint(directory, names[a], parts[names[a]], names[b], parts[names[b]], n_items)

    kg, n_entities, relation_names = _read_kg(directory / "kg_final.txt", n_items, entity_list, relation_list)

    feats, masks = load_features(wanted_feature_files(directory, features), n_items)

    label = {"train.txt": TRAIN, "valid.txt": VALID, "test.txt": TEST}
    users = np.concatenate([parts[f][0] for f in names])
    items = np.concatenate([parts[f][1] for f in names])
    split = np.concatenate([np.full(len(parts[f][0]), label[f], np.int8) for f in names])
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


LIST_FILES = ("user_list.txt", "item_list.txt", "entity_list.txt", "relation_list.txt")


def kgat_inputs(path: str | Path, name: str | None = None, features: list[str] | None = None) -> list[Path]:
    """The files :func:`read_kgat` reads (that exist): what the dataset cache hashes."""
    directory = dataset_dir(path)
    names = ["train.txt", "valid.txt", "test.txt", "kg_final.txt", *LIST_FILES]
    for feat in wanted_feature_files(directory, features).values():
        names += [feat.name, feat.name[: -len("_feat.npy")] + "_mask.npy"]
    return [directory / n for n in names if (directory / n).is_file()]


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
    first_name: str,
    first: tuple[np.ndarray, np.ndarray, np.ndarray],
    second_name: str,
    second: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_items: int,
) -> None:
    """A pair in two splits would put test (or valid) items into training: refuse it."""
    a_keys = first[0] * np.int64(n_items) + first[1]
    b_keys = second[0] * np.int64(n_items) + second[1]
    common, a_idx, b_idx = np.intersect1d(a_keys, b_keys, assume_unique=True, return_indices=True)
    if len(common):
        k = int(np.argmin(second[2][b_idx]))
        u, i = int(second[0][b_idx[k]]), int(second[1][b_idx[k]])
        raise DataError(
            f"user {u} item {i} is in both {first_name} (line {int(first[2][a_idx[k]])}) and {second_name} "
            f"({len(common)} overlapping pair(s) in all)",
            directory / second_name,
            int(second[2][b_idx[k]]),
        )


def _read_kg(
    path: Path, n_items: int, entity_list: np.ndarray | None, relation_list: np.ndarray | None
) -> tuple[np.ndarray | None, int, list[str]]:
    """Triples (m, 3) as in the file, the entity count and relation names; None when absent."""
    if not path.is_file():
        return None, 0, []
    table = parse_int_lines(path, read_bytes(path))
    if len(table.values) == 0:
        log.warning("%s is empty: the dataset has no knowledge graph", path)
        return None, 0, []
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
    if entity_list is None:
        ends = np.concatenate([kg[:, 0], kg[:, 2]])
        check_dense(ends, np.concatenate([lines, lines]), path, "entity", "entity_list.txt",
                    in_use=len(np.unique(np.concatenate([ends, np.arange(n_items)]))))
    n_entities = max(n_items, max_entity + 1, _size(entity_list) or 0)
    n_relations = max(int(kg[:, 1].max(initial=-1)) + 1, _size(relation_list) or 0)
    if relation_list is not None:
        names = [str(r) for r in relation_list]
    else:
        names = [f"r{k}" for k in range(n_relations)]
    return kg.astype(np.int64, copy=False), n_entities, names


def _read_list(path: Path) -> np.ndarray | None:
    """Original ids indexed by remap id from an ``org_id remap_id ...`` file, or None if absent.

    The header line is recognised by a non-integer second field. A row as wide as the header
    has its remap id in the header's ``remap_id`` column. Any other row (KGAT's amazon-book
    entity_list has names with spaces and quotes, ``\"\"\"I Love You 25708``, and an empty name,
    `` 30181``) has it in its last integer field, the name being everything before it. Yelp2018's
    item_list glues the remap id to the business id (``abc 0abc``); the org id is then the first field.
    """
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc})", path) from exc
    text = text.removeprefix("\ufeff")
    parsed = _read_list_fast(text)
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


def _layout(rows: list[str]) -> tuple[int, int, int]:
    """(lines to skip, width of a regular row, column of its remap id), from the header if any."""
    first = next((k for k, r in enumerate(rows) if r.split()), None)
    if first is None:
        return len(rows), 2, 1
    fields = rows[first].split()
    if len(fields) >= 2 and _remap_id(fields[0], fields[1]) is not None:  # no header: org_id remap_id ...
        return first, len(fields), 1
    column = fields.index("remap_id") if "remap_id" in fields else 1
    return first + 1, max(len(fields), 2), column


def _read_list_fast(text: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """One split for the whole file when every row is as wide as the header; None otherwise."""
    rows = text.split("\n")
    skip, width, column = _layout(rows)
    body = rows[skip:]
    flat = " ".join(body).split()
    numbered = [k for k, r in enumerate(body) if r.strip()]
    if len(flat) != width * len(numbered) or any(len(body[k].split()) != width for k in numbered):
        return None
    try:
        ids = np.array(flat[column::width], dtype=np.int64)
    except (ValueError, OverflowError):  # glued, malformed or huge remap ids
        return None
    return flat[0::width], ids, np.asarray(numbered, dtype=np.int64) + skip + 1


def _read_list_slow(path: Path, text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Row by row, for ragged rows, names with spaces, empty names or glued ids; names the
    first malformed line."""
    rows = text.split("\n")
    skip, width, column = _layout(rows)
    orgs: list[str] = []
    remaps: list[int] = []
    lines: list[int] = []
    for number, line in enumerate(rows[skip:], start=skip + 1):
        fields = line.split()
        if not fields:
            continue
        org, remap = _parse_row(line, fields, width, column)
        if remap is None:
            raise DataError(f"malformed line: remap_id '{fields[min(column, len(fields) - 1)]}' is not an integer "
                            "(expected 'org_id remap_id ...')", path, number)
        if remap > MAX_ID:
            raise DataError(f"remap_id {remap} is too large", path, number)
        orgs.append(org)
        remaps.append(remap)
        lines.append(number)
    return orgs, np.asarray(remaps, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def _parse_row(line: str, fields: list[str], width: int, column: int) -> tuple[str, int | None]:
    """(org id, remap id or None) of one non-blank row."""
    if len(fields) == width:
        remap = _remap_id(fields[0] if column == 1 else " ".join(fields[:column]), fields[column])
        if remap is not None:
            return " ".join(fields[:column]), remap
    if len(fields) >= 2 and not is_integer_token(fields[1]):
        remap = _remap_id(fields[0], fields[1])  # glued (Yelp2018), maybe without its trailing columns
        if remap is not None:
            return fields[0], remap
    for k in range(len(fields) - 1, -1, -1):  # a name with spaces, or none: the last integer field
        if is_integer_token(fields[k]):
            parts = line.strip().rsplit(None, len(fields) - k)  # the name as written, inner spacing kept
            return (parts[0] if len(parts) > len(fields) - k else ""), int(fields[k])
    return fields[0], None


def _remap_id(org: str, remap: str) -> int | None:
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
