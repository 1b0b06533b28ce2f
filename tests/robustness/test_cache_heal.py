"""The dataset cache heals itself: a corrupt entry is reported and rebuilt, stale temporary files
of killed writes are swept, and only the files the reader reads are hashed."""

from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pytest

from slifmr.data import cache
from slifmr.data.datamodule import RecDataModule
from slifmr.errors import DataError


def _dm(path, cache_dir, **kw) -> RecDataModule:
    return RecDataModule(name="tiny", path=str(path), format="kgat", kcore=0, cache_dir=str(cache_dir), **kw)


@pytest.fixture
def tiny(tmp_path, shared_data):
    src = tmp_path / "tiny"
    shutil.copytree(shared_data / "ml-100k-kg-tiny", src, ignore=shutil.ignore_patterns("ml-100k-tiny"))
    return src


def test_truncated_entry_is_rebuilt(tmp_path, tiny, caplog):
    cdir = tmp_path / "c"
    first = _dm(tiny, cdir).load()
    (entry,) = cdir.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 3])  # a write cut short
    with pytest.raises(cache.CorruptCacheEntry, match=str(entry)):
        cache.load(entry)
    with caplog.at_level(logging.WARNING):
        again = _dm(tiny, cdir).load()
    assert "corrupt dataset cache entry" in caplog.text and str(entry) in caplog.text
    np.testing.assert_array_equal(first.train, again.train)
    cache.load(entry)  # rebuilt in place: readable again


def test_stale_temporary_files_are_swept(tmp_path, tiny):
    cdir = tmp_path / "c"
    cdir.mkdir()
    stale, fresh = cdir / "tiny-abc.npz.x1.tmp", cdir / "tiny-abc.npz.x2.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written by a job that started just now")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    _dm(tiny, cdir).load()
    assert not stale.exists() and fresh.exists()


def test_only_the_files_the_reader_reads_are_hashed(tmp_path, tiny):
    cdir = tmp_path / "c"
    _dm(tiny, cdir).load()
    notes = tiny / "README.md"
    notes.write_text("unrelated notes")
    notes.chmod(0)  # unreadable, and not read by the kgat reader: no error, same cache entry
    try:
        _dm(tiny, cdir).load()
        assert len(list(cdir.glob("*.npz"))) == 1
    finally:
        notes.chmod(0o644)
    with open(tiny / "kg_final.txt", "a") as f:  # a file the reader does read: a new entry
        f.write("\n")
    _dm(tiny, cdir).load()
    assert len(list(cdir.glob("*.npz"))) == 2


def test_path_that_is_a_file_is_named(tmp_path, tiny):
    with pytest.raises(DataError, match="must be a directory, but it is a file"):
        _dm(tiny / "train.txt", tmp_path / "c").load()
