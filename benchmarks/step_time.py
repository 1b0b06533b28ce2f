"""Median training-step seconds of models on a real dataset, as training runs them.

    OMP_NUM_THREADS=1 python benchmarks/step_time.py --models kgin,diffkg --dataset ml-100k-kg \
        --data-dir ../shared/data [--repeats 3] [--unfused-adam] [--host-heap off]

Each model is built from its config (``model=<name> dataset=<name>``), attached to the data
module's graphs, and stepped with the optimiser its ``configure_optimizers`` returns (the first
one for a model with several) on real training batches; the diffusion models get one epoch's row
chunks as their epoch hook would cut them. ``--unfused-adam`` swaps in torch's default Adam, to
measure what the fused update saves. ``--host-heap off`` leaves glibc's allocator at its defaults
(training keeps freed memory in the heap: ``callbacks.accelerate.host_heap``, slifmr.host_memory);
the setting is process-wide, so compare on and off in separate processes. Prints the median of
``--timed`` steps after one warm-up, per repeat, and the process's peak RSS: quote medians and
ratios, the machines here are shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from slifmr.config import register_resolvers


def build(model_name: str, dataset: str, data_dir: str):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model_name}", f"dataset={dataset}",
                                                      f"paths.data_dir={data_dir}"])
    dm = instantiate(cfg.dataset, _convert_="all")
    dm.setup("fit")
    torch.manual_seed(0)
    model = instantiate(cfg.model, meta=dm.meta, _convert_="all")
    model.attach(dm.graphs)
    return model, dm


def median_step(model, dm, timed: int, unfused: bool) -> float:
    opt = model.configure_optimizers()
    opt = opt[0] if isinstance(opt, (list, tuple)) else opt
    if unfused:
        opt = torch.optim.Adam([p for g in opt.param_groups for p in g["params"]], lr=opt.defaults["lr"],
                               weight_decay=opt.defaults["weight_decay"])
    model.train()
    if hasattr(model, "_chunks"):  # the diffusion models: one epoch's row chunks (their epoch hook)
        from slifmr.models.encoders.diffusion import epoch_row_chunks

        model._chunks = epoch_row_chunks(model.n_generated_rows, len(dm.train_dataloader()), "cpu")
        model._step = 0
    it = iter(dm.train_dataloader())
    batches = [next(it) for _ in range(timed + 1)]

    def step(b) -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(b)["loss"].backward()
        opt.step()

    step(batches[0])
    times = []
    for b in batches[1:]:
        t0 = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lightgcn,kgin")
    ap.add_argument("--dataset", default="ml-100k-kg")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--timed", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unfused-adam", action="store_true")
    ap.add_argument("--host-heap", choices=("on", "off"), default="on")
    args = ap.parse_args()
    if args.host_heap == "on":
        from slifmr.host_memory import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(args.threads)
    register_resolvers()
    for name in args.models.split(","):
        model, dm = build(name, args.dataset, args.data_dir)
        runs = [median_step(model, dm, args.timed, args.unfused_adam) for _ in range(args.repeats)]
        adam = "unfused Adam" if args.unfused_adam else "its own optimiser"
        print(f"{name} on {args.dataset} ({adam}): median step {statistics.median(runs):.3f} s "
              f"(repeats {', '.join(f'{r:.3f}' for r in runs)}), {len(dm.train_dataloader())} steps/epoch, "
              f"host heap {args.host_heap}, peak RSS {peak_rss_mb():.0f} MB", flush=True)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    sys.exit(main())
