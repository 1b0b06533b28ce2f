"""Broken inputs get a clear error naming the key or file, or a warning that names the problem;
nothing is silently accepted (issue 12's catalogue: each case once)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from hydra_compose import make_cfg
from slifmr.data.datamodule import RecDataModule
from slifmr.data.formats.kgat import read_kgat
from slifmr.data.formats.recbole import read_recbole
from slifmr.errors import DataError
from slifmr.models.slifmr import SLIFMR
from slifmr.train import train


def _kgat(tmp_path: Path, **files) -> Path:
    d = tmp_path / "ds"
    d.mkdir(parents=True, exist_ok=True)
    base = {"train.txt": "0 0 1\n1 2\n", "test.txt": "0 2\n1 0\n", **files}
    for name, content in base.items():
        if isinstance(content, np.ndarray):
            np.save(d / name, content)
        elif isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            (d / name).write_text(content)
    return d


@pytest.fixture
def tiny(tmp_path, shared_data):
    src = tmp_path / "tiny"
    shutil.copytree(shared_data / "ml-100k-kg-tiny", src, ignore=shutil.ignore_patterns("ml-100k-tiny"))
    return src


def _dm(path, **kw) -> RecDataModule:
    return RecDataModule(name="t", path=str(path), format="kgat", kcore=0, **kw)


# -- item 4: silent acceptance -> error or warning ----------------------------------------------------
def test_empty_kg_with_a_kg_model(tiny, caplog):
    (tiny / "kg_final.txt").write_text("")
    dm = _dm(tiny)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert "kg_final.txt is empty" in caplog.text and dm.data.kg is None
    with pytest.raises(DataError, match="no knowledge graph"):
        SLIFMR(meta=dm.meta)


@pytest.mark.parametrize("feat, words", [
    (np.zeros((3, 0), np.float32), "no dimensions"),
    (np.zeros((3, 4), np.float32), "covers no item"),
    (np.ones((3, 2), np.complex64), "dtype complex64"),
    (np.array([["a", "b"]] * 3), "dtype <U1"),
])
def test_bad_feature_matrices(tmp_path, feat, words):
    d = _kgat(tmp_path, **{"img_feat.npy": feat})
    with pytest.raises(DataError, match=words) as e:
        read_kgat(d)
    assert "img_feat.npy" in str(e.value)


def test_npz_saved_as_npy(tmp_path):
    d = _kgat(tmp_path)
    with open(d / "img_feat.npy", "wb") as f:
        np.savez(f, x=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"img_feat.npy: .*\.npz archive"):
        read_kgat(d)


def test_duplicate_triples_are_dropped_and_counted(tiny, caplog):
    kg = (tiny / "kg_final.txt").read_text().splitlines()
    (tiny / "kg_final.txt").write_text("\n".join(kg + kg[:3] + kg[:1]) + "\n")
    with caplog.at_level(logging.WARNING):
        dm = _dm(tiny)
        dm.setup()
    assert "dropped 4 duplicate KG triple(s)" in caplog.text
    assert len(dm.data.kg) == len(kg) == len(np.unique(dm.data.kg, axis=0))


def test_recbole_token_with_trailing_space(tmp_path, caplog):
    d = tmp_path / "rb"
    d.mkdir()
    (d / "rb.inter").write_text("user_id:token\titem_id:token\nu1\ti1\nu2\ti1 \nu2\ti2\n")
    with caplog.at_level(logging.WARNING):
        ds = read_recbole(d)
    assert "rb.inter, line 3" in caplog.text and "'i1 '" in caplog.text
    assert list(ds.item_ids) == ["i1", "i2"]  # one item, not two


def test_huge_id_without_a_list_file(tmp_path):
    d = _kgat(tmp_path, **{"test.txt": "0 2\n1 0 2000000\n"})
    with pytest.raises(DataError, match=r"test.txt, line 2: item id 2000000 is far beyond.*item_list.txt"):
        read_kgat(d)
    d = _kgat(tmp_path, **{"test.txt": "0 2\n1 0\n", "kg_final.txt": "0 0 5\n1 0 2000000\n"})
    with pytest.raises(DataError, match=r"kg_final.txt, line 2: entity id 2000000"):
        read_kgat(d)
    (d / "item_list.txt").write_text("org_id remap_id\n" + "".join(f"i{k} {k}\n" for k in range(3)))
    (d / "kg_final.txt").write_text("0 0 5\n")
    assert read_kgat(d).n_items == 3  # small sparse ids stay fine


# -- item 5: raw exceptions -> named errors -----------------------------------------------------------
def test_bom_is_stripped(tmp_path):
    plain = read_kgat(_kgat(tmp_path / "a", **{"kg_final.txt": "0 0 3\n"}))
    bom = read_kgat(_kgat(tmp_path / "b", **{"train.txt": b"\xef\xbb\xbf0 0 1\n1 2\n",
                                              "kg_final.txt": b"\xef\xbb\xbf0 0 3\n"}))
    np.testing.assert_array_equal(plain.users, bom.users)
    np.testing.assert_array_equal(plain.kg, bom.kg)


@pytest.mark.parametrize("override, words", [
    ("model.L=abc", "model.L must be int, got 'abc'"),
    ("model.lr=abc", "model.lr must be float, got 'abc'"),
    ("dataset.batch_size=0", "dataset.batch_size must be >= 1"),
    ("dataset.eval_batch_size=0", "dataset.eval_batch_size must be >= 1"),
    ("model.embedding_dim=0", "model.embedding_dim must be >= 1"),
    ("model.self_loop.top_n=0", "model.self_loop.top_n must be an integer >= 1"),
    ("model.knn_k=0", "knn_k must be an integer >= 1"),
    ("eval.topk=[10,500]", "K=500, but the dataset has only 200 items"),
    ("eval.monitor=val/recall@30", "eval.monitor 'val/recall@30' is never logged"),
])
def test_config_errors_name_the_key(tmp_path, shared_data, override, words):
    cfg = make_cfg(tmp_path, ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", override])
    with pytest.raises(Exception) as e:
        train(cfg)
    assert words in str(e.value) or words in str(e.value.__cause__)


def test_train_error_is_one_line(tmp_path, monkeypatch, capsys):
    """The CLI entry point (Hydra's main, in-process): exit status 2 and one line on stderr."""
    from hydra.core.global_hydra import GlobalHydra

    from slifmr.train import main

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("SLIFMR_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["slifmr.train", "model.lr=abc", f"hydra.run.dir={tmp_path}"])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert e.value.code == 2 and "Traceback" not in err
    assert lines == ["error: model.lr must be float, got 'abc' (str)  (SLIFMR_DEBUG=1 shows the traceback)"]
