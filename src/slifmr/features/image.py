"""Image features: a pooled backbone embedding per item from ``<folder>/<item_id>.<ext>``.

The paper uses ResNet50 for Yelp (and VBPR's released 4096-d CNN features for Amazon-Book,
which ``slifmr.prepare --feature image=image_features_Books.b`` imports instead). Backbones:
any ``transformers`` vision model loadable with ``AutoModel`` (e.g. ``microsoft/resnet-50``;
``pooler_output``, else the mean of the last hidden state), or ``timm:<name>`` when timm is
installed. Each image goes through **the backbone's own preprocessing**, never a re-implementation:
``AutoImageProcessor`` (the model's ``preprocessor_config.json``: resize, crop, rescale, mean/std)
for transformers, ``timm.data.resolve_model_data_config`` + ``create_transform`` for timm. What
ran is returned in ``EncodedFeature.settings`` (the manifest's ``used``). A missing file or an
unreadable image marks the item missing and is counted.

Offline (``HF_HUB_OFFLINE`` or no route to the Hub) a Hub name is looked up in the local cache
only and fails at once, naming how to use a local folder (model *and* its image processor saved
with ``save_pretrained``) or, for timm, a local weights file (``weights``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# the processor settings that decide the pixels (recorded in the manifest)
PROCESSOR_KEYS = ("do_resize", "size", "resample", "crop_pct", "do_center_crop", "crop_size", "do_rescale",
                  "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb")
OFFLINE_HINT = ("use a local folder: --image-model /path/to/model holding the model and its image processor, "
                "saved on a connected machine with AutoModel.from_pretrained(NAME).save_pretrained(DIR) and "
                "AutoImageProcessor.from_pretrained(NAME).save_pretrained(DIR); for timm:<name>, "
                "--image-weights /path/to/checkpoint (e.g. the model.safetensors of hf.co/timm/<name>)")


@dataclass
class ImageEncoderConfig:
    """Which backbone and how; recorded in the prepared dataset's manifest (beside what ran)."""

    model: str = "microsoft/resnet-50"
    batch_size: int = 32
    device: str = "auto"
    weights: str | None = None  # timm only: a local checkpoint of the model (no download)


@dataclass
class Backbone:
    """A loaded model with its own preprocessing: ``preprocess`` (PIL images -> (b, 3, h, w)
    tensor), ``embed`` ((b, 3, h, w) -> (b, d) array), and ``settings`` (what ran)."""

    preprocess: Callable
    embed: Callable
    settings: dict = field(default_factory=dict)


def find_images(item_ids: Sequence[str], folder: str | Path) -> list[Path | None]:
    """The image file of each item (``<item_id>.<ext>``, extension case-insensitive), or None."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError("image folder not found", folder)
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in EXTENSIONS:
            by_stem.setdefault(p.stem, p)  # first by sorted name when several extensions exist
    return [by_stem.get(str(i)) for i in item_ids]


def encode_images(
    item_ids: Sequence[str], folder: str | Path, cfg: ImageEncoderConfig, show_progress: bool = True
) -> EncodedFeature:
    """Row i = pooled embedding of item i's image; no file / unreadable -> missing (counted).
    The result's ``settings`` say what ran (backend, revision, the preprocessing, the pooling)."""
    files = find_images(item_ids, folder)
    missing = {"no image file": sum(f is None for f in files), "unreadable image": 0}
    todo = [i for i, f in enumerate(files) if f is not None]
    if not todo:
        raise DataError(f"no item has an image file named <item_id>.jpg/.png in {folder}")
    bb = load_backbone(cfg)
    present: list[int] = []
    rows: list[np.ndarray] = []
    with progress(len(todo), f"images ({cfg.model})", show_progress) as bar:
        for part in batches(len(todo), cfg.batch_size):
            images, ok = [], []
            for i in todo[part]:
                img = load_image(files[i])
                if img is None:
                    missing["unreadable image"] += 1
                else:
                    images.append(img)
                    ok.append(i)
            if ok:
                pixels = bb.preprocess(images)  # (b, 3, h, w)
                bb.settings.setdefault("input_size", [int(pixels.shape[-2]), int(pixels.shape[-1])])
                rows.append(bb.embed(pixels))
                present.extend(ok)
            bar.update(part.stop - part.start)
    if not present:
        raise DataError(f"none of the {len(todo)} image files in {folder} could be read")
    out = np.concatenate(rows).astype(np.float32)
    matrix, mask = assemble(len(item_ids), present, out, out.shape[1])
    return EncodedFeature(matrix, mask, missing, cfg.model, {**bb.settings, "dim": int(out.shape[1])})


