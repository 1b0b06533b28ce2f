"""``prepare()``: read a source, add features, build, write atomically, check, summarise.

The one function the CLI calls and the tests drive; every input option lands in the
manifest's ``settings`` so a prepared directory says exactly how it was made.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import slifmr
from slifmr.data.dataset import RawDataset
from slifmr.data.expected import compare_counts, warn_mismatch
from slifmr.data.formats import read_kgat, read_mmrec, read_recbole
from slifmr.data.formats._common import dataset_dir, feature_files
from slifmr.errors import DataError
from slifmr.prepare import config as conf
from slifmr.prepare.build import Prepared, build
from slifmr.prepare.csv_source import CsvOptions, read_interactions_csv
from slifmr.prepare.feature_inputs import (ITEM_TEXT, check_name, load_feature_file, read_item_texts,
                                          read_source_item_texts)
from slifmr.prepare.manifest import MANIFEST, SCHEMA_VERSION, file_records, image_digest
from slifmr.prepare.summary import table_one
from slifmr.prepare.writer import atomic_directory, write_dataset

LAYOUTS = ("kgat", "recbole", "mmrec", "csv")


@dataclass
class PrepareRequest:
    """Everything ``python -m slifmr.prepare`` accepts (see ``cli.py`` for the flags)."""

    layout: str
    input: str
    output: str
    name: str | None = None  # dataset name; default: the output directory's name
    source_name: str | None = None  # recbole/mmrec: the <name> of <name>.inter
    csv: CsvOptions = field(default_factory=CsvOptions)
    mmrec_fields: dict = field(default_factory=dict)  # user_field / item_field / split_field
    kcore: int | list[int] = 0
    split: str = "auto"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 2025
    features: dict[str, str] = field(default_factory=dict)  # name -> precomputed file
    item_meta: str | None = None
    meta_id_col: str | None = None
    text_columns: list[str] = field(default_factory=list)
    text: dict | None = None  # TextEncoderConfig fields (model, ...) -> encode item text
    text_name: str = "text"
    image_dir: str | None = None
    image: dict | None = None  # ImageEncoderConfig fields
    image_name: str = "image"
    overwrite: bool = False
    progress: bool = True


@dataclass
class PrepareResult:
    output: Path
    manifest: dict
    config_path: Path
    command: str
    summary: str
    mismatch: str | None = None


log = logging.getLogger(__name__)

def prepare(req: PrepareRequest) -> PrepareResult:
    """Prepare one dataset; raises DataError (naming file/line) on bad input, writes nothing then."""
    if req.layout not in LAYOUTS:
        raise DataError(f"unknown layout '{req.layout}'; allowed: {', '.join(LAYOUTS)}")
    out = Path(req.output).expanduser().absolute()
    src = Path(req.input).expanduser().absolute()
    if out == src or src.is_relative_to(out) or (src.is_dir() and out.is_relative_to(src)):
        raise DataError(f"the output directory must be outside the input ({src})", out)
    if out.exists() and not req.overwrite:  # fail before any work
        raise DataError("output directory already exists; pass --overwrite to replace it", out)
    name = req.name or out.name

    raw, source_files, timestamps, read_info = _read_source(req, src, name)
    source_texts = _source_texts(req, src, raw, source_files)
    origins = {k: f"source file {k}_feat.npy" for k in raw.features}
    for fname, fpath in req.features.items():
        check_name(fname)
        if fname in raw.features:
            read = {Path(f).expanduser().resolve() for f in source_files}
            if Path(fpath).expanduser().resolve() in read:  # the source's own file, picked up already
                log.info("--feature %s=%s: the source's own file, already read", fname, fpath)
                continue
            raise DataError(f"feature '{fname}' is already in the source (its {fname}_feat.npy is picked up "
                            f"by itself); give this one another name, e.g. --feature {fname}2=...", fpath)
        kf = load_feature_file(fpath, raw.item_ids.astype(str), fname)
        raw.features[fname], raw.feature_masks[fname] = kf.matrix, kf.mask
        origins[fname] = f"precomputed {Path(fpath).name}" + (f" ({kf.unknown_ids} rows for unknown items)" if kf.unknown_ids else "")
        source_files.append(Path(fpath).expanduser().absolute())

    prepared = build(raw, req.kcore, req.split, req.ratios, req.split_seed, timestamps)
    prepared.name = name
    for k, m in prepared.feature_masks.items():  # counted on the kept items
        reason = "no row in the file" if k in req.features else "no feature row"
        prepared.feature_missing[k] = {reason: int((~m).sum())}

    texts, feature_settings = _encode(req, prepared, origins, source_files)
    if texts is None and source_texts is not None:  # carried over to the kept items, in their new order
        texts = [source_texts.get(str(i)) for i in prepared.item_ids]
        feature_settings["item_text"] = {"from": f"source {ITEM_TEXT}", "rows": len(source_texts),
                                         "items_without_text": sum(t is None for t in texts)}
    elif texts is not None and source_texts is not None:
        log.info("item texts from --item-meta replace the source's %s", ITEM_TEXT)
    counts = prepared.counts()
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "slifmr_version": slifmr.__version__,
        "source": {
            "layout": req.layout,
            "path": str(src),
            "files": file_records(source_files, root=src if src.is_dir() else src.parent, show_progress=req.progress),
        },
        "settings": {
            "layout": req.layout,
            "options": read_info,
            "kcore": list(req.kcore) if not isinstance(req.kcore, int) else [req.kcore, req.kcore],
            "split": {"requested": req.split, "kind": prepared.split_kind, "ratios": list(req.ratios),
                      "seed": req.split_seed},
            "features": feature_settings,
            "package_version": slifmr.__version__,
        },
        "counts": counts,
        "features": {
            k: {
                "dim": counts[f"{k}_dim"],
                "coverage": counts[f"{k}_coverage"],
                "coverage_fraction": counts[f"{k}_coverage"] / max(1, prepared.n_items),
                "missing": prepared.feature_missing.get(k, {}),
                "origin": origins.get(k, ""),
            }
            for k in prepared.features
        },
    }
    command = conf.train_command(out, name)
    with atomic_directory(out, req.overwrite) as tmp:
        written = write_dataset(prepared, tmp, texts)
        cfg_tmp = conf.write_config(tmp / "conf", out, manifest, command)
        records = file_records(written + [cfg_tmp], root=tmp)
        manifest["files"] = records
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    config_path = out / "conf" / "dataset" / cfg_tmp.name

    mismatch = None
    expected = conf.known_expected(name)
    if expected:
        mismatch = warn_mismatch(name, str(out), compare_counts(counts, expected))
    return PrepareResult(out, manifest, config_path, command, table_one(manifest), mismatch)


def _read_source(req: PrepareRequest, src: Path, name: str) -> tuple[RawDataset, list[Path], np.ndarray | None, dict]:
    """The raw dataset, the files it came from, timestamps (csv only), and reader settings."""
    if req.layout == "csv":
        res = read_interactions_csv(src, req.csv, name)
        info = {**req.csv.as_dict(), "delimiter": res.delimiter, "columns": res.columns,
                "dropped_by_rating": res.dropped_by_rating, "duplicates_dropped": res.duplicates}
        return res.raw, [src], res.timestamps, info
    if req.layout == "kgat":
        directory = dataset_dir(src)
        raw = read_kgat(directory, name=name)
        lists = ["train.txt", "valid.txt", "test.txt", "kg_final.txt", "user_list.txt", "item_list.txt",
                 "entity_list.txt", "relation_list.txt"]
        files = [directory / f for f in lists if (directory / f).is_file()]
        files += [p for k, p in feature_files(directory).items()]
        files += [directory / f"{k}_mask.npy" for k in raw.features if (directory / f"{k}_mask.npy").is_file()]
        return raw, files, None, {}
    if req.layout == "recbole":
        raw = read_recbole(src, name=req.source_name)
        inter = Path(raw.source.split(":", 1)[1])
        files = [inter] + [inter.with_suffix(s) for s in (".kg", ".link") if inter.with_suffix(s).is_file()]
        raw.name = name
        return raw, files, None, {"source_name": inter.stem}
    raw = read_mmrec(src, name=req.source_name, **req.mmrec_fields)
    inter = Path(raw.source.split(":", 1)[1])
    files = [inter] + list(feature_files(inter.parent).values())
    raw.name = name
    return raw, files, None, {"source_name": inter.stem, **req.mmrec_fields}


def _source_texts(req: PrepareRequest, src: Path, raw: RawDataset,
                  source_files: list[Path]) -> dict[str, str] | None:
    """{item id: text} from a KGAT-layout source's ``item_text.tsv`` (one prepare writes it), or
    None when the source has none; the file joins the manifest's source files."""
    if req.layout != "kgat":
        return None
    path = dataset_dir(src) / ITEM_TEXT
    if not path.is_file():
        return None
    texts = read_source_item_texts(path, len(raw.item_ids))
    source_files.append(path)
    return {str(i): t for i, t in zip(raw.item_ids, texts) if t is not None}


