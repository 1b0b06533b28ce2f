"""Readers for public on-disk dataset layouts, each returning a :class:`RawDataset`.

* ``kgat``    -- KGAT / KGIN: ``train.txt``, ``test.txt``, ``kg_final.txt``, ``*_list.txt``.
* ``recbole`` -- RecBole atomic files: ``<name>.inter`` (+ ``.kg``, ``.link``).
* ``mmrec``   -- MMRec: ``<name>.inter`` with ``x_label`` plus ``*_feat.npy``.

Every reader validates its input and raises :class:`slifmr.errors.DataError` naming the file,
the line and the problem, so a bad download fails loudly instead of training on garbage.
All share one signature: ``reader(path, name=None, features=None, **layout_options)``
(``features``: None = every feature matrix of the directory, or exactly those named).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from slifmr.data.dataset import RawDataset
from slifmr.data.formats.kgat import kgat_inputs, read_kgat
from slifmr.data.formats.mmrec import mmrec_inputs, read_mmrec
from slifmr.data.formats.recbole import read_recbole, recbole_inputs
from slifmr.errors import DataError

FORMATS: tuple[str, ...] = ("kgat", "recbole", "mmrec")

_READERS: dict[str, Callable[..., RawDataset]] = {"kgat": read_kgat, "recbole": read_recbole, "mmrec": read_mmrec}
_INPUTS: dict[str, Callable[..., list[Path]]] = {"kgat": kgat_inputs, "recbole": recbole_inputs, "mmrec": mmrec_inputs}


def read_dataset(fmt: str, path: str | Path, name: str | None = None, features: list[str] | None = None,
                 **options: Any) -> RawDataset:
    """Read a dataset in layout ``fmt`` (one of :data:`FORMATS`); options go to the reader."""
    reader = _READERS.get(str(fmt).lower())
    if reader is None:
        raise DataError(f"unknown dataset format '{fmt}'; allowed: {', '.join(FORMATS)}")
    return reader(path, name=name, features=features, **options)


def reader_inputs(fmt: str, path: str | Path, name: str | None = None, features: list[str] | None = None,
                  **options: Any) -> list[Path]:
    """The files the reader of ``fmt`` would read with these options (those that exist): the
    dataset cache hashes exactly these, so an unrelated or unreadable file nearby is ignored."""
    inputs = _INPUTS.get(str(fmt).lower())
    if inputs is None:
        raise DataError(f"unknown dataset format '{fmt}'; allowed: {', '.join(FORMATS)}")
    return inputs(path, name=name, features=features, **options)


__all__ = ["FORMATS", "read_dataset", "reader_inputs", "read_kgat", "read_mmrec", "read_recbole"]
