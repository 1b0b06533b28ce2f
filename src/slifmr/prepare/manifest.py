"""``dataset.json``: what a prepared directory was made from, what it holds, and with which settings.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1, "name": str, "created": ISO-8601 UTC, "slifmr_version": str,
      "source":   {"layout": str, "path": str, "files": [{"name", "size", "sha256"}, ...]},
      "settings": {"layout", "options", "kcore": [min_user, min_item],
                   "split": {"requested", "kind", "ratios", "seed"},
                   "features": {"item_meta": {...}, "<modality>": {encoder settings}},
                   "package_version"},
      "counts":   {"users", "items", "interactions", "train", "valid", "test", "density",
                   "entities", "relations", "triples", "<modality>_dim", "<modality>_coverage"},
      "features": {"<modality>": {"dim", "coverage", "coverage_fraction", "missing": {reason: n},
                                  "origin"}},
      "files":    [{"name", "size", "sha256"}, ...]   # every file of the prepared directory
    }

``counts`` uses the keys of ``RecDataset.summary()``, so ``data.expected.compare_counts`` reads
both. ``files`` lets :func:`verify` tell a prepared directory that changed after preparation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from slifmr.errors import DataError

MANIFEST = "dataset.json"
SCHEMA_VERSION = 1


def sha256(path: Path, bar=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            if bar is not None:
                bar.update(len(block))
    return h.hexdigest()


def file_records(paths: Iterable[Path], root: Path | None = None, show_progress: bool = False) -> list[dict]:
    """[{name, size, sha256}] for files (names relative to ``root`` when inside it), with a byte bar."""
    from tqdm.auto import tqdm

    paths = sorted(set(paths))
    total = sum(p.stat().st_size for p in paths)
    records = []
    with tqdm(total=total, desc="hashing", unit="B", unit_scale=True, disable=not show_progress, leave=False) as bar:
        for p in paths:
            name = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
            records.append({"name": name, "size": p.stat().st_size, "sha256": sha256(p, bar)})
    return records


def image_digest(paths: Iterable[Path]) -> dict:
    """One record for a folder of images (a line per file would bloat the manifest)."""
    h = hashlib.sha256()
    n = size = 0
    for p in sorted(paths):
        h.update(f"{p.name}\0{sha256(p)}\n".encode())
        n += 1
        size += p.stat().st_size
    return {"files": n, "size": size, "sha256": h.hexdigest()}


def load(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError("not a prepared dataset: manifest missing", path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"manifest is not valid JSON ({exc.msg})", path, exc.lineno) from exc


def verify(directory: str | Path) -> list[str]:
    """Problems with a prepared directory's files against its manifest (empty list = intact)."""
    directory = Path(directory)
    problems = []
    for rec in load(directory).get("files", []):
        p = directory / rec["name"]
        if not p.is_file():
            problems.append(f"{rec['name']}: missing")
        elif p.stat().st_size != rec["size"]:
            problems.append(f"{rec['name']}: size {p.stat().st_size}, manifest says {rec['size']}")
        elif sha256(p) != rec["sha256"]:
            problems.append(f"{rec['name']}: sha256 differs from the manifest")
    return problems
