"""KGAT's own amazon-book list files load: names with spaces and quotes, an empty name; the
remap id is the header's remap_id column on regular rows and the last integer field otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from slifmr.data.formats.kgat import read_kgat
from slifmr.errors import DataError


def _kgat(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "ds"
    d.mkdir()
    base = {"train.txt": "0 0 1\n1 2\n", "test.txt": "0 2\n1 0\n", **files}
    for name, text in base.items():
        (d / name).write_text(text)
    return d


def test_amazon_book_entity_list_shapes(tmp_path):
    entities = ("org_id remap_id\n"
                "m.045wq1q 0\nm.03_28m 1\nm.0h2q1cq 2\n"
                '"""I Love You 3\n'        # amazon-book line 25709: `"""I Love You 25708`
                " 4\n"                      # amazon-book: a line that is only ` 30181` (empty org_id)
                "Catch  22 5\n")            # a name ending in a number, inner spacing kept
    items = "org_id remap_id freebase_id\n0553092626 0 m.045wq1q\n0393316041 1 m.03_28m\n038548254X 2 m.0h2q1cq\n"
    d = _kgat(tmp_path, **{"entity_list.txt": entities, "item_list.txt": items, "kg_final.txt": "0 0 3\n1 0 4\n2 0 5\n"})
    ds = read_kgat(d)
    assert list(ds.entity_ids) == ["m.045wq1q", "m.03_28m", "m.0h2q1cq", '"""I Love You', "", "Catch  22"]
    assert list(ds.item_ids) == ["0553092626", "0393316041", "038548254X"]  # 3 columns: remap is the middle one
    assert ds.n_entities == 6 and len(ds.kg) == 3


@pytest.mark.parametrize("name", ["user_list.txt", "relation_list.txt"])
def test_same_rule_for_every_list(tmp_path, name):
    text = "org_id remap_id\nhttp://x/a b 1\n 0\n"
    files = {name: text}
    if name == "relation_list.txt":
        files["kg_final.txt"] = "0 1 3\n"
    ds = read_kgat(_kgat(tmp_path, **files))
    got = list(ds.user_ids) if name == "user_list.txt" else ds.relation_names
    assert got == ["", "http://x/a b"]


def test_a_line_without_an_integer_id_is_named(tmp_path):
    d = _kgat(tmp_path, **{"entity_list.txt": "org_id remap_id\nm.a 0\nI Love You\n", "kg_final.txt": "0 0 1\n"})
    with pytest.raises(DataError, match=r"entity_list.txt, line 3.*not an integer"):
        read_kgat(d)
