"""``python -m slifmr.prepare``: bring your own data into the project's prepared layout.

Reads a KGAT, RecBole-atomic or MMRec directory, or a plain interactions CSV/TSV (with
optional item metadata, precomputed features, and text/image encoders), and writes one
directory that the ``kgat`` reader loads as is:

* ``train.txt`` / ``valid.txt`` (when there is one) / ``test.txt`` -- ``user item item ...``
* ``kg_final.txt``, ``entity_list.txt``, ``relation_list.txt`` -- when the source has a KG
* ``user_list.txt``, ``item_list.txt`` -- original ids (``org_id remap_id [entity_org_id]``)
* ``<modality>_feat.npy`` (float32, row i = item i) and ``<modality>_mask.npy`` (bool presence)
* ``item_text.tsv`` -- the text each item's embedding was computed from, when text was given
  (``--item-meta``) or carried over from a KGAT-layout source's own ``item_text.tsv``
* ``dataset.json`` -- the manifest: source files with sha256, counts, settings
  (see :mod:`slifmr.prepare.manifest`)
* ``conf/dataset/<name>.yaml`` -- a Hydra dataset config; the printed command uses it.
"""

from slifmr.prepare.run import LAYOUTS, PrepareRequest, PrepareResult, prepare

__all__ = ["LAYOUTS", "PrepareRequest", "PrepareResult", "prepare"]
