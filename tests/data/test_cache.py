import shutil
from pathlib import Path

import numpy as np
import pytest

from slifmr.data import cache
from slifmr.data.datamodule import RecDataModule
from slifmr.errors import DataError


def _dm(path: Path, cache_dir: Path, **kw) -> RecDataModule:
    return RecDataModule(name="tiny", path=str(path), format="kgat", kcore=0, cache_dir=str(cache_dir), **kw)


def test_cache_roundtrip_and_key(tmp_path, shared_data):
    src = tmp_path / "tiny"
    shutil.copytree(shared_data / "ml-100k-kg-tiny", src, ignore=shutil.ignore_patterns("ml-100k-tiny"))
    cdir = tmp_path / "c"
    a = _dm(src, cdir).load()
    files = list(cdir.glob("*.npz"))
    assert len(files) == 1 and not list(cdir.glob("*.tmp"))
    b = _dm(src, cdir).load()  # from the cache
    for k in ("train", "valid", "test", "kg", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    np.testing.assert_array_equal(a.features["text"], b.features["text"])
    np.testing.assert_array_equal(a.feature_masks["genre"], b.feature_masks["genre"])
    # another setting -> another key; an edited input file -> another key
    _dm(src, cdir, split_seed=7).load()
    assert len(list(cdir.glob("*.npz"))) == 2
    with open(src / "test.txt", "a") as f:
        f.write("\n")
    _dm(src, cdir).load()
    assert len(list(cdir.glob("*.npz"))) == 3


def test_interrupted_write_leaves_nothing(tmp_path, shared_data, monkeypatch):
    ds = _dm(shared_data / "ml-100k-kg-tiny", tmp_path / "c0").load()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    target = tmp_path / "c" / "x.npz"
    with pytest.raises(KeyboardInterrupt):
        cache.save(ds, target)
    assert not target.exists() and not list((tmp_path / "c").iterdir())


def test_missing_directory_names_it(tmp_path):
    with pytest.raises(DataError, match="directory not found: .*nope"):
        _dm(tmp_path / "nope", tmp_path / "c").load()


def test_unknown_feature_is_named(tmp_path, shared_data):
    with pytest.raises(DataError, match="visual"):
        _dm(shared_data / "ml-100k-kg-tiny", tmp_path / "c", features=["visual"]).load()
