"""Atomic output (nothing half-written on failure) and the manifest's hashes and counts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from prep_helpers import kgat_source, run

from slifmr.data.formats import read_kgat
from slifmr.prepare import manifest as mf
from slifmr.prepare import writer


def _boom(*a, **k):
    raise KeyboardInterrupt("disk full")


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    src = kgat_source(tmp_path)
    out = tmp_path / "out" / "ds"
    monkeypatch.setattr(np, "save", _boom)  # fails after the text files were written
    with pytest.raises(KeyboardInterrupt):
        run("kgat", src, out)
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []  # no temp dir left either


def test_failed_overwrite_keeps_the_old_directory(tmp_path, monkeypatch):
    src = kgat_source(tmp_path)
    out = tmp_path / "ds"
    first = run("kgat", src, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(writer.np, "savetxt", _boom)
    with pytest.raises(KeyboardInterrupt):
        run("kgat", src, out, overwrite=True, kcore=[1, 3])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "yelp"]
    monkeypatch.undo()
    second = run("kgat", src, out, overwrite=True, kcore=[1, 3])  # a successful overwrite replaces it
    assert second.manifest["counts"]["items"] < first.manifest["counts"]["items"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "yelp"]


def test_manifest_hashes_counts_and_settings(tmp_path):
    src = kgat_source(tmp_path)
    res = run("kgat", src, tmp_path / "out", split_seed=7)
    m = res.manifest
    srcs = {r["name"]: r for r in m["source"]["files"]}
    assert set(srcs) == {"train.txt", "test.txt", "kg_final.txt", "user_list.txt", "item_list.txt",
                         "entity_list.txt", "relation_list.txt", "image_feat.npy"}
    for name, rec in srcs.items():
        data = (src / name).read_bytes()
        assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
    c = m["counts"]
    assert (c["users"], c["items"], c["interactions"], c["train"], c["valid"], c["test"]) == (3, 4, 11, 8, 0, 3)
    assert c["density"] == pytest.approx(11 / 12)
    assert (c["entities"], c["relations"], c["triples"]) == (6, 2, 4)
    assert (c["image_dim"], c["image_coverage"]) == (3, 3)
    s = m["settings"]
    assert s["layout"] == "kgat" and s["kcore"] == [0, 0] and s["package_version"] == m["slifmr_version"]
    assert s["split"] == {"requested": "auto", "kind": "given", "ratios": [0.8, 0.1, 0.1], "seed": 7}
    # every written file is listed with its hash, and the directory verifies
    listed = {r["name"] for r in m["files"]}
    on_disk = {str(p.relative_to(res.output)) for p in res.output.rglob("*") if p.is_file()} - {"dataset.json"}
    assert listed == on_disk and "conf/dataset/out.yaml" in listed
    assert mf.verify(res.output) == []
    assert len(read_kgat(res.output).users) == c["interactions"]
    size = (res.output / "test.txt").stat().st_size
    with open(res.output / "test.txt", "a") as f:
        f.write("1 2\n")
    assert mf.verify(res.output) == [f"test.txt: size {size + 4}, manifest says {size}"]


def test_counts_match_what_the_datamodule_loads(tmp_path, shared_data):
    from slifmr.data.datamodule import RecDataModule

    res = run("kgat", shared_data / "ml-100k-kg-tiny", tmp_path / "tiny")
    dm = RecDataModule(name="tiny", path=str(res.output), format="kgat", kcore=0, split="given", valid_ratio=0.1)
    s = dm.load().summary()
    c = res.manifest["counts"]
    for k in ("users", "items", "interactions", "test", "entities", "relations", "triples",
              "text_dim", "text_coverage", "genre_dim", "genre_coverage"):
        assert s[k] == c[k], k
    assert (c["users"], c["items"], c["interactions"], c["triples"]) == (171, 200, 6017, 11338)