def _encode(
    req: PrepareRequest, p: Prepared, origins: dict[str, str], source_files: list[Path]
) -> tuple[list[str | None] | None, dict]:
    """Item text (from metadata) and image features through the encoders, on the kept items."""
    settings: dict = {}
    texts = None
    if req.item_meta is not None or req.text_columns:
        if req.item_meta is None or not req.text_columns:
            raise DataError("item text needs both --item-meta FILE and --text-columns COL[,COL...]")
        texts, stats = read_item_texts(req.item_meta, p.item_ids, req.text_columns, req.meta_id_col)
        source_files.append(Path(req.item_meta).expanduser().absolute())
        settings["item_meta"] = {"file": str(req.item_meta), "columns": list(req.text_columns), **stats}
    if req.text is not None:
        if texts is None:
            raise DataError("--text-model needs --item-meta and --text-columns (the text to embed)")
        from slifmr.features.text import TextEncoderConfig, encode_texts

        cfg = TextEncoderConfig(**req.text)
        enc = encode_texts(texts, cfg, req.progress)
        _add(p, req.text_name, enc, origins, f"text encoder {cfg.model}")
        # requested settings, then what actually ran (backend, revision, pooling, normalisation)
        settings[req.text_name] = {"encoder": "text", **asdict(cfg), "columns": list(req.text_columns),
                                   "used": enc.settings}
    if req.image is not None or req.image_dir is not None:
        if req.image is None or req.image_dir is None:
            raise DataError("image features need both --image-dir DIR and --image-model MODEL")
        from slifmr.features.image import ImageEncoderConfig, encode_images, find_images

        cfg = ImageEncoderConfig(**req.image)
        enc = encode_images(p.item_ids, req.image_dir, cfg, req.progress)
        _add(p, req.image_name, enc, origins, f"image encoder {cfg.model}")
        images = [f for f in find_images(p.item_ids, req.image_dir) if f is not None]
        # requested settings, then what ran (backend, revision, the backbone's own preprocessing, pooling)
        settings[req.image_name] = {"encoder": "image", **asdict(cfg), "image_dir": str(req.image_dir),
                                    "image_files": image_digest(images), "used": enc.settings}
    return texts, settings


def _add(p: Prepared, name: str, enc, origins: dict[str, str], origin: str) -> None:
    check_name(name)
    if name in p.features:
        raise DataError(f"feature '{name}' already exists (from the source or --feature); pass another --*-name")
    p.features[name], p.feature_masks[name] = enc.matrix, enc.mask
    p.feature_missing[name] = dict(enc.missing)
    origins[name] = origin
