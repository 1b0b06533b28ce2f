"""Shared fixtures: where the shared real datasets are, and a quiet, seeded environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Many tiny ops: one intra-op thread is faster and immune to a busy machine's oversubscription.
torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("SLIFMR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "ml-100k-kg-tiny").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("SLIFMR_CACHE_DIR", str(tmp_path / "cache"))
