"""Cost of full-ranking evaluation (mask + exact top-K) relative to bare scoring.

Sizes default to a large dataset (70,679 users x 24,915 items, d=64, ~12 known items per user).
Prints medians of ``--repeats`` runs of (a) ``user_emb @ item_emb.T`` in user chunks and
(b) the same matmul plus :func:`rank_topk`, and their ratio. Target: ratio <= 3 on 2 CPU cores.

    PYTHONPATH=src python benchmarks/ranking_speed.py [--chunk 4096] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slifmr.metrics import rank_topk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=70_679)
    p.add_argument("--items", type=int, default=24_915)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--masked", type=int, default=12, help="known items per user")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    user_emb = torch.randn(args.users, args.dim, generator=g).to(dev)
    item_emb = torch.randn(args.items, args.dim, generator=g).to(dev)
    # Known items as a CSR-like (row, col) list; chunks slice it by row range.
    mask_rows = torch.arange(args.users).repeat_interleave(args.masked).to(dev)
    mask_cols = torch.randint(args.items, (args.users * args.masked,), generator=g).to(dev)
    row_ptr = torch.arange(0, args.users + 1).mul(args.masked).tolist()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def scoring_only() -> None:
        for s in range(0, args.users, args.chunk):
            user_emb[s : s + args.chunk] @ item_emb.T  # (B, I), eager: computed and freed
        sync()

    def with_ranking() -> None:
        for s in range(0, args.users, args.chunk):
            e = min(s + args.chunk, args.users)
            scores = user_emb[s:e] @ item_emb.T  # (B, I)
            lo, hi = row_ptr[s], row_ptr[e]
            rank_topk(scores, mask_rows[lo:hi] - s, mask_cols[lo:hi], args.k)
        sync()

    def median_time(fn) -> tuple[float, float]:
        """Median wall and process-CPU seconds (CPU time is steadier on a shared machine)."""
        fn()  # warm-up (allocator, threads)
        wall, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return statistics.median(wall), statistics.median(cpu)

    (t_score, c_score), (t_rank, c_rank) = median_time(scoring_only), median_time(with_ranking)
    print(f"users={args.users} items={args.items} d={args.dim} k={args.k} chunk={args.chunk} "
          f"threads={torch.get_num_threads()} device={dev}")
    print(f"scoring only        : {t_score:8.3f} s wall  {c_score:8.3f} s cpu")
    print(f"scoring + rank_topk : {t_rank:8.3f} s wall  {c_rank:8.3f} s cpu")
    print(f"ratio               : {t_rank / t_score:8.2f}   wall  {c_rank / c_score:8.2f}   cpu")


if __name__ == "__main__":
    main()
