"""Readers for the KGAT, RecBole and MMRec layouts: real-data counts and every bad-input error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from slifmr.data.dataset import TEST, TRAIN, VALID
from slifmr.data.formats import FORMATS, read_dataset, read_kgat, read_mmrec, read_recbole
from slifmr.errors import DataError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TINY = DATA / "ml-100k-kg-tiny"
ML100K = DATA / "ml-100k-kg"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real dataset not available: {path}")
    return path


def pairs(ds) -> set[tuple[int, int]]:
    return set(zip(ds.users.tolist(), ds.items.tolist()))


def raises(fn, *words: str) -> str:
    """Call fn, expect a DataError whose message contains every word; return the message."""
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"
    return msg


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


# ------------------------------------------------------------------ real data


def test_kgat_tiny_counts_match_readme():
    ds = read_kgat(need(TINY))
    assert (ds.n_users, ds.n_items) == (171, 200)
    assert len(ds.users) == 6017
    assert (ds.split == TRAIN).sum() == 4806 and (ds.split == TEST).sum() == 1211
    assert len(ds.kg) == 11338 and ds.n_relations == 24 and ds.n_entities == 6035
    assert len(ds.relation_names) == 24 and len(ds.entity_ids) == 6035
    assert ds.features["text"].shape == (200, 384) and ds.features["genre"].shape == (200, 18)
    assert ds.features["text"].dtype == np.float32 and ds.feature_masks["text"].all()
    assert ds.user_ids[0] == "1" and ds.item_ids[0] == "1"  # MovieLens ids from the list files
    assert ds.kg.min() >= 0 and max(ds.kg[:, 0].max(), ds.kg[:, 2].max()) < ds.n_entities


def test_kgat_feature_selection():
    ds = read_kgat(need(TINY), features=["text"])
    assert list(ds.features) == ["text"]
    assert read_kgat(TINY, features=[]).features == {}


def test_readers_share_one_signature(tmp_path):
    """Every reader takes (path, name, features): the DataModule passes the same arguments to all."""
    import inspect

    for reader in (read_kgat, read_recbole, read_mmrec):
        assert list(inspect.signature(reader).parameters)[:3] == ["path", "name", "features"], reader
    with pytest.raises(DataError, match="RecBole layout has no feature matrices"):
        read_dataset("recbole", need(TINY / "ml-100k-tiny"), name="ml-100k-tiny", features=["text"])
    assert read_dataset("recbole", TINY / "ml-100k-tiny", name="ml-100k-tiny", features=[]).features == {}
    # mmrec selects features as kgat does: exactly the named ones, a missing one is an error
    d = tmp_path / "mm"
    d.mkdir()
    (d / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n1\t1\t0\n")
    np.save(d / "text_feat.npy", np.ones((2, 3), dtype=np.float32))
    np.save(d / "image_feat.npy", np.ones((2, 4), dtype=np.float32))
    assert sorted(read_mmrec(d).features) == ["image", "text"]
    assert list(read_dataset("mmrec", d, features=["text"]).features) == ["text"]
    with pytest.raises(DataError, match="audio"):
        read_mmrec(d, features=["audio"])


def test_recbole_tiny_matches_kgat_layout():
    ds = read_recbole(need(TINY / "ml-100k-tiny"), name="ml-100k-tiny")
    assert ds.name == "ml-100k-tiny" and ds.split is None
    assert (len(ds.users), ds.n_users, ds.n_items) == (6017, 171, 200)
    # the stray 5th field on the last row (130 121 5 876250746 1) is ignored, the row kept
    assert (int(np.flatnonzero(ds.user_ids == "130")[0]), int(np.flatnonzero(ds.item_ids == "121")[0])) in pairs(ds)
    linked = sum(not e.startswith("item:") for e in ds.entity_ids[: ds.n_items])
    assert linked == 198
    ends = np.concatenate([ds.kg[:, 0], ds.kg[:, 2]])
    assert len(np.unique(ends[ends < ds.n_items])) == 198

    # same (user, item) pairs in MovieLens ids as interactions.tsv through the KGAT list files
    user_org = np.loadtxt(TINY / "user_list.txt", dtype=str, skiprows=1)[:, 0]
    item_org = np.loadtxt(TINY / "item_list.txt", dtype=str, skiprows=1)[:, 0]
    tsv = np.loadtxt(TINY / "interactions.tsv", dtype=np.int64, skiprows=1, usecols=(0, 1))
    expected = {(user_org[u], item_org[i]) for u, i in tsv.tolist()}
    got = {(ds.user_ids[u], ds.item_ids[i]) for u, i in pairs(ds)}
    assert got == expected

    kgat = read_kgat(TINY, features=[])
    assert (ds.entity_ids == kgat.entity_ids).all() and ds.relation_names == kgat.relation_names
    assert set(map(tuple, ds.kg.tolist())) == set(map(tuple, kgat.kg.tolist()))


def test_recbole_ml100k_counts():
    ds = read_recbole(need(ML100K / "ml-100k"))
    assert (len(ds.users), ds.n_users, ds.n_items) == (100_000, 943, 1682)
    assert len(ds.kg) == 91_631 and ds.n_entities == 34_712 and ds.n_relations == 24
    link = np.loadtxt(ML100K / "ml-100k" / "ml-100k.link", dtype=str, skiprows=1, delimiter="\t")
    item_of = {org: k for k, org in enumerate(ds.item_ids.tolist())}
    for item, entity in link.tolist():  # every linked item is its own entity, < n_items
        assert ds.entity_ids[item_of[item]] == entity
    ends = np.concatenate([ds.kg[:, 0], ds.kg[:, 2]])
    assert len(np.unique(ends[ends < ds.n_items])) == len(link) == 1598


def test_mmrec_round_trip_with_kgat(tmp_path):
    kgat = read_kgat(need(TINY), features=["text"])
    rows = ["userID\titemID\trating\ttimestamp\tx_label"]
    for name, label in (("train.txt", 0), ("test.txt", 2)):
        for line in (TINY / name).read_text().splitlines():
            user, *items = line.split()
            rows += [f"{user}\t{item}\t4.0\t88{k}\t{label}" for k, item in enumerate(items)]
    d = tmp_path / "tiny"
    write(d, {"tiny.inter": "\n".join(rows) + "\n"})
    shutil.copy(TINY / "text_feat.npy", d / "text_feat.npy")

    ds = read_mmrec(d)
    assert (ds.n_users, ds.n_items, ds.name) == (kgat.n_users, kgat.n_items, "tiny")
    assert np.array_equal(ds.users, kgat.users) and np.array_equal(ds.items, kgat.items)
    assert np.array_equal(ds.split, kgat.split)
    assert np.array_equal(ds.features["text"], kgat.features["text"])
    assert ds.kg is None and read_dataset("mmrec", d).n_items == 200


# ------------------------------------------------------------------ KGAT layout


def kgat_dir(tmp_path: Path, **files: str) -> Path:
    base = {"train.txt": "0 0 1\n1 2\n", "test.txt": "0 2\n1 0\n"}
    base.update({k.replace("__", "."): v for k, v in files.items()})
    return write(tmp_path / "ds", {k: v for k, v in base.items() if v is not None})


def test_kgat_minimal_without_lists(tmp_path):
    d = kgat_dir(tmp_path, kg_final__txt="0 0 3\n1 1 4\n", **{"train__txt": "0 0 1\n1 2\n3\n"})
    ds = read_kgat(d)
    assert ds.n_users == 4  # user 3 has a line without items
    assert ds.n_items == 3 and list(ds.user_ids) == ["0", "1", "2", "3"]
    assert ds.relation_names == ["r0", "r1"] and ds.n_entities == 5 and ds.entity_ids is None
    assert ds.features == {} and ds.source.startswith("kgat:")


def test_kgat_duplicates_within_a_split_keep_first(tmp_path):
    ds = read_kgat(kgat_dir(tmp_path, train__txt="0 1 0 1\n1 2\n0 0\n"))
    train = [(u, i) for u, i, s in zip(ds.users, ds.items, ds.split) if s == TRAIN]
    assert train == [(0, 1), (0, 0), (1, 2)]


def test_kgat_yelp_glued_item_list(tmp_path):
    items = "org_id remap_id freebase_id\nydUqgWsF3F27TbauOyib0w 0ydUqgWsF3F27TbauOyib0w\n"
    items += "3aZ9 13aZ9\n12x 212x\n"  # org ids starting with digits
    ds = read_kgat(kgat_dir(tmp_path, item_list__txt=items))
    assert list(ds.item_ids) == ["ydUqgWsF3F27TbauOyib0w", "3aZ9", "12x"]


def test_kgat_list_files(tmp_path):
    d = kgat_dir(
        tmp_path,
        user_list__txt="org_id remap_id\nu9 1\nu7 0\n",
        item_list__txt="org_id remap_id entity\nb 1 m.b\na 0 m.a\nc 2 -\nd 3 -\n",
        entity_list__txt="org_id remap_id\nm.a 0\nm.b 1\nx 2\ny 3\nz 4\n",
        relation_list__txt="org_id remap_id\nlikes 0\n",
        kg_final__txt="0 0 4\n",
    )
    ds = read_kgat(d)
    assert list(ds.user_ids) == ["u7", "u9"] and list(ds.item_ids) == ["a", "b", "c", "d"]
    assert ds.n_items == 4 and ds.n_entities == 5 and ds.relation_names == ["likes"]
    assert list(ds.entity_ids) == ["m.a", "m.b", "x", "y", "z"]


@pytest.mark.parametrize(
    "files, where, words",
    [
        ({"train__txt": None}, "train.txt", ["missing"]),
        ({"test__txt": None}, "test.txt", ["missing"]),
        ({"train__txt": "0 1\n1 x2\n"}, "train.txt, line 2", ["not an integer"]),
        ({"train__txt": "0 1\n1 1.5\n"}, "train.txt, line 2", ["not an integer"]),
        ({"test__txt": "0 2\n1 -3\n"}, "test.txt, line 2", ["negative"]),
        ({"train__txt": "0 1\n\n-1 2\n"}, "train.txt, line 3", ["negative", "user"]),
        ({"train__txt": "0 1\n1 99999999999\n"}, "train.txt, line 2", ["too large"]),
        ({"train__txt": ""}, "train.txt", ["empty"]),
        ({"test__txt": "0\n1\n"}, "test.txt", ["empty"]),
        ({"train__txt": "0 1\n1 0 2\n"}, "test.txt, line 2", ["train.txt (line 2)", "both"]),
        ({"item_list__txt": "org_id remap_id\na 0\nb 1\n"}, "train.txt, line 2", ["out of range", "item_list.txt"]),
        ({"user_list__txt": "org_id remap_id\na 0\n"}, "train.txt, line 2", ["out of range", "user_list.txt"]),
        ({"kg_final__txt": "0 0 1\n0 1\n"}, "kg_final.txt, line 2", ["expected 3 fields"]),
        ({"kg_final__txt": "0 0 1\n2 0 1 4\n"}, "kg_final.txt, line 2", ["expected 3 fields"]),
        ({"kg_final__txt": "0 0 1\n2 r 1\n"}, "kg_final.txt, line 2", ["not an integer"]),
        ({"kg_final__txt": "0 0 1\n2 0 -1\n"}, "kg_final.txt, line 2", ["negative"]),
        (
            {"kg_final__txt": "0 0 1\n2 0 5\n", "entity_list__txt": "org_id remap_id\na 0\nb 1\nc 2\nd 3\n"},
            "kg_final.txt, line 2",
            ["out of range", "entity_list.txt"],
        ),
        (
            {"kg_final__txt": "0 0 1\n2 1 3\n", "relation_list__txt": "org_id remap_id\nr 0\n"},
            "kg_final.txt, line 2",
            ["relation", "out of range", "relation_list.txt"],
        ),
        ({"item_list__txt": "org_id remap_id\na 0\nb x\nc 2\n"}, "item_list.txt, line 3", ["not an integer"]),
        ({"item_list__txt": "org_id remap_id\na 0\nb 0\nc 2\n"}, "item_list.txt, line 3", ["duplicate"]),
        ({"item_list__txt": "org_id remap_id\na 0\nb 7\nc 2\n"}, "item_list.txt, line 3", ["out of range"]),
    ],
)
def test_kgat_errors(tmp_path, files, where, words):
    d = kgat_dir(tmp_path, **files)
    raises(lambda: read_kgat(d), where, *words)


def test_kgat_feature_errors(tmp_path):
    d = kgat_dir(tmp_path)
    np.save(d / "text_feat.npy", np.ones((2, 4), np.float32))
    raises(lambda: read_kgat(d), "text_feat.npy", "rows")
    bad = np.ones((3, 4), np.float32)
    bad[1, 2] = np.nan
    np.save(d / "text_feat.npy", bad)
    raises(lambda: read_kgat(d), "text_feat.npy", "NaN", "row 1")
    raises(lambda: read_kgat(d, features=["image"]), "image_feat.npy", "missing")
    np.save(d / "text_feat.npy", np.array([[1, 0], [0, 0], [0, -2]], np.float32))
    ds = read_kgat(d)
    assert ds.feature_masks["text"].tolist() == [True, False, True]  # a zero row is missing


def test_kgat_missing_directory(tmp_path):
    raises(lambda: read_kgat(tmp_path / "nope"), "nope", "not found")


# ------------------------------------------------------------------ RecBole atomic files

INTER = "user_id:token\titem_id:token\trating:float\n"


def recbole_dir(tmp_path: Path, inter: str, **extra: str) -> Path:
    return write(tmp_path / "rb", {"rb.inter": inter, **{f"rb.{k}": v for k, v in extra.items()}})


def test_recbole_ordering_duplicates_and_kg(tmp_path):
    inter = "rating:float\titem_id:token\tuser_id:token\n"  # fields in any order
    inter += "5\t10\tu2\n4\t9\tu10\n3\t2\tu2\n1\t10\tu2\n2\t9\tu1\n"  # (u2, 10) twice
    d = recbole_dir(
        tmp_path,
        inter,
        link="item_id:token\tentity_id:token\n10\tm.ten\n2\tm.two\n77\tm.unindexed\n",
        kg="head_id:token\trelation_id:token\ttail_id:token\n"
        "m.ten\tgenre\tm.g\nm.unindexed\tgenre\tm.g\nm.two\tactor\tm.a\n",
    )
    ds = read_recbole(d)
    assert list(ds.item_ids) == ["2", "9", "10"]  # numeric order
    assert list(ds.user_ids) == ["u1", "u10", "u2"]  # lexicographic
    assert len(ds.users) == 4  # duplicate dropped, first kept
    assert list(ds.entity_ids) == ["m.two", "item:9", "m.ten", "m.a", "m.g", "m.unindexed"]
    assert ds.relation_names == ["actor", "genre"]
    assert ds.kg.tolist() == [[2, 1, 4], [5, 1, 4], [0, 0, 3]]
    assert read_dataset("recbole", d / "rb.inter").n_items == 3  # path may be the .inter file


def test_recbole_extra_field_tolerated_crlf(tmp_path):
    d = recbole_dir(tmp_path, INTER.replace("\n", "\r\n") + "1\t2\t3\r\n4\t5\t6\t7\r\n")
    ds = read_recbole(d)
    assert list(ds.item_ids) == ["2", "5"] and len(ds.users) == 2


@pytest.mark.parametrize(
    "inter, where, words",
    [
        (INTER + "1\t2\t3\n4\t5\n", "rb.inter, line 3", ["malformed", "2 field(s)"]),
        (INTER + "1\t2\t3\n\t5\t1\n", "rb.inter, line 3", ["empty user_id"]),
        (INTER + "1\t2\t3\n4\t\t1\t9\n", "rb.inter, line 3", ["empty item_id"]),
        ("user_id:token\trating:float\n1\t2\n", "rb.inter, line 1", ["item_id"]),
        (INTER, "rb.inter", ["empty"]),
    ],
)
def test_recbole_errors(tmp_path, inter, where, words):
    d = recbole_dir(tmp_path, inter)
    raises(lambda: read_recbole(d), where, *words)


def test_recbole_kg_errors_and_missing(tmp_path):
    d = recbole_dir(tmp_path, INTER + "1\t2\t3\n", kg="head_id:token\trelation_id:token\ttail_id:token\na\tr\n")
    raises(lambda: read_recbole(d), "rb.kg, line 2", "malformed")
    raises(lambda: read_recbole(d, name="other"), "other.inter", "missing")


# ------------------------------------------------------------------ MMRec layout

HEAD = "userID\titemID\trating\ttimestamp\tx_label\n"


def mmrec_dir(tmp_path: Path, inter: str, name: str = "mm") -> Path:
    return write(tmp_path / "mm", {f"{name}.inter": inter})


def test_mmrec_basic_and_features(tmp_path):
    d = mmrec_dir(tmp_path, HEAD + "0\t1\t5\t1\t0\n1\t0\t4\t2\t1\n0\t0\t3\t3\t2\n0\t1\t3\t4\t0\n", name="other")
    np.save(d / "image_feat.npy", np.ones((2, 3), np.float32))
    np.save(d / "text_feat.npy", np.ones((2, 5), np.float32))
    ds = read_mmrec(d)  # the only .inter file, though not named after the directory
    assert ds.name == "other" and len(ds.users) == 3  # duplicate (0, 1) in train dropped
    assert ds.split.tolist() == [TRAIN, VALID, TEST]
    assert sorted(ds.features) == ["image", "text"] and ds.features["text"].shape == (2, 5)
    np.save(d / "image_feat.npy", np.ones((3, 3), np.float32))
    raises(lambda: read_mmrec(d), "image_feat.npy", "rows")


def test_mmrec_float_ids_and_custom_fields(tmp_path):
    d = mmrec_dir(tmp_path, "u i r\n0.0 1.0 5\n2 0 4\n")
    ds = read_mmrec(d, user_field="u", item_field="i")
    assert ds.split is None and ds.n_users == 3 and ds.items.tolist() == [1, 0]


@pytest.mark.parametrize(
    "inter, where, words",
    [
        (HEAD + "0\t1\t5\t1\t0\n1\t0\t4\t2\t3\n", "mm.inter, line 3", ["x_label", "got 3"]),
        (HEAD + "0\t1\t5\t1\t0\nab\t0\t4\t2\t1\n", "mm.inter, line 3", ["userID", "not an integer"]),
        (HEAD + "0\t1\t5\t1\t0\n1\t1.5\t4\t2\t1\n", "mm.inter, line 3", ["itemID", "not an integer"]),
        (HEAD + "0\t1\t5\t1\t0\n1\t-1\t4\t2\t1\n", "mm.inter, line 3", ["negative"]),
        (HEAD + "0\t1\t5\t1\t0\n1\t1\t4\t1\n", "mm.inter, line 3", ["malformed", "4 field(s)"]),
        (HEAD + "0\t1\t5\t1\t0\n0\t1\t4\t2\t2\n", "mm.inter, line 3", ["line 2", "one split"]),
        (HEAD, "mm.inter", ["empty"]),
        ("user\titemID\n0\t1\n", "mm.inter, line 1", ["userID"]),
    ],
)
def test_mmrec_errors(tmp_path, inter, where, words):
    d = mmrec_dir(tmp_path, inter)
    raises(lambda: read_mmrec(d), where, *words)


def test_mmrec_inter_file_resolution(tmp_path):
    d = write(tmp_path / "mm", {"a.inter": HEAD, "b.inter": HEAD})
    raises(lambda: read_mmrec(d), "several .inter files")
    raises(lambda: read_mmrec(tmp_path / "mm", name="c"), "c.inter", "missing")
    empty = write(tmp_path / "none", {})
    raises(lambda: read_mmrec(empty), "none.inter", "missing")


# ------------------------------------------------------------------ dispatch


def test_read_dataset_dispatch(tmp_path):
    assert FORMATS == ("kgat", "recbole", "mmrec")
    d = kgat_dir(tmp_path)
    assert read_dataset("KGAT", d, name="x").name == "x"
    msg = raises(lambda: read_dataset("csv", d), "unknown dataset format 'csv'", "allowed")
    assert all(f in msg for f in FORMATS)


def test_huge_ids_are_errors_not_overflows(tmp_path):
    d = kgat_dir(tmp_path, item_list__txt="org_id remap_id\na 0\nb 99999999999999999999\n")
    raises(lambda: read_kgat(d), "item_list.txt, line 3", "too large")
    m = mmrec_dir(tmp_path, HEAD + "0\t1\t5\t1\t0\n1\t1e20\t4\t2\t1\n")
    raises(lambda: read_mmrec(m), "mm.inter, line 3", "too large")
