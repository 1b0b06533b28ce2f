"""What a model offers the callbacks: the self-loop settings and representations it serves.

The self-loop graph enhancement (SGE, Eq. 16-18) belongs to the model (``model.self_loop`` in
its config); the callback that runs it only schedules the refresh and carries the graph through
checkpoints. It asks the model for its settings through :class:`SelfLoopModel`, so a model
without self-loop settings is simply left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from slifmr.graphs.self_loop import check_a_block

MODES = ("replace", "accumulate")


@dataclass(frozen=True)
class SelfLoopSettings:
    """``model.self_loop``: when and how the item-item graph G^n is refreshed.

    enabled: false = "w/o SGE" (Table III). interval: refresh every N epochs (Table IV).
    top_n: neighbours per item of G^n (Fig. 6d). mode: ``replace`` (newest G only) |
    ``accumulate`` (``(1-m) G^{n-1} + m G^n``, top-N again). momentum: m of ``accumulate``.
    a_block: the values G^n's edges carry in A^n and S^n (``cosine`` | ``binary`` | ``normalized``,
    :mod:`slifmr.graphs.self_loop`).
    """

    enabled: bool = True
    interval: int = 1
    top_n: int = 10
    mode: str = "replace"
    momentum: float = 0.5
    a_block: str = "cosine"

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"model.self_loop.enabled must be true or false, got {self.enabled!r}")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"model.self_loop.interval must be an integer >= 1, got {self.interval!r}")
        if isinstance(self.top_n, bool) or not isinstance(self.top_n, int) or self.top_n < 1:
            raise ValueError(f"model.self_loop.top_n must be an integer >= 1, got {self.top_n!r}")
        if self.mode not in MODES:
            raise ValueError(f"model.self_loop.mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= float(self.momentum) <= 1.0:
            raise ValueError(f"model.self_loop.momentum must be in [0, 1], got {self.momentum!r}")
        check_a_block(self.a_block)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SelfLoopSettings:
        """Settings from a config dict; an unknown key is an error (a typo must not be ignored)."""
        values = dict(values or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"unknown model.self_loop keys {unknown}; allowed: {allowed}")
        return cls(**values)


@runtime_checkable
class SelfLoopModel(Protocol):
    """A model the self-loop callback serves: its settings, the kNN k of its feature graphs (the
    callback compares G^n with them) and the fused item representations G^n is built from."""

    self_loop: SelfLoopSettings
    knn_k: int

    def item_representations(self) -> Tensor:
        """(I, d) item representations, without gradient, in eval mode."""
        ...
