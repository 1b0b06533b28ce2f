"""Known targets: a dataset that differs from its config's ``expected`` block warns, naming each field."""

from __future__ import annotations

import warnings

import pytest
from omegaconf import OmegaConf
from prep_helpers import kgat_source, run

from slifmr.data.datamodule import RecDataModule
from slifmr.data.expected import DatasetMismatchWarning, compare_counts
from slifmr.errors import DataError
from slifmr.prepare.config import known_expected, packaged_config


def test_compare_counts_names_each_difference():
    found = {"users": 3, "items": 4, "interactions": 10, "text_dim": 8}
    assert compare_counts(found, {"n_users": 3, "n_items": 4}) == []
    diffs = compare_counts(found, {"n_users": 5, "n_items": 4, "n_interactions": 9, "n_triples": 2, "text_dim": 8})
    assert diffs == [("n_users", 5, 3), ("n_interactions", 9, 10), ("n_triples", 2, "absent")]
    with pytest.raises(DataError, match="unknown expected field 'n_usres'"):
        compare_counts(found, {"n_usres": 1})


def test_datamodule_warns_loudly_with_every_field(tmp_path):
    src = kgat_source(tmp_path)
    dm = RecDataModule(name="yelpish", path=str(src), kcore=0, split="given", valid_ratio=0.0,
                       expected={"n_users": 3, "n_items": 5, "n_interactions": 12, "image_coverage": 3})
    with pytest.warns(DatasetMismatchWarning) as rec:
        dm.setup()
    msg = str(rec[0].message)
    assert "'yelpish'" in msg and str(src) in msg and "2 field(s) differ" in msg
    assert "n_items: expected 5, found 4" in msg and "n_interactions: expected 12, found 11" in msg
    assert "n_users" not in msg  # matching fields are not reported


def test_datamodule_silent_when_counts_match(tmp_path):
    dm = RecDataModule(name="ok", path=str(kgat_source(tmp_path)), kcore=0, split="given", valid_ratio=0.0,
                       expected={"n_users": 3, "n_items": 4, "n_interactions": 11, "n_test": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetMismatchWarning)
        dm.setup()


def test_paper_targets_are_in_the_configs():
    ab = OmegaConf.load(packaged_config("amazon-book")).expected
    assert (ab.n_users, ab.n_items, ab.n_interactions) == (70679, 24915, 846434)
    yelp = known_expected("yelp2018")
    assert (yelp["n_users"], yelp["n_items"], yelp["n_interactions"]) == (45919, 45538, 1183610)
    assert known_expected("movietweetings-10core") == {} and known_expected("no-such-set") == {}


def test_prepare_checks_known_targets_by_name(tmp_path):
    with pytest.warns(DatasetMismatchWarning) as rec:
        res = run("kgat", kgat_source(tmp_path), tmp_path / "amazon-book")
    msg = str(rec[0].message)
    for field, want, got in (("n_users", 70679, 3), ("n_items", 24915, 4), ("n_interactions", 846434, 11),
                             ("n_test", 193920, 3)):
        assert f"{field}: expected {want}, found {got}" in msg
    assert res.mismatch == msg
    # the packaged name is taken, so the generated config gets a suffix (package configs win in the search path)
    assert res.config_path.name == "amazon-book-prepared.yaml" and "dataset=amazon-book-prepared" in res.command
