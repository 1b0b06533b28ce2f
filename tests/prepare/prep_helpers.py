"""Small fixtures written by the prepare tests, and a quiet prepare() call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slifmr.prepare import PrepareRequest, prepare


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def run(layout: str, src: Path, out: Path, **kw):
    return prepare(PrepareRequest(layout=layout, input=str(src), output=str(out), progress=False, **kw))


def kgat_source(tmp_path: Path) -> Path:
    """Yelp2018-like: item_list rows glued (2 fields), a KG, a feature with one all-zero row."""
    d = write(tmp_path / "yelp", {
        "train.txt": "0 0 1 2\n1 1 3\n2 0 2 3\n",
        "test.txt": "0 3\n1 0\n2 1\n",
        "user_list.txt": "org_id remap_id\nuA 0\nuB 1\nuC 2\n",
        # Yelp2018's quirk: remap id glued to the business id, two fields per row, not three
        "item_list.txt": "org_id remap_id freebase_id\nbizA 0bizA\nbizB 1bizB\n9x 29x\nbizD 3bizD\n",
        "entity_list.txt": "org_id remap_id\nbizA 0\nbizB 1\n9x 2\nbizD 3\nm.city 4\nm.cat 5\n",
        "relation_list.txt": "org_id remap_id\nlocated_in 0\ncategory 1\n",
        "kg_final.txt": "0 0 4\n1 0 4\n2 1 5\n3 1 5\n",
    })
    feat = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    feat[2] = 0  # item 2 has no feature row
    np.save(d / "image_feat.npy", feat)
    return d


def pairs_by_name(read) -> set[tuple[str, str, int]]:
    """(user org id, item org id, split) of a RawDataset: comparable across re-indexing."""
    return {
        (str(read.user_ids[u]), str(read.item_ids[i]), int(s))
        for u, i, s in zip(read.users.tolist(), read.items.tolist(), read.split.tolist())
    }


def kg_by_name(read) -> set[tuple[str, str, str]]:
    e, r = read.entity_ids, read.relation_names
    return {(str(e[h]), str(r[rel]), str(e[t])) for h, rel, t in read.kg.tolist()}
