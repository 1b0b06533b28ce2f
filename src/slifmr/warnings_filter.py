"""Known-harmless third-party warnings, silenced once by the entry points.

Each entry says why it is harmless here; anything not listed still prints (once per place,
Python's default). Filters match the message, so a new warning from the same module is seen.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, why it is harmless for slifmr)
HARMLESS: tuple[tuple[str, str], ...] = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated",
     "torch 2.13 deprecation inside pytorch_lightning's _pytree helper; nothing of ours"),
    (r".*does not have many workers which may be a bottleneck",
     "BPR batches are sampled vectorised in the main process (data/sampling.py); workers only add IPC"),
    (r".*Consider setting `persistent_workers=True`",
     "same: num_workers=0 by design"),
    (r".*sparse.*(is in beta|beta state|support is in beta)",
     "torch's sparse CSR/COO API notice; the graphs are tested against dense references"),
)


# info lines of pytorch_lightning's rank_zero logger that advertise rather than inform
ADVERTS = ("💡 Tip:",)


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERTS)


def quiet_third_party() -> None:
    """Install the filters (idempotent: ``filterwarnings`` drops exact duplicates, the logging
    filter is added once)."""
    for message, _why in HARMLESS:
        warnings.filterwarnings("ignore", message=message)
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdverts())
