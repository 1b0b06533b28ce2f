"""``python -m slifmr.tune.collect <tune root> --name <set> [--out FILE] [--keep DIR]``: gather every
``<root>/<dataset>/<model>/best.yaml`` into one tuned set (``conf/tuned/<set>.yaml``), so the
selected points can be committed and used as ``tuned=<set>``. ``--keep docs/tuning`` also copies each
search's ``best.yaml`` and ``summary.json`` to ``DIR/<dataset>/<model>/``, where the docs' search
tables are generated from (``python -m slifmr.tune.summary``), without the trials' run directories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from slifmr.records import atomic_write_bytes
from slifmr.tune.points import TunedError, read_point_file
from slifmr.tune.search import BEST_FILE, SUMMARY_FILE


def collect(root: Path, name: str) -> dict:
    """{name, points: {dataset: {model: point}}} from the search outputs under ``root``."""
    points: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(root).glob(f"*/*/{BEST_FILE}")):
        dataset, model = path.parent.parent.name, path.parent.name
        point = read_point_file(path)
        if point.get("model") not in (None, model) or point.get("dataset") not in (None, dataset):
            raise TunedError(f"{path}: says model={point.get('model')} dataset={point.get('dataset')}, "
                             f"but lies under {dataset}/{model}")
        points.setdefault(dataset, {})[model] = point
    if not points:
        raise TunedError(f"no <dataset>/<model>/{BEST_FILE} under {root}: run python -m slifmr.tune first")
    return {"name": name, "points": points}


def keep(root: Path, dest: Path) -> list[Path]:
    """Copy every search's ``best.yaml`` and ``summary.json`` under ``root`` to ``dest`` (same
    ``<dataset>/<model>/`` layout, each file written to a temporary name and renamed)."""
    written = []
    for best in sorted(Path(root).glob(f"*/*/{BEST_FILE}")):
        rel = best.parent.relative_to(root)
        for name in (BEST_FILE, SUMMARY_FILE):
            src = best.parent / name
            if not src.is_file():
                raise TunedError(f"{src}: missing beside {best} (an unfinished search?)")
            atomic_write_bytes(Path(dest) / rel / name, src.read_bytes())
            written.append(Path(dest) / rel / name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slifmr.tune.collect", description=__doc__.splitlines()[0])
    ap.add_argument("root", help="the search outputs' root (default layout: outputs/tune)")
    ap.add_argument("--name", required=True, help="the set's name: train with tuned=<name>")
    ap.add_argument("--out", help="where to write it (default: conf/tuned/<name>.yaml)")
    ap.add_argument("--keep", help="also copy each search's best.yaml and summary.json here (e.g. docs/tuning)")
    args = ap.parse_args(argv)
    try:
        tuned = collect(Path(args.root), args.name)
        kept = keep(Path(args.root), Path(args.keep)) if args.keep else []
    except TunedError as e:
        print(f"slifmr.tune.collect: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"conf/tuned/{args.name}.yaml")
    n = sum(len(v) for v in tuned["points"].values())
    head = (f"# Tuned set '{args.name}': {n} point(s) selected on validation only by python -m slifmr.tune\n"
            f"# (each point's command says how). Use: python -m slifmr.train ... tuned={args.name}\n")
    atomic_write_bytes(out, (head + yaml.safe_dump(tuned, sort_keys=False, width=120)).encode())
    print(f"wrote {out} ({n} point(s))" + (f"; kept {len(kept)} files under {args.keep}" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
