"""Text features: one embedding per item from its text columns (the paper: BERT, 768-d).

Backends: ``transformers`` (AutoTokenizer + AutoModel, mean pooling over the attention mask,
or the [CLS] vector) and ``sentence-transformers`` when installed and the model is one
(``backend='auto'`` picks it for a directory with ``modules.json`` or a
``sentence-transformers/`` name). Batched, no grad, on the chosen device; texts are sorted by
length inside the run so batches pad little, and put back in item order.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slifmr.errors import DataError
from slifmr.features._common import (
    EncodedFeature,
    assemble,
    batches,
    load_error,
    progress,
    require,
    resolve_device,
)

BACKENDS = ("auto", "transformers", "sentence-transformers")
POOLINGS = ("mean", "cls")


@dataclass
class TextEncoderConfig:
    """Which model and how; every field is recorded in the prepared dataset's manifest."""

    model: str = "bert-base-uncased"
    backend: str = "auto"
    pooling: str = "mean"
    max_length: int = 256
    batch_size: int = 32
    device: str = "auto"
    normalize: bool = False  # L2-normalise rows (as the shared datasets' MiniLM features are)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise DataError(f"text backend '{self.backend}' unknown; allowed: {', '.join(BACKENDS)}")
        if self.pooling not in POOLINGS:
            raise DataError(f"text pooling '{self.pooling}' unknown; allowed: {', '.join(POOLINGS)}")


def encode_texts(texts: Sequence[str | None], cfg: TextEncoderConfig, show_progress: bool = True) -> EncodedFeature:
    """Embed ``texts[i]`` as row i; None or blank text -> missing row (mask False, counted)."""
    present = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    missing = {"no text": len(texts) - len(present)}
    backend = _pick_backend(cfg)
    if not present:
        raise DataError(f"no item has text to embed (all {len(texts)} are empty); check the text columns")
    order = sorted(present, key=lambda i: len(texts[i]), reverse=True)  # little padding per batch
    run = _st_runner(cfg) if backend == "sentence-transformers" else _hf_runner(cfg)
    rows: list[np.ndarray] = []
    with progress(len(order), f"text ({cfg.model})", show_progress) as bar:
        for part in batches(len(order), cfg.batch_size):
            chunk = [texts[i] for i in order[part]]
            rows.append(run(chunk))
            bar.update(len(chunk))
    out = np.concatenate(rows).astype(np.float32)
    if cfg.normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    matrix, mask = assemble(len(texts), order, out, out.shape[1])
    return EncodedFeature(matrix, mask, missing, cfg.model)


def _pick_backend(cfg: TextEncoderConfig) -> str:
    if cfg.backend != "auto":
        return cfg.backend
    is_st = (Path(cfg.model) / "modules.json").is_file() or cfg.model.startswith("sentence-transformers/")
    if is_st and importlib.util.find_spec("sentence_transformers") is not None:
        return "sentence-transformers"
    return "transformers"


def _hf_runner(cfg: TextEncoderConfig):
    """A function texts -> (n, d) array with a transformers model, loaded once."""
    transformers = require("transformers", "the text encoder")
    import torch

    device = resolve_device(cfg.device)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(cfg.model)
        model = transformers.AutoModel.from_pretrained(cfg.model)
    except Exception as exc:  # OSError, ValueError, HTTP errors ...: all mean "not loadable here"
        raise load_error("text", cfg.model, exc) from exc
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(texts: list[str]) -> np.ndarray:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        hidden = model(**enc).last_hidden_state  # (b, t, d)
        if cfg.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weight = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        return pooled.float().cpu().numpy()

    return run


def _st_runner(cfg: TextEncoderConfig):
    st = require("sentence_transformers", "the sentence-transformers text backend")
    device = resolve_device(cfg.device)
    try:
        model = st.SentenceTransformer(cfg.model, device=device)
    except Exception as exc:
        raise load_error("sentence-transformers", cfg.model, exc) from exc
    model.max_seq_length = cfg.max_length

    def run(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    return run
