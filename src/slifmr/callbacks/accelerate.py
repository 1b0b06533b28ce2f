"""Speed switches: ``torch.compile`` of the training loss and TF32 matmuls (opt-in, for a GPU run),
and the host allocator's reuse of freed memory (on by default, ``slifmr.host_memory``).

The first two are off by default: kernels run eagerly and float32 matmuls stay exact (torch's
``highest``), so a default run's metrics are those of a run without them. ``host_heap`` changes
where freed memory goes, never a value: on by default, it makes KG models' CPU steps up to 25 %
faster. bf16 is Lightning's own switch, ``trainer.precision=bf16-mixed`` (default ``32-true``).

Why a callback: the switches are read by the class that applies them (every knob lives under
the ``_target_`` that reads it), they apply to whichever model is trained, and a model's
hyper-parameters (its checkpoint) stay those of the method, not of the machine that ran it.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from slifmr.host_memory import keep_freed_memory

log = logging.getLogger(__name__)

PRECISIONS = ("highest", "high", "medium")


class Accelerate(pl.Callback):
    """``compile``: wrap the model's ``loss`` (forward of the training step: propagation, losses)
    in ``torch.compile(backend, mode, dynamic)`` for fit; graph breaks (sparse products, the graph
    store's caches) fall back to eager. Validation is left eager (one propagation per epoch).
    ``float32_matmul_precision``: null leaves torch's setting alone; ``high`` allows TF32 (Ampere
    and later GPUs; about 1e-3 relative error per product), restored when the run ends.
    ``host_heap``: keep freed host memory in glibc's heap for the next step (process-wide, from
    setup on; a no-op off glibc)."""

    def __init__(self, compile: bool = False, compile_backend: str = "inductor", compile_mode: str | None = None,
                 compile_dynamic: bool | None = None, float32_matmul_precision: str | None = None,
                 host_heap: bool = True):
        if float32_matmul_precision is not None and float32_matmul_precision not in PRECISIONS:
            raise ValueError(f"callbacks.accelerate.float32_matmul_precision must be null or one of {PRECISIONS}, "
                             f"got '{float32_matmul_precision}'")
        self.compile = bool(compile)
        self.compile_backend = compile_backend
        self.compile_mode = compile_mode
        self.compile_dynamic = compile_dynamic
        self.float32_matmul_precision = float32_matmul_precision
        self.host_heap = bool(host_heap)
        self._previous_precision: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.host_heap:
            keep_freed_memory()
        if self.float32_matmul_precision is not None:
            self._previous_precision = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision(self.float32_matmul_precision)
        if self.compile and stage == "fit" and "loss" not in vars(pl_module):
            log.info("torch.compile of %s.loss (backend %s, mode %s)", type(pl_module).__name__,
                     self.compile_backend, self.compile_mode)
            # an instance attribute shadows the method until teardown; the weights are the module's own
            pl_module.loss = torch.compile(pl_module.loss, backend=self.compile_backend, mode=self.compile_mode,
                                           dynamic=self.compile_dynamic)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_precision is not None:
            torch.set_float32_matmul_precision(self._previous_precision)
            self._previous_precision = None
        if self.compile and "loss" in vars(pl_module):
            del pl_module.loss  # back to the eager method (evaluation, a later fit builds its own)
