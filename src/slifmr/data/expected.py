"""Known-target counts: does a loaded (or prepared) dataset match what its config expects?

A dataset config may carry ``expected: {n_users: ..., n_items: ..., n_interactions: ...}``
(e.g. the paper's Table I for ``amazon-book`` and ``yelp2018``). A wrong download, a
re-filtered copy or a different KGAT snapshot then shows up as a loud warning naming every
differing field, instead of as silently incomparable numbers.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

from slifmr.errors import DataError

log = logging.getLogger(__name__)

# expected key -> key of RecDataset.summary() / the prepare manifest's "counts"
FIELDS: dict[str, str] = {
    "n_users": "users",
    "n_items": "items",
    "n_interactions": "interactions",
    "n_train": "train",
    "n_valid": "valid",
    "n_test": "test",
    "n_entities": "entities",
    "n_relations": "relations",
    "n_triples": "triples",
}


class DatasetMismatchWarning(UserWarning):
    """A dataset's counts differ from the counts its config expects."""


def compare_counts(found: Mapping[str, object], expected: Mapping[str, object] | None) -> list[tuple[str, object, object]]:
    """(field, expected, found) for every expected field whose found value differs.

    ``found`` uses summary keys (``users``, ``items`` ...); ``expected`` uses ``n_*`` keys, or
    ``<modality>_dim`` / ``<modality>_coverage`` for features. An unknown key is a DataError
    (a misspelt key would otherwise check nothing).
    """
    diffs: list[tuple[str, object, object]] = []
    for key, want in (expected or {}).items():
        if want is None:
            continue
        if key in FIELDS:
            got = found.get(FIELDS[key])
        elif key.endswith("_dim") or key.endswith("_coverage"):
            got = found.get(key)
        else:
            raise DataError(
                f"unknown expected field '{key}'; allowed: {', '.join(FIELDS)}, <modality>_dim, <modality>_coverage"
            )
        if got != want:
            diffs.append((key, want, "absent" if got is None else got))
    return diffs


def warn_mismatch(name: str, where: str, diffs: list[tuple[str, object, object]]) -> str | None:
    """Warn (warnings + log) naming each differing field; returns the message, None if none."""
    if not diffs:
        return None
    lines = "; ".join(f"{field}: expected {want}, found {got}" for field, want, got in diffs)
    msg = (
        f"DATASET MISMATCH: '{name}' at {where} does not match the expected counts "
        f"({len(diffs)} field(s) differ): {lines}. Results will not be comparable to the reference."
    )
    log.warning(msg)
    warnings.warn(msg, DatasetMismatchWarning, stacklevel=3)
    return msg
