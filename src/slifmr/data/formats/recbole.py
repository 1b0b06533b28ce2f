"""Reader for RecBole atomic files: ``<name>.inter`` (+ optional ``.kg`` and ``.link``).

Atomic files are tab separated with a ``field:type`` header; columns are found by the field
name, so extra fields in any order are fine. Users and items get dense ids in sorted order
of their original token; the KG is re-indexed KGAT-style (item ``i`` is entity ``i``), which
is what the KGAT-layout datasets derived from the same files use, so both readers agree.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slifmr.data.dataset import RawDataset
from slifmr.data.formats._common import (
    dataset_dir,
    dense_ids,
    fields_per_line,
    first_occurrences,
    read_bytes,
    sorted_tokens,
)
from slifmr.errors import DataError

log = logging.getLogger(__name__)


def read_recbole(path: str | Path, name: str | None = None, features: list[str] | None = None) -> RawDataset:
    """Read ``<path>/<name>.inter`` (``name`` defaults to the directory name) and its KG.

    ``path`` may also be the ``.inter`` file itself. Only users and items of ``.inter`` are
    indexed (``.item`` rows without interactions are not). A repeated (user, item) pair keeps
    its first occurrence. No split is given (``split=None``) and no features are read.
    A row with more fields than the header is tolerated (extra fields ignored, as RecBole
    does); fewer fields or an empty user/item token is an error. ``features`` (the readers'
    common signature) must be None or empty: the layout has no feature matrices.
    """
    if features:
        raise DataError(f"dataset.features asks for {list(features)}, but the RecBole layout has no feature "
                        "matrices (use the kgat or mmrec layout, or dataset.features=null)", str(path))
    directory, name = _locate(path, name)
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
        user_ids=user_names,
        item_ids=item_names,
        kg=kg,
        n_entities=0 if entity_ids is None else len(entity_ids),
        relation_names=relation_names,
        entity_ids=entity_ids,
        source=f"recbole:{inter_path}",
    )


def _locate(path: str | Path, name: str | None) -> tuple[Path, str]:
    """(directory, dataset name): ``path`` is the directory (name defaults to its name) or the
    ``.inter`` file itself."""
    given = Path(path).expanduser()
    if given.suffix == ".inter" and given.is_file():
        return given.parent, name or given.stem
    directory = dataset_dir(given)
    return directory, name or directory.name


def recbole_inputs(path: str | Path, name: str | None = None, features: list[str] | None = None) -> list[Path]:
    """The files :func:`read_recbole` reads (that exist): what the dataset cache hashes."""
    directory, name = _locate(path, name)
    return [p for p in (directory / f"{name}{s}" for s in (".inter", ".kg", ".link")) if p.is_file()]


def read_atomic(path: Path, required: list[str]) -> tuple[dict[str, list[str]], np.ndarray]:
    """The ``required`` columns of an atomic file as token lists, and each row's 1-based line."""
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc})", path) from exc
    rows = text.split("\n")
    header = [f.split(":", 1)[0].strip() for f in rows[0].rstrip("\r").split("\t")]
    missing = [f for f in required if f not in header]
    if missing:
        raise DataError(f"header lacks field(s) {missing}; it has {header}", path, 1)
    index = {f: header.index(f) for f in required}
    ncol = len(header)
    body = rows[1:]
    while body and not body[-1].strip():
        body.pop()

    n_fields = fields_per_line(data, ord("\t"))[1 : len(body) + 1]
    if body and np.all(n_fields == ncol) and all(body):
        # fast path, a rectangular file: one split for the whole body
        flat = "\t".join(body).split("\t")
        cols = {f: flat[c::ncol] for f, c in index.items()}
        lines = np.arange(2, len(body) + 2, dtype=np.int64)
    else:
        cols = {f: [] for f in required}
        numbers: list[int] = []
        for number, line in enumerate(body, start=2):
            if not line.strip():
                continue
            parts = line.split("\t")  # more fields than the header: extras ignored, like RecBole
            if len(parts) < ncol:
                raise DataError(f"malformed line: {len(parts)} field(s) but the header has {ncol}", path, number)
            for f, c in index.items():
                cols[f].append(parts[c])
            numbers.append(number)
        lines = np.asarray(numbers, dtype=np.int64)
    for f, c in index.items():
        if c == ncol - 1:  # a CRLF file leaves "\r" on the last field
            cols[f] = [t.rstrip("\r") for t in cols[f]]
        padded = [k for k, t in enumerate(cols[f]) if t != t.strip()]
        if padded:  # "12 " and "12" would silently be two different ids
            k = padded[0]
            log.warning("%s, line %d: %s token %r has surrounding spaces; stripped (%d token(s) in all)",
                        path, int(lines[k]), f, cols[f][k], len(padded))
            cols[f] = [t.strip() for t in cols[f]]
        if "" in cols[f]:
            raise DataError(f"empty {f}", path, int(lines[cols[f].index("")]))
    return cols, lines


def _build_kg(kg_path: Path, link_path: Path, item_names: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """KGAT-style triples: linked items are entities 0..n_items-1, other entities follow sorted.

    Link rows for items without interactions are ignored (that entity stays an ordinary
    entity); an item or entity linked twice keeps its first link. Triples are kept as they
    are (no de-duplication, no inverse relations: models add those).
    """
    n_items = len(item_names)
    item_entity = [f"item:{t}" for t in item_names]  # unlinked items keep a readable key
    entity_item: dict[str, int] = {}
    if link_path.is_file():
        link, _ = read_atomic(link_path, ["item_id", "entity_id"])
        item_index = {str(t): k for k, t in enumerate(item_names)}
        linked = np.zeros(n_items, dtype=bool)
        for item, entity in zip(link["item_id"], link["entity_id"]):
            k = item_index.get(item)
            if k is None or linked[k] or entity in entity_item:
                continue
            linked[k] = True
            entity_item[entity] = k
            item_entity[k] = entity

    cols, _ = read_atomic(kg_path, ["head_id", "relation_id", "tail_id"])
    heads, tails = cols["head_id"], cols["tail_id"]
    others = sorted_tokens({e for e in set(heads) | set(tails) if e not in entity_item})
    ent_index = dict(entity_item)
    ent_index.update((e, n_items + k) for k, e in enumerate(others))
    relations, relation_names = dense_ids(cols["relation_id"])
    kg = np.empty((len(heads), 3), dtype=np.int64)
    kg[:, 0] = np.fromiter(map(ent_index.__getitem__, heads), dtype=np.int64, count=len(heads))
    kg[:, 1] = relations
    kg[:, 2] = np.fromiter(map(ent_index.__getitem__, tails), dtype=np.int64, count=len(tails))
    entity_ids = np.array(item_entity + others, dtype=str)
    return kg, entity_ids, [str(r) for r in relation_names]
