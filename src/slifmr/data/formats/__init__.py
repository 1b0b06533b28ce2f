"""Readers for public on-disk dataset layouts, each returning a :class:`RawDataset`.

* ``kgat``    -- KGAT / KGIN: ``train.txt``, ``test.txt``, ``kg_final.txt``, ``*_list.txt``.
* ``recbole`` -- RecBole atomic files: ``<name>.inter`` (+ ``.kg``, ``.link``).
* ``mmrec``   -- MMRec: ``<name>.inter`` with ``x_label`` plus ``*_feat.npy``.

Every reader validates its input and raises :class:`slifmr.errors.DataError` naming the file,
the line and the problem, so a bad download fails loudly instead of training on garbage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from slifmr.data.dataset import RawDataset
from slifmr.data.formats.kgat import read_kgat
from slifmr.data.formats.mmrec import read_mmrec
from slifmr.data.formats.recbole import read_recbole
from slifmr.errors import DataError

FORMATS: tuple[str, ...] = ("kgat", "recbole", "mmrec")

_READERS: dict[str, Callable[..., RawDataset]] = {"kgat": read_kgat, "recbole": read_recbole, "mmrec": read_mmrec}


def read_dataset(fmt: str, path: str | Path, name: str | None = None, **options: Any) -> RawDataset:
    """Read a dataset in layout ``fmt`` (one of :data:`FORMATS`); options go to the reader."""
    reader = _READERS.get(str(fmt).lower())
    if reader is None:
        raise DataError(f"unknown dataset format '{fmt}'; allowed: {', '.join(FORMATS)}")
    return reader(path, name=name, **options)


__all__ = ["FORMATS", "read_dataset", "read_kgat", "read_mmrec", "read_recbole"]
