"""prepare carries a KGAT-layout source's item_text.tsv over to the items it keeps."""

from __future__ import annotations

import json

import pytest
from prep_helpers import kgat_source, run

from slifmr.data.formats import read_kgat
from slifmr.errors import DataError

TEXTS = {"bizA": "Alpha cafe", "bizB": "Beta bar", "9x": "Nine", "bizD": ""}  # bizD: row with no text


def _texts_by_id(directory) -> dict[str, str]:
    ids = [line.split()[0] for line in (directory / "item_list.txt").read_text().splitlines()[1:]]
    rows = [line.split("\t", 1) for line in (directory / "item_text.tsv").read_text().splitlines()[1:]]
    assert [int(k) for k, _ in rows] == list(range(len(ids)))  # one row per kept item, new ids
    return {ids[int(k)]: t for k, t in rows}


def test_item_text_carried_over_through_kcore(tmp_path):
    src = kgat_source(tmp_path)
    order = ["bizA", "bizB", "9x", "bizD"]  # the source's remap ids 0..3
    (src / "item_text.tsv").write_text("remap_id\ttext\n" + "".join(f"{k}\t{TEXTS[i]}\n" for k, i in enumerate(order)))
    res = run("kgat", src, tmp_path / "out", kcore=[1, 3])  # item '9x' has 2 interactions: dropped
    kept = [str(i) for i in read_kgat(res.output).item_ids]
    assert "9x" not in kept and len(kept) == 3
    assert _texts_by_id(res.output) == {i: TEXTS[i] for i in kept}
    manifest = res.manifest
    assert manifest["settings"]["features"]["item_text"]["items_without_text"] == 1  # bizD
    assert "item_text.tsv" in json.dumps(manifest["source"]["files"])  # hashed with the source's files
    # a source without the file: none written
    (src / "item_text.tsv").unlink()
    res2 = run("kgat", src, tmp_path / "out2")
    assert not (res2.output / "item_text.tsv").exists()


@pytest.mark.parametrize("body, msg", [("remap_id\ttext\n7\tx\n", "line 2: remap_id 7 is not an item"),
                                       ("remap_id\ttext\n0\ta\n0\tb\n", "line 3: remap_id 0 has two rows"),
                                       ("id,text\n0,a\n", "line 1: header must be")])
def test_bad_source_item_text_names_file_and_line(tmp_path, body, msg):
    src = kgat_source(tmp_path)
    (src / "item_text.tsv").write_text(body)
    with pytest.raises(DataError, match=msg) as e:
        run("kgat", src, tmp_path / "out")
    assert "item_text.tsv" in str(e.value) and not (tmp_path / "out").exists()
