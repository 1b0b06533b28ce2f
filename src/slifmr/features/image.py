"""Image features: a pooled backbone embedding per item from ``<folder>/<item_id>.<ext>``.

The paper uses ResNet50 for Yelp (and VBPR's released 4096-d CNN features for Amazon-Book,
which ``slifmr.prepare --feature image=image_features_Books.b`` imports instead). Backbones:
any ``transformers`` vision model loadable with ``AutoModel`` (e.g. ``microsoft/resnet-50``;
``pooler_output``, else the mean of the last hidden state), or ``timm:<name>`` when timm is
installed. torchvision is not needed: preprocessing is PIL + numpy (resize the short side,
centre crop, normalise with the model's ``preprocessor_config.json`` mean/std, ImageNet's
when absent). A missing file or an unreadable image marks the item missing and is counted.
"""

from __future__ import annotations

import json
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

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageEncoderConfig:
    """Which backbone and how; recorded in the prepared dataset's manifest."""

    model: str = "microsoft/resnet-50"
    batch_size: int = 32
    device: str = "auto"
    size: int | None = None  # crop size; None = the model's preprocessor config, else 224


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
    """Row i = pooled embedding of item i's image; no file / unreadable -> missing (counted)."""
    files = find_images(item_ids, folder)
    missing = {"no image file": sum(f is None for f in files), "unreadable image": 0}
    todo = [i for i, f in enumerate(files) if f is not None]
    if not todo:
        raise DataError(f"no item has an image file named <item_id>.jpg/.png in {folder}")
    run, size, mean, std = _backbone(cfg)
    present: list[int] = []
    rows: list[np.ndarray] = []
    with progress(len(todo), f"images ({cfg.model})", show_progress) as bar:
        for part in batches(len(todo), cfg.batch_size):
            pixels, ok = [], []
            for i in todo[part]:
                arr = load_image(files[i], size, mean, std)
                if arr is None:
                    missing["unreadable image"] += 1
                else:
                    pixels.append(arr)
                    ok.append(i)
            if ok:
                rows.append(run(np.stack(pixels)))
                present.extend(ok)
            bar.update(part.stop - part.start)
    if not present:
        raise DataError(f"none of the {len(todo)} image files in {folder} could be read")
    out = np.concatenate(rows).astype(np.float32)
    matrix, mask = assemble(len(item_ids), present, out, out.shape[1])
    return EncodedFeature(matrix, mask, missing, cfg.model)


def load_image(path: Path, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray | None:
    """(3, size, size) float32: short side to size*256/224, centre crop, normalise; None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            short = max(size, round(size * 256 / 224))
            scale = short / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _backbone(cfg: ImageEncoderConfig):
    """(run: pixels -> (n, d), crop size, mean, std) for a transformers or timm model."""
    import torch

    device = resolve_device(cfg.device)
    if cfg.model.startswith("timm:"):
        timm = require("timm", "a timm image backbone")
        name = cfg.model[len("timm:") :]
        try:
            model = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as exc:
            raise load_error("timm image", name, exc) from exc
        data = timm.data.resolve_data_config({}, model=model)
        size = cfg.size or int(data["input_size"][-1])
        mean, std = tuple(data["mean"]), tuple(data["std"])
    else:
        transformers = require("transformers", "the image encoder")
        try:
            model = transformers.AutoModel.from_pretrained(cfg.model)
        except Exception as exc:
            raise load_error("image", cfg.model, exc) from exc
        size, mean, std = _hf_preprocessing(cfg)
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).to(device)
        out = model(x) if cfg.model.startswith("timm:") else model(pixel_values=x)
        return _pool(out).float().cpu().numpy()

    return run, size, mean, std


def _pool(out):
    """(b, d) tensor from a model output: pooler_output, else the mean of the last hidden state."""
    import torch

    if isinstance(out, torch.Tensor):
        hidden = out
    else:
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
    if hidden.dim() == 4:  # (b, c, h, w) conv maps
        return hidden.mean(dim=(2, 3))
    if hidden.dim() == 3:  # (b, tokens, d)
        return hidden.mean(dim=1)
    return hidden.flatten(1)


def _hf_preprocessing(cfg: ImageEncoderConfig) -> tuple[int, tuple, tuple]:
    """Crop size, mean and std from the model's preprocessor_config.json when it has one."""
    conf: dict = {}
    try:
        from transformers.utils import cached_file

        path = cached_file(cfg.model, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
        if path:
            conf = json.loads(Path(path).read_text())
    except Exception:  # no config file (or no network): ImageNet defaults
        conf = {}
    size = cfg.size
    if size is None:
        crop = conf.get("crop_size") or conf.get("size") or 224
        if isinstance(crop, dict):
            crop = crop.get("height") or crop.get("shortest_edge") or 224
        size = int(crop)
    mean = tuple(conf.get("image_mean") or IMAGENET_MEAN)
    std = tuple(conf.get("image_std") or IMAGENET_STD)
    return size, mean, std