def load_image(path: Path):
    """The image as an RGB PIL image (decoded now, file closed), or None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def load_backbone(cfg: ImageEncoderConfig) -> Backbone:
    """The transformers or timm backbone of ``cfg.model`` with its own preprocessing."""
    if cfg.model.startswith("timm:"):
        return _timm_backbone(cfg)
    if cfg.weights:
        raise DataError(f"an image weights file is for timm:<name> backbones; '{cfg.model}' is a transformers "
                        "model: give its folder (model and image processor) as the model instead")
    return _hf_backbone(cfg)


def _offline_error(exc: FeatureModelError, name: str) -> FeatureModelError:
    return FeatureModelError(f"{exc} -- offline, '{name}' is not a local folder nor in the local cache; "
                             f"{OFFLINE_HINT}")


def _hf_backbone(cfg: ImageEncoderConfig) -> Backbone:
    transformers = require("transformers", "the image encoder")
    import torch

    local = Path(cfg.model).expanduser().is_dir()
    offline = not local and hub_offline()
    kw = {"local_files_only": offline}
    try:
        model = transformers.AutoModel.from_pretrained(cfg.model, **kw)
    except Exception as exc:  # OSError, ValueError, HTTP errors ...: all mean "not loadable here"
        err = load_error("image", cfg.model, exc)
        raise (_offline_error(err, cfg.model) if offline else err) from exc
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(cfg.model, **kw)
    except Exception as exc:
        raise FeatureModelError(
            f"image model '{cfg.model}' has no image processor loadable here ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); its own preprocessing is needed: save it beside "
            "the model with AutoImageProcessor.from_pretrained(NAME).save_pretrained(DIR) "
            "(preprocessor_config.json)") from exc
    device = resolve_device(cfg.device)
    model = model.eval().to(device)
    own = processor.to_dict()
    settings = {"backend": "transformers", "model": cfg.model,
                "revision": "local folder" if local else getattr(model.config, "_commit_hash", None),
                "processor": type(processor).__name__,
                "preprocessing": _resample_named({k: _plain(own[k]) for k in PROCESSOR_KEYS if own.get(k) is not None}),
                "settings_from": "the model's image processor (preprocessor_config.json)"}

    def preprocess(images: list) -> torch.Tensor:
        return processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def embed(pixels: torch.Tensor) -> np.ndarray:
        out = model(pixel_values=pixels.to(device))
        pooled, how = _pool(out)
        settings.setdefault("pooling", how)
        return pooled.float().cpu().numpy()

    return Backbone(preprocess, embed, settings)


def _timm_backbone(cfg: ImageEncoderConfig) -> Backbone:
    timm = require("timm", "a timm image backbone")
    import torch

    name = cfg.model[len("timm:"):]
    kw: dict = {}
    if cfg.weights:
        weights = Path(cfg.weights).expanduser()
        if not weights.is_file():
            raise DataError("image weights file not found", weights)
        kw["pretrained_cfg_overlay"] = {"file": str(weights)}
    elif hub_offline() and not _env_offline():
        # timm downloads through huggingface_hub, which would retry for a minute without the flag
        raise FeatureModelError(f"could not load timm image model '{name}': offline, and no --image-weights; "
                                f"set HF_HUB_OFFLINE=1 to use the local Hugging Face cache, or {OFFLINE_HINT}")
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, **kw)
    except Exception as exc:
        err = load_error("timm image", name, exc)
        raise (_offline_error(err, cfg.model) if not cfg.weights and _env_offline() else err) from exc
    data = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**data, is_training=False)
    device = resolve_device(cfg.device)
    model = model.eval().to(device)
    settings = {"backend": "timm", "model": cfg.model, "weights": str(cfg.weights) if cfg.weights else "pretrained",
                "preprocessing": {k: _plain(v) for k, v in data.items()},
                "transform": [str(t) for t in getattr(transform, "transforms", [transform])],
                "settings_from": "timm.data.resolve_model_data_config + create_transform(is_training=False)"}

    def preprocess(images: list) -> torch.Tensor:
        return torch.stack([transform(img) for img in images])

    @torch.inference_mode()
    def embed(pixels: torch.Tensor) -> np.ndarray:
        pooled, how = _pool(model(pixels.to(device)))  # num_classes=0: the pooled features
        settings.setdefault("pooling", how)
        return pooled.float().cpu().numpy()

    return Backbone(preprocess, embed, settings)


def _env_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _plain(value):
    """A processor setting as JSON: tuples -> lists, PIL resampling enums -> their name."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else value


def _resample_named(conf: dict) -> dict:
    """A processor's ``resample`` (a PIL code, e.g. 3) as its name (``BICUBIC``) for readers."""
    from PIL import Image

    if isinstance(conf.get("resample"), int):
        try:
            conf["resample"] = Image.Resampling(conf["resample"]).name
        except ValueError:
            pass
    return conf


def _pool(out) -> tuple:
    """((b, d) tensor, how it was pooled) from a model output: pooler_output, else the mean of
    the last hidden state over its spatial / token axes."""
    import torch

    if isinstance(out, torch.Tensor):
        hidden, src = out, "output"
    else:
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1), "pooler_output"
        hidden, src = out.last_hidden_state, "last_hidden_state"
    if hidden.dim() == 4:  # (b, c, h, w) conv maps
        return hidden.mean(dim=(2, 3)), f"mean of {src} over h, w"
    if hidden.dim() == 3:  # (b, tokens, d)
        return hidden.mean(dim=1), f"mean of {src} over tokens"
    return hidden.flatten(1), src
