"""``python -m slifmr.recommend RUN_DIR [--users ID ...] [-k 20] [--out recs.csv]``: top-K lists
from a trained run, in the dataset's original ids, as CSV, JSONL or Parquet.

The run is rebuilt as it was tested (slifmr.inference.load_run: its config, best checkpoint and
self-loop graph), users are ranked in batches on the device, and each user's train and
validation items are excluded (``--include-seen`` keeps them). The file is written under a
temporary name and renamed, so an interrupted run never leaves a half-written list.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

FORMATS = ("csv", "jsonl", "parquet")


def _format_of(out: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = out.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise SystemExit(f"error: cannot tell the format of '{out}' from its suffix: use .csv, .jsonl or .parquet, "
                     "or --format")


def _read_users(args: argparse.Namespace) -> list[str] | None:
    users = list(args.users or [])
    if args.users_file:
        path = Path(args.users_file)
        if not path.is_file():
            raise SystemExit(f"error: --users-file {path}: file not found")
        users += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return users or None


def _batches(run, users, k, exclude_seen, batch_size) -> Iterator[tuple[list[str], list[list[str]], list[list[float]]]]:
    """Original-id batches: (users, items per user, scores per user)."""
    uid, iid = run.data.user_ids.astype(str), run.data.item_ids.astype(str)
    for u, i, s in run.iter_topk(users, k, exclude_seen, batch_size):
        yield uid[u.cpu().numpy()].tolist(), iid[i.cpu().numpy()].tolist(), s.float().cpu().numpy().tolist()


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("error: Parquet output needs pyarrow (pip install pyarrow); or write .csv / .jsonl") from None
    return pa, pq


def write_recommendations(batches, path: Path, fmt: str) -> int:
    """Stream the batches to ``path`` (temporary name, then rename); returns the number of users.
    csv/parquet: long format ``user, rank, item, score``; jsonl: one ``{"user", "items", "scores"}``
    object per user."""
    if fmt == "parquet":
        pa, pq = _pyarrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    n = 0
    try:
        if fmt == "parquet":
            schema = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                                ("score", pa.float32())])
            with pq.ParquetWriter(tmp, schema) as w:
                for users, items, scores in batches:
                    k = len(items[0]) if items else 0
                    w.write_table(pa.table({
                        "user": [u for u in users for _ in range(k)], "rank": list(range(1, k + 1)) * len(users),
                        "item": [x for row in items for x in row], "score": [x for row in scores for x in row],
                    }, schema=schema))
                    n += len(users)
        else:
            with open(tmp, "x", newline="") as f:
                w = csv.writer(f, lineterminator="\n") if fmt == "csv" else None
                if w:
                    w.writerow(["user", "rank", "item", "score"])
                for users, items, scores in batches:
                    for u, its, scs in zip(users, items, scores):
                        if w:
                            w.writerows((u, r + 1, it, f"{sc:.6g}") for r, (it, sc) in enumerate(zip(its, scs)))
                        else:
                            f.write(json.dumps({"user": u, "items": its, "scores": [round(x, 6) for x in scs]}) + "\n")
                    n += len(users)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m slifmr.recommend", description=__doc__.split("\n\n")[0].replace("``", "'"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m slifmr.recommend outputs/train/runs/<time> -k 20 --out recs.csv\n"
               "  python -m slifmr.recommend <run> --users 13 42 --out recs.jsonl",
    )
    p.add_argument("run_dir", help="a training run directory (holds record.json and checkpoints/best.ckpt)")
    p.add_argument("-k", type=int, default=20, help="list length (default 20)")
    p.add_argument("--users", nargs="+", metavar="ID", help="original user ids (default: every user)")
    p.add_argument("--users-file", help="a file of original user ids, one per line")
    p.add_argument("--out", default="recommendations.csv",
                   help="output file; the format follows its suffix: .csv, .jsonl, .parquet (default recommendations.csv)")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from --out's suffix)")
    p.add_argument("--include-seen", action="store_true",
                   help="do not exclude the user's train and validation items")
    p.add_argument("--checkpoint", help="another checkpoint of the run (default: checkpoints/best.ckpt)")
    p.add_argument("--data-dir", help="where the run's dataset lives now, if it moved")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=2048, help="users ranked at once (default 2048)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    fmt = _format_of(out, args.format)
    if args.k < 1:
        raise SystemExit(f"error: -k must be >= 1, got {args.k}")
    if fmt == "parquet":
        _pyarrow()  # before minutes of loading
    from slifmr.errors import DataError
    from slifmr.inference import load_run
    from slifmr.warnings_filter import quiet_third_party

    quiet_third_party()
    try:
        run = load_run(args.run_dir, checkpoint=args.checkpoint, device=args.device, data_dir=args.data_dir)
        users = _read_users(args)
        n = write_recommendations(_batches(run, users, args.k, not args.include_seen, args.batch_size), out, fmt)
    except (FileNotFoundError, KeyError, ValueError, DataError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 1
    print(f"top-{args.k} for {n} users of {run.data.name} ({type(run.model).__name__}, {run.device}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
