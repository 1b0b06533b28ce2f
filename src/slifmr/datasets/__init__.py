"""Datasets shipped inside the package (only ones whose license allows it)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from slifmr.errors import DataError

EMBEDDED = ("movietweetings-10core",)


def embedded_path(name: str) -> str:
    """Directory of an embedded dataset, wherever the package is installed."""
    if name not in EMBEDDED:
        raise DataError(f"unknown embedded dataset '{name}': embedded datasets are {EMBEDDED}")
    path = Path(str(resources.files("slifmr.datasets") / name))
    if not path.is_dir():
        raise DataError(f"embedded dataset '{name}' is missing from the installed package (expected {path})")
    return str(path)
