"""Bad input stops with a DataError naming the file and the line; the CLI exits 2 and says so."""

from __future__ import annotations

import numpy as np
import pytest
from prep_helpers import kgat_source, run

from slifmr.errors import DataError
from slifmr.prepare.cli import main
from slifmr.prepare.csv_source import CsvOptions


@pytest.mark.parametrize(
    "text, opts, words",
    [
        ("user,item,rating\na,1,5\nb,2,x\n", {"rating_col": "rating"}, ["x.csv, line 3", "rating", "'x'"]),
        ("user,item\na,1\nb\n", {}, ["x.csv, line 3", "malformed", "1 field(s)"]),
        ("user,item\na,1\n,2\n", {}, ["x.csv, line 3", "empty user id"]),
        ("user,item,ts\na,1,5\nb,2,yesterday\n", {"time_col": "ts"}, ["x.csv, line 3", "timestamp 'yesterday'"]),
        ("who,what\na,1\n", {}, ["x.csv, line 1", "user id", "['who', 'what']"]),
        ("user,item\na,1\n", {"item_col": "product"}, ["x.csv, line 1", "no item id column 'product'"]),
        ("user,item,r\na,1,1\n", {"rating_col": "r", "min_rating": 4}, ["x.csv", "no interaction left", "--min-rating"]),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, opts, words):
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(DataError) as info:
        run("csv", tmp_path / "x.csv", tmp_path / "out", csv=CsvOptions(**opts))
    for w in words:
        assert w in str(info.value)
    assert not (tmp_path / "out").exists()


def test_reader_errors_pass_through_with_line(tmp_path):
    src = kgat_source(tmp_path)
    (src / "kg_final.txt").write_text("0 0 4\n1 zero 4\n")
    with pytest.raises(DataError, match=r"kg_final.txt, line 2.*not an integer"):
        run("kgat", src, tmp_path / "out")


def test_metadata_and_feature_table_errors(tmp_path):
    src = kgat_source(tmp_path)
    (tmp_path / "meta.csv").write_text("item,title\nbizA,x\nbizA,y\n")
    with pytest.raises(DataError, match=r"meta.csv, line 3.*two metadata rows \(first on line 2\)"):
        run("kgat", src, tmp_path / "o1", item_meta=str(tmp_path / "meta.csv"), text_columns=["title"])
    (tmp_path / "meta2.csv").write_text("item,title\nbizA,x\n")
    with pytest.raises(DataError, match=r"meta2.csv, line 1: no text column 'summary'; the header has \['item', 'title'\]"):
        run("kgat", src, tmp_path / "o2", item_meta=str(tmp_path / "meta2.csv"), text_columns=["summary"])
    (tmp_path / "f.csv").write_text("item,a,b\nbizA,1,2\nbizB,1,oops\n")
    with pytest.raises(DataError, match=r"f.csv, line 3.*'oops' is not a number"):
        run("kgat", src, tmp_path / "o3", features={"v": str(tmp_path / "f.csv")})
    np.save(tmp_path / "short.npy", np.ones((2, 3), np.float32))
    with pytest.raises(DataError, match=r"short.npy.*2 rows but the dataset has 4 items"):
        run("kgat", src, tmp_path / "o4", features={"v": str(tmp_path / "short.npy")})
    with pytest.raises(DataError, match=r"already in the source \(its image_feat.npy is picked up by itself\).*image2"):
        run("kgat", src, tmp_path / "o5", features={"image": str(tmp_path / "short.npy")})
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 6))
    # the source's own image_feat.npy named again: picked up once, as without the flag
    run("kgat", src, tmp_path / "o6", features={"image": str(src / "image_feat.npy")})
    run("kgat", src, tmp_path / "o7")
    assert (np.load(tmp_path / "o6" / "image_feat.npy") == np.load(tmp_path / "o7" / "image_feat.npy")).all()


def test_mask_file_errors(tmp_path):
    src = kgat_source(tmp_path)
    np.save(src / "image_mask.npy", np.array([1, 0, 2, 1]))
    with pytest.raises(DataError, match=r"image_mask.npy.*boolean.*row 2"):
        run("kgat", src, tmp_path / "out")
    np.save(src / "image_mask.npy", np.ones(3, bool))
    with pytest.raises(DataError, match=r"image_mask.npy.*shape \(4,\)"):
        run("kgat", src, tmp_path / "out")
    # a valid mask file is the truth, over the all-zero-row convention, and is carried through
    np.save(src / "image_mask.npy", np.array([True, True, True, False]))
    from slifmr.data.formats import read_kgat

    assert read_kgat(src).feature_masks["image"].tolist() == [True, True, True, False]
    res = run("kgat", src, tmp_path / "out")
    assert np.load(res.output / "image_mask.npy").tolist() == [True, True, True, False]
    assert res.manifest["features"]["image"]["coverage"] == 3


def test_split_and_output_errors(tmp_path):
    (tmp_path / "x.csv").write_text("user,item\na,1\na,2\n")
    with pytest.raises(DataError, match="no split"):
        run("csv", tmp_path / "x.csv", tmp_path / "out", split="given")
    with pytest.raises(DataError, match="temporal needs timestamps"):
        run("csv", tmp_path / "x.csv", tmp_path / "out", split="temporal")
    src = kgat_source(tmp_path)
    with pytest.raises(DataError, match="outside the input"):
        run("kgat", src, src / "sub")


def test_cli_error_exit_code_and_message(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("user,item,rating\na,1,5\nb,2,bad\n")
    code = main(["csv", str(tmp_path / "x.csv"), str(tmp_path / "out"), "--rating-col", "rating", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "x.csv, line 3" in err and "'bad' is not a number" in err
    assert main(["kgat", str(tmp_path / "x.csv"), str(tmp_path / "o"), "--kcore", "a,b"]) == 2
    assert "--kcore" in capsys.readouterr().err


def test_cli_success_prints_table_and_command(tmp_path, capsys):
    src = kgat_source(tmp_path)
    out = tmp_path / "my data"
    assert main(["kgat", str(src), str(out), "--quiet", "--name", "mine"]) == 0
    text = capsys.readouterr().out
    for word in ("# Users", "# Interactions", "# Density", "# Entities", "# Relations", "# Triplets",
                 "# image (3-d)", "3 of 4 items (75.0%)"):
        assert word in text
    assert f"python -m slifmr.train --config-dir '{out}/conf' dataset=mine" in text
    # an existing output is refused without --overwrite, and kept
    assert main(["kgat", str(src), str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "dataset.json").is_file()


def test_kgat_valid_txt_is_read_and_checked_for_leaks(tmp_path):
    from slifmr.data.dataset import VALID
    from slifmr.data.formats import read_kgat

    src = kgat_source(tmp_path)
    (src / "valid.txt").write_text("0 3\n")  # user 0 item 3 is already in test.txt
    with pytest.raises(DataError, match=r"test.txt, line 1: user 0 item 3 is in both valid.txt \(line 1\) and test.txt"):
        read_kgat(src)
    (src / "valid.txt").write_text("1 2\n")
    ds = read_kgat(src)
    assert [(int(u), int(i)) for u, i, s in zip(ds.users, ds.items, ds.split) if s == VALID] == [(1, 2)]
