"""Every source layout prepared from small fixtures, including each known trap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prep_helpers import kg_by_name, kgat_source, pairs_by_name, run, write

from slifmr.data.dataset import TEST, TRAIN, VALID
from slifmr.data.formats import read_kgat, read_mmrec, read_recbole
from slifmr.errors import DataError


def test_kgat_yelp_glued_item_list_kg_and_missing_feature_row(tmp_path):
    src = kgat_source(tmp_path)
    res = run("kgat", src, tmp_path / "out")
    back = read_kgat(res.output)
    # the glued rows were split into org id + remap id, and the org ids survive
    assert list(back.item_ids) == ["bizA", "bizB", "9x", "bizD"]
    assert list(back.user_ids) == ["uA", "uB", "uC"]
    assert pairs_by_name(back) == pairs_by_name(read_kgat(src))
    assert kg_by_name(back) == kg_by_name(read_kgat(src))
    # the zero row is missing in an explicit mask, and counted
    mask = np.load(res.output / "image_mask.npy")
    assert mask.dtype == bool and mask.tolist() == [True, True, False, True]
    assert back.feature_masks["image"].tolist() == [True, True, False, True]
    f = res.manifest["features"]["image"]
    assert (f["dim"], f["coverage"], f["missing"]) == (3, 3, {"no feature row": 1})
    assert f["coverage_fraction"] == pytest.approx(0.75)
    assert "image (3-d)" in res.summary and "3 of 4 items (75.0%)" in res.summary
    item_list = (res.output / "item_list.txt").read_text().splitlines()
    assert item_list[1] == "bizA 0 bizA" and item_list[3] == "9x 2 9x"  # entity names of linked items


def test_recbole_link_maps_items_to_entities(tmp_path):
    src = write(tmp_path / "rb", {
        "rb.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ti10\t5\t1\nu1\ti20\t3\t2\nu2\ti10\t4\t3\nu2\ti30\t2\t4\nu3\ti20\t5\t5\nu3\ti30\t1\t6\n",
        # i30 is not linked; i99 is linked but has no interaction
        "rb.link": "item_id:token\tentity_id:token\ni10\tm.ten\ni20\tm.twenty\ni99\tm.nn\n",
        "rb.kg": "head_id:token\trelation_id:token\ttail_id:token\n"
        "m.ten\tdirected_by\tm.bob\nm.twenty\tdirected_by\tm.bob\nm.nn\tgenre\tm.drama\n",
    })
    res = run("recbole", src, tmp_path / "out", split="random", ratios=(0.5, 0.0, 0.5))
    back = read_kgat(res.output)
    assert list(back.item_ids) == ["i10", "i20", "i30"]
    # items are entities 0..2 named by their linked Freebase id; unlinked items keep item:<id>
    assert list(back.entity_ids[:3]) == ["m.ten", "m.twenty", "item:i30"]
    assert kg_by_name(back) == {
        ("m.ten", "directed_by", "m.bob"), ("m.twenty", "directed_by", "m.bob"), ("m.nn", "genre", "m.drama")
    }
    assert kg_by_name(back) == kg_by_name(read_recbole(src))
    assert res.manifest["counts"]["entities"] == 6 and res.manifest["settings"]["options"]["source_name"] == "rb"
    assert [r["name"] for r in res.manifest["source"]["files"]] == ["rb.inter", "rb.kg", "rb.link"]


def test_mmrec_x_label_becomes_train_valid_test(tmp_path):
    head = "userID\titemID\trating\ttimestamp\tx_label\n"
    rows = "0\t0\t5\t1\t0\n0\t1\t5\t2\t1\n0\t2\t5\t3\t2\n1\t1\t4\t1\t0\n1\t2\t4\t2\t0\n1\t0\t4\t3\t2\n"
    src = write(tmp_path / "baby", {"baby.inter": head + rows})
    img = np.ones((3, 4), np.float32)
    img[1] = 0
    np.save(src / "image_feat.npy", img)
    np.save(src / "text_feat.npy", np.ones((3, 2), np.float32))
    res = run("mmrec", src, tmp_path / "out")
    assert (res.output / "valid.txt").read_text() == "0 1\n"
    back = read_kgat(res.output)
    assert pairs_by_name(back) == pairs_by_name(read_mmrec(src))
    assert sorted(back.split.tolist()) == sorted([TRAIN, TRAIN, TRAIN, VALID, TEST, TEST])
    c = res.manifest["counts"]
    assert (c["train"], c["valid"], c["test"]) == (3, 1, 2)
    assert c["image_coverage"] == 2 and c["text_coverage"] == 3
    cfg = res.config_path.read_text()
    assert "valid_ratio: 0.0" in cfg and "n_valid: 1" in cfg  # the given valid split is kept, not re-carved


def test_csv_sniffing_rating_threshold_and_metadata(tmp_path):
    inter = tmp_path / "ratings.csv"
    inter.write_text(
        "reviewerID;asin;overall;unixReviewTime\n"
        "u1;B1;5;10\nu1;B2;4;20\nu1;B3;1;30\nu2;B1;4;10\nu2;B3;5;20\nu2;B2;4;30\nu1;B1;5;40\n"
        "u3;B1;2;10\nu3;B2;5;11\nu3;B3;4;12\nu3;B4;4;13\n"
    )
    meta = tmp_path / "items.tsv"
    meta.write_text('asin\ttitle\tdescription\tbrand\nB1\tA "quoted" book\tabout\tX\nB2\tSecond\t\tY\nB4\t\t\t\n')
    res = run("csv", inter, tmp_path / "out", csv=_opts(rating_col="overall", min_rating=4),
              item_meta=str(meta), text_columns=["title", "description"], split="random", ratios=(0.5, 0.0, 0.5))
    opts = res.manifest["settings"]["options"]
    assert opts["delimiter"] == ";" and opts["columns"]["user"] == "reviewerID" and opts["columns"]["item"] == "asin"
    assert opts["dropped_by_rating"] == 2 and opts["duplicates_dropped"] == 1
    back = read_kgat(res.output)
    assert list(back.item_ids) == ["B1", "B2", "B3", "B4"] and len(back.users) == 8
    text = (res.output / "item_text.tsv").read_text().splitlines()
    assert text[1:] == ['0\tA "quoted" book. about', "1\tSecond", "2\t", "3\t"]
    meta_stats = res.manifest["settings"]["features"]["item_meta"]
    assert meta_stats["items_without_row"] == 1 and meta_stats["items_without_text"] == 2


@pytest.mark.parametrize("sep", [",", "\t", "|"])
def test_csv_delimiters_are_sniffed(tmp_path, sep):
    inter = tmp_path / "x.txt"
    rows = [["user", "item"], ["a", "1"], ["a", "2"], ["b", "1"], ["b", "3"], ["c", "2"], ["c", "3"]]
    inter.write_text("\n".join(sep.join(r) for r in rows) + "\n")
    res = run("csv", inter, tmp_path / "out", split="random", ratios=(0.5, 0.0, 0.5))
    assert res.manifest["settings"]["options"]["delimiter"] == sep
    assert res.manifest["counts"]["interactions"] == 6


def test_csv_temporal_split_puts_latest_in_test(tmp_path):
    inter = tmp_path / "x.tsv"
    inter.write_text("user\titem\ttime\n" + "".join(f"u\ti{k}\t{100 - k}\n" for k in range(10)))
    res = run("csv", inter, tmp_path / "out", split="temporal", csv=_opts(time_col="time"))
    test_items = (res.output / "test.txt").read_text().split()[1:]
    back = read_kgat(res.output)
    assert [back.item_ids[int(i)] for i in test_items] == ["i0"]  # time 100, the newest
    assert [back.item_ids[int(i)] for i in (res.output / "valid.txt").read_text().split()[1:]] == ["i1"]


def test_precomputed_keyed_feature_missing_items_are_masked(tmp_path):
    src = kgat_source(tmp_path)
    table = tmp_path / "vis.csv"
    table.write_text("item,f0,f1\nbizA,1,2\nbizD,3,4\nnot-an-item,5,6\n")
    res = run("kgat", src, tmp_path / "out", features={"visual": str(table)})
    feat, mask = np.load(res.output / "visual_feat.npy"), np.load(res.output / "visual_mask.npy")
    assert mask.tolist() == [True, False, False, True]
    assert feat[3].tolist() == [3, 4] and feat[1].tolist() == [0, 0]
    f = res.manifest["features"]["visual"]
    assert f["coverage"] == 2 and f["missing"] == {"no row in the file": 2} and "1 rows for unknown items" in f["origin"]


def test_vbpr_binary_image_features(tmp_path):
    src = kgat_source(tmp_path)
    rec = np.dtype([("id", "S10"), ("f", "<f4", (4096,))])
    data = np.zeros(2, rec)
    data["id"] = [b"bizB      ", b"9x        "]
    data["f"][0, :3] = [1, 2, 3]
    data["f"][1, 0] = 7
    data.tofile(tmp_path / "image_features_Books.b")
    res = run("kgat", src, tmp_path / "out", features={"visual": str(tmp_path / "image_features_Books.b")})
    feat = np.load(res.output / "visual_feat.npy")
    assert feat.shape == (4, 4096) and feat[1, :3].tolist() == [1, 2, 3] and feat[2, 0] == 7
    assert np.load(res.output / "visual_mask.npy").tolist() == [False, True, True, False]
    (tmp_path / "bad.b").write_bytes(b"x" * 100)
    with pytest.raises(DataError, match="bad.b.*multiple"):
        run("kgat", src, tmp_path / "out2", features={"visual": str(tmp_path / "bad.b")})


def test_kcore_keeps_dropped_items_as_entities(tmp_path):
    src = kgat_source(tmp_path)
    res = run("kgat", src, tmp_path / "out", kcore=[1, 3])  # items need >= 3 interactions
    back = read_kgat(res.output)
    assert back.n_items < 4 and back.n_entities == 6  # dropped items stay ordinary entities
    assert kg_by_name(back) == kg_by_name(read_kgat(src))
    assert res.manifest["settings"]["kcore"] == [1, 3]


def test_whitespace_in_ids_is_encoded(tmp_path):
    inter = tmp_path / "x.csv"
    inter.write_text("user,item\nJohn Smith,The Book\nJohn Smith,B\nAnn,The Book\nAnn,B\n")
    res = run("csv", inter, tmp_path / "out", split="random", ratios=(0.5, 0.0, 0.5))
    back = read_kgat(res.output)
    assert "John%20Smith" in list(back.user_ids) and "The%20Book" in list(back.item_ids)


def _opts(**kw):
    from slifmr.prepare.csv_source import CsvOptions

    return CsvOptions(**kw)


def test_manifest_json_is_on_disk(tmp_path):
    res = run("kgat", kgat_source(tmp_path), tmp_path / "out")
    assert json.loads((res.output / "dataset.json").read_text()) == res.manifest
