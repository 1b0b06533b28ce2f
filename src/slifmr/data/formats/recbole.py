"""Reader for RecBole atomic files: ``<name>.inter`` (+ optional ``.kg`` and ``.link``).

Atomic files are tab separated with a ``field:type`` header; columns are found by the field
name, so extra fields in any order are fine. Users and items get dense ids in sorted order
of their original token; the KG is re-indexed KGAT-style (item ``i`` is entity ``i``), which
is what the KGAT-layout datasets derived from the same files use, so both readers agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slifmr.data.dataset import RawDataset
from slifmr.data.formats._common import dataset_dir, dense_ids, first_occurrences, read_bytes
from slifmr.errors import DataError


def read_recbole(path: str | Path, name: str | None = None) -> RawDataset:
    """Read ``<path>/<name>.inter`` (``name`` defaults to the directory name) and its KG.

    ``path`` may also be the ``.inter`` file itself. Only users and items of ``.inter`` are
    indexed (``.item`` rows without interactions are not). A repeated (user, item) pair keeps
    its first occurrence. No split is given (``split=None``) and no features are read.
    A row with more fields than the header is tolerated (extra fields ignored, as RecBole
    does); fewer fields or an empty user/item token is an error.
    """
    given = Path(path).expanduser()
    if given.suffix == ".inter" and given.is_file():
        directory, name = given.parent, name or given.stem
    else:
        directory = dataset_dir(given)
        name = name or directory.name
    inter_path = directory / f"{name}.inter"
    cols, lines = read_atomic(inter_path, ["user_id", "item_id"])
    if len(lines) == 0:
        raise DataError("interactions file is empty (no rows after the header)", inter_path)
    users, user_names = dense_ids(cols["user_id"])
    items, item_names = dense_ids(cols["item_id"])
    n_items = len(item_names)
    keep = first_occurrences(users, items, n_items)

    kg, entity_ids, relation_names = None, None, []
    kg_path = directory / f"{name}.kg"
    if kg_path.is_file():
        kg, entity_ids, relation_names = _build_kg(kg_path, directory / f"{name}.link", item_names)
    return RawDataset(
        name=name,
        users=users[keep],
        items=items[keep],
        n_users=len(user_names),
        n_items=n_items,
        user_ids=user_names.astype(str),
        item_ids=item_names.astype(str),
        kg=kg,
        n_entities=0 if entity_ids is None else len(entity_ids),
        relation_names=relation_names,
        entity_ids=entity_ids,
        source=f"recbole:{inter_path}",
    )


def read_atomic(path: Path, required: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ``required`` columns of an atomic file as str arrays, and each row's 1-based line."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc})", path) from exc
    rows = text.replace("\r\n", "\n").split("\n")
    header = [f.split(":", 1)[0].strip() for f in rows[0].split("\t")]
    missing = [f for f in required if f not in header]
    if missing:
        raise DataError(f"header lacks field(s) {missing}; it has {header}", path, 1)
    index = {f: header.index(f) for f in required}
    ncol = len(header)
    body = rows[1:]
    while body and not body[-1].strip():
        body.pop()

    if all(line and line.count("\t") == ncol - 1 for line in body):
        flat = "\t".join(body).split("\t")  # fast path: a rectangular file
        cols = {f: np.array(flat[c::ncol], dtype=str) for f, c in index.items()}
        lines = np.arange(2, len(body) + 2, dtype=np.int64)
    else:
        picked: dict[str, list[str]] = {f: [] for f in required}
        numbers: list[int] = []
        for number, line in enumerate(body, start=2):
            if not line.strip():
                continue
            parts = line.split("\t")  # more fields than the header: extras ignored, like RecBole
            if len(parts) < ncol:
                raise DataError(f"malformed line: {len(parts)} field(s) but the header has {ncol}", path, number)
            for f, c in index.items():
                picked[f].append(parts[c])
            numbers.append(number)
        cols = {f: np.array(v, dtype=str) for f, v in picked.items()}
        lines = np.asarray(numbers, dtype=np.int64)
    for f in required:
        empty = np.flatnonzero(np.char.str_len(cols[f]) == 0) if len(lines) else []
        if len(empty):
            raise DataError(f"empty {f}", path, int(lines[empty[0]]))
    return cols, lines


def _build_kg(kg_path: Path, link_path: Path, item_names: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """KGAT-style triples: linked items are entities 0..n_items-1, other entities follow sorted.

    Link rows for items without interactions are ignored (that entity stays an ordinary
    entity); an item or entity linked twice keeps its first link.
    """
    n_items = len(item_names)
    item_entity = np.array([f"item:{t}" for t in item_names], dtype=object)  # unlinked items
    entity_item: dict[str, int] = {}
    if link_path.is_file():
        link, _ = read_atomic(link_path, ["item_id", "entity_id"])
        item_index = {str(t): k for k, t in enumerate(item_names)}
        linked = np.zeros(n_items, dtype=bool)
        for item, entity in zip(link["item_id"].tolist(), link["entity_id"].tolist()):
            k = item_index.get(item)
            if k is None or linked[k] or entity in entity_item:
                continue
            linked[k] = True
            entity_item[entity] = k
            item_entity[k] = entity

    cols, _ = read_atomic(kg_path, ["head_id", "relation_id", "tail_id"])
    heads, tails = cols["head_id"], cols["tail_id"]
    uniq, inverse = np.unique(np.concatenate([heads, tails]), return_inverse=True)
    ent_id = np.full(len(uniq), -1, dtype=np.int64)
    for k, token in enumerate(uniq.tolist()):
        item = entity_item.get(token)
        if item is not None:
            ent_id[k] = item
    others = np.flatnonzero(ent_id < 0)
    other_rank, other_names = dense_ids(uniq[others])
    ent_id[others] = n_items + other_rank
    inverse = inverse.reshape(-1)
    relations, relation_names = dense_ids(cols["relation_id"])
    kg = np.stack([ent_id[inverse[: len(heads)]], relations, ent_id[inverse[len(heads) :]]], axis=1)
    entity_ids = np.concatenate([item_entity.astype(str), other_names.astype(str)])
    return kg.astype(np.int64), entity_ids, [str(r) for r in relation_names]
