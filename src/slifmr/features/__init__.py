"""Item feature encoders (optional extra: ``pip install -e ".[features]"``).

* :mod:`slifmr.features.text`  -- a Hugging Face text model (mean pooling) or a
  sentence-transformers model over item text (title, description, categories ...).
* :mod:`slifmr.features.image` -- an image backbone (``transformers`` ResNet/ViT/..., or timm) with
  its own preprocessing (``AutoImageProcessor`` / timm data config)
  over a folder of ``<item_id>.jpg/png`` files.

Both return an :class:`EncodedFeature`: a float32 matrix with one row per item *and* a
presence mask; an item without text or without a readable image is marked missing (its row
is zero but the mask says so), never silently a zero vector, and the reasons are counted.
Models are loaded by name or local path; nothing here downloads unless the Hub is reachable.
"""

from slifmr.features._common import EncodedFeature, FeatureModelError, resolve_device

__all__ = ["EncodedFeature", "FeatureModelError", "resolve_device"]
