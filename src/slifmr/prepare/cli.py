"""Command line of ``python -m slifmr.prepare <layout> <input> <output> [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from slifmr.errors import DataError
from slifmr.prepare.csv_source import CsvOptions
from slifmr.prepare.run import LAYOUTS, PrepareRequest, prepare

EPILOG = """examples:
  python -m slifmr.prepare kgat  ~/KGAT/Data/amazon-book data/amazon-book
  python -m slifmr.prepare recbole data/raw/ml-100k data/ml-100k-prepared --kcore 10
  python -m slifmr.prepare mmrec ~/MMRec/data/baby data/baby
  python -m slifmr.prepare csv ratings.csv data/mine --rating-col stars --min-rating 4 \\
      --item-meta items.csv --text-columns title,description --text-model bert-base-uncased
see docs/data.md for every option, the manifest and the known traps."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m slifmr.prepare",
        description="Convert a dataset into slifmr's prepared layout (KGAT files + features with "
        "presence masks + dataset.json manifest + a Hydra dataset config).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("layout", choices=LAYOUTS, help="source layout")
    p.add_argument("input", help="source directory (csv: the interactions file)")
    p.add_argument("output", help="prepared dataset directory to create")
    p.add_argument("--name", help="dataset name (default: the output directory's name)")
    p.add_argument("--source-name", help="recbole/mmrec: <name> of <name>.inter (default: the directory's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    g = p.add_argument_group("csv layout")
    g.add_argument("--user-col", help="user id column (name, or 0-based number with --no-header)")
    g.add_argument("--item-col", help="item id column")
    g.add_argument("--time-col", help="timestamp column (unix time or ISO date)")
    g.add_argument("--rating-col", help="rating column")
    g.add_argument("--min-rating", type=float, help="keep rows with rating >= this (implicit feedback)")
    g.add_argument("--delimiter", help="field delimiter (default: sniffed among , TAB ; |); 'tab' for TAB")
    g.add_argument("--no-header", action="store_true", help="the file has no header row")

    g = p.add_argument_group("mmrec layout")
    g.add_argument("--mmrec-user-field", default=None, help="user column (default userID)")
    g.add_argument("--mmrec-item-field", default=None, help="item column (default itemID)")
    g.add_argument("--mmrec-split-field", default=None, help="split column (default x_label: 0/1/2)")

    g = p.add_argument_group("filtering and split")
    g.add_argument("--kcore", default="0", help="k-core: N, or MIN_USER,MIN_ITEM (0 = keep all)")
    g.add_argument("--split", default="auto", choices=("auto", "given", "random", "temporal"),
                   help="auto = the source's split if it has one, else random (default)")
    g.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"))
    g.add_argument("--split-seed", type=int, default=2025)

    g = p.add_argument_group("features")
    g.add_argument("--feature", action="append", default=[], metavar="NAME=FILE",
                   help="precomputed feature: .npy (row i = source item i), .csv/.tsv keyed by item id, "
                   "or an Amazon image-feature .b file; repeatable. The source's own <name>_feat.npy files "
                   "are picked up by themselves (naming one here again is allowed and changes nothing)")
    g.add_argument("--item-meta", help="item metadata CSV/TSV keyed by item id (text for the text encoder)")
    g.add_argument("--meta-id-col", help="item id column of --item-meta (default: recognised by name)")
    g.add_argument("--text-columns", help="comma-separated metadata columns joined into each item's text")
    g.add_argument("--text-model", help="Hugging Face name or local path (paper: a 768-d BERT)")
    g.add_argument("--text-backend", default="auto", choices=("auto", "transformers", "sentence-transformers"))
    g.add_argument("--text-pooling", default="auto", choices=("auto", "mean", "cls", "max", "mean_sqrt_len"),
                   help="auto: a sentence-transformers model's own pooling, else mean")
    g.add_argument("--text-max-length", type=int, default=256)
    g.add_argument("--text-normalize", action="store_true", default=None,
                   help="L2-normalise text embeddings (default: as the model's own config says, else no)")
    g.add_argument("--text-revision", help="Hub branch, tag or commit of --text-model (recorded in the manifest)")
    g.add_argument("--text-name", default="text", help="modality name of the text feature")
    g.add_argument("--image-dir", help="folder of <item_id>.jpg/.png images")
    g.add_argument("--image-model", help="transformers vision model (name or path) or timm:<name>")
    g.add_argument("--image-weights", help="timm:<name> only: a local checkpoint file of the model (offline use); "
                   "transformers models preprocess and load from their own folder")
    g.add_argument("--image-name", default="image", help="modality name of the image feature")
    g.add_argument("--batch-size", type=int, default=32, help="encoder batch size")
    g.add_argument("--device", default="auto", help="encoder device: auto, cpu, cuda, cuda:1 ...")
    return p


def request(args: argparse.Namespace) -> PrepareRequest:
    """Parsed flags -> a :class:`PrepareRequest` (flag errors become DataErrors)."""
    try:
        kcore_parts = [int(x) for x in str(args.kcore).split(",")]
    except ValueError:
        raise DataError(f"--kcore must be N or MIN_USER,MIN_ITEM, got '{args.kcore}'") from None
    if len(kcore_parts) not in (1, 2) or min(kcore_parts) < 0:
        raise DataError(f"--kcore must be N or MIN_USER,MIN_ITEM (>= 0), got '{args.kcore}'")
    features = {}
    for spec in args.feature:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise DataError(f"--feature must be NAME=FILE, got '{spec}'")
        features[name] = path
    mmrec = {k: v for k, v in (("user_field", args.mmrec_user_field), ("item_field", args.mmrec_item_field),
                               ("split_field", args.mmrec_split_field)) if v is not None}
    text = None
    if args.text_model:
        text = {"model": args.text_model, "backend": args.text_backend, "pooling": args.text_pooling,
                "max_length": args.text_max_length, "batch_size": args.batch_size, "device": args.device,
                "normalize": args.text_normalize, "revision": args.text_revision}
    image = None
    if args.image_model:
        image = {"model": args.image_model, "batch_size": args.batch_size, "device": args.device,
                 "weights": args.image_weights}
    return PrepareRequest(
        layout=args.layout, input=args.input, output=args.output, name=args.name, source_name=args.source_name,
        csv=CsvOptions(args.user_col, args.item_col, args.time_col, args.rating_col, args.min_rating,
                       args.delimiter, not args.no_header),
        mmrec_fields=mmrec,
        kcore=kcore_parts[0] if len(kcore_parts) == 1 else kcore_parts,
        split=args.split, ratios=tuple(args.ratios), split_seed=args.split_seed,
        features=features, item_meta=args.item_meta, meta_id_col=args.meta_id_col,
        text_columns=[c.strip() for c in args.text_columns.split(",") if c.strip()] if args.text_columns else [],
        text=text, text_name=args.text_name,
        image_dir=args.image_dir, image=image, image_name=args.image_name,
        overwrite=args.overwrite, progress=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = prepare(request(args))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"prepared {result.output}")
    print(result.summary)
    if result.mismatch:
        print(f"WARNING: {result.mismatch}")
    print(f"config: {result.config_path}")
    print(f"train:  {result.command}")
    return 0
