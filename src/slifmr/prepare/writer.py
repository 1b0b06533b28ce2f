"""Write a :class:`Prepared` dataset as a KGAT-layout directory, atomically.

The whole directory is built under a temporary name next to the target and renamed into
place at the end (the old directory, with ``overwrite``, is swapped out only then), so a
failure or an interrupt never leaves a half-written dataset behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID
from slifmr.errors import DataError
from slifmr.prepare.build import Prepared

_SPACE = re.compile(r"\s")


@contextmanager
def atomic_directory(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` when the block succeeds."""
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise DataError("output path exists and is not a directory", target)
    if target.exists() and not overwrite:
        raise DataError("output directory already exists; pass --overwrite to replace it", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "d")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def token(text: str) -> str:
    """An id safe for whitespace-separated list files: whitespace (and then '%') percent-encoded."""
    text = str(text)
    if text and not _SPACE.search(text):
        return text
    return quote(text, safe="") if text else "%00"


def write_dataset(p: Prepared, directory: Path, texts: Sequence[str | None] | None = None) -> list[Path]:
    """All data files of the prepared layout into ``directory``; returns the paths written."""
    written: list[Path] = []

    def put(name: str, lines: Iterator[str] | list[str]) -> None:
        path = directory / name
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
        written.append(path)

    put("user_list.txt", ["org_id remap_id"] + [f"{token(u)} {k}" for k, u in enumerate(p.user_ids)])
    entity_of_item = p.entity_ids[: p.n_items] if p.entity_ids is not None else ["-"] * p.n_items
    put(
        "item_list.txt",
        ["org_id remap_id entity_org_id"]
        + [f"{token(i)} {k} {token(e)}" for k, (i, e) in enumerate(zip(p.item_ids, entity_of_item))],
    )
    for name, label in (("train.txt", TRAIN), ("valid.txt", VALID), ("test.txt", TEST)):
        sel = p.labels == label
        if name == "valid.txt" and not sel.any():
            continue
        put(name, _user_lines(p.users[sel], p.items[sel]))
    if p.kg is not None:
        put("entity_list.txt", ["org_id remap_id"] + [f"{token(e)} {k}" for k, e in enumerate(p.entity_ids)])
        put("relation_list.txt", ["org_id remap_id"] + [f"{token(r)} {k}" for k, r in enumerate(p.relation_names)])
        path = directory / "kg_final.txt"
        np.savetxt(path, p.kg, fmt="%d", delimiter=" ")
        written.append(path)
    for name, feat in p.features.items():
        for suffix, arr in (("feat", feat.astype(np.float32)), ("mask", p.feature_masks[name].astype(bool))):
            path = directory / f"{name}_{suffix}.npy"
            np.save(path, arr, allow_pickle=False)
            written.append(path)
    if texts is not None:
        put("item_text.tsv", ["remap_id\ttext"] + [f"{k}\t{t or ''}" for k, t in enumerate(texts)])
    return written


def _user_lines(users: np.ndarray, items: np.ndarray) -> Iterator[str]:
    """KGAT lines ``user item item ...``, users ascending, items in source order."""
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    cuts = np.flatnonzero(np.diff(users)) + 1
    for u, group in zip(users[np.concatenate(([0], cuts))], np.split(items, cuts)):
        yield f"{int(u)} " + " ".join(map(str, group.tolist()))
