"""Training throughput (pairs/s) and peak memory of full optimizer steps on the CPU, per configuration.

    python -m benchmarks.train_speed [--only default-frozen paper-frozen ...] [--threads 2]
        [--params params.yaml] [--set SECTION.KEY=VALUE ...] [--out benchmarks/results/train_speed.json]

Configurations (benchmarks/training.py): params.yaml's `default` and its `paper` preset (Swin-T 384x128,
BERT-base, random init), each with the text encoder frozen (cached features, the default) or fine-tuned.
A step is the training loop's (acsa.training.step): augment, image + text encoding, CMPM + CMPC + local
loss, backward, AdamW, on a random identity-structured batch. Each configuration runs in its own process;
after warm-up steps, the median step gives pairs/s. Peak memory: the process's maximum resident memory, and
its rise during the steps above the level with the model and data built.

Threads: torch's default (one per core) with OpenMP's default spin-waiting, and the same configuration
with OMP_WAIT_POLICY=PASSIVE and with one thread (`--variants`, for the configurations in `--vary`): on
cores shared with other jobs, threads that spin while their partner is descheduled make each of a step's
thousands of small ops wait for a scheduler time slice.

Not included: loading and decoding images (the default preloads the synthetic split into memory: a tensor
index per batch) and the per-epoch validation.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from typing import Any

import torch

from acsa.cli import add_params_options
from acsa.runtime import set_threads
from benchmarks.common import (
    RESULTS,
    add_worker_options,
    benchmark_main,
    machine_info,
    peak_memory,
    run_worker,
)
from benchmarks.training import (
    TRAIN_IDS,
    build_model,
    load_config,
    make_optimizer,
    random_batch,
    text_hidden_size,
    train_step,
)

log = logging.getLogger(__name__)

# name -> (config, fine-tuned text encoder, batch size (None = params), warm-up steps, timed steps)
CONFIGS: dict[str, tuple[str, bool, int | None, int, int]] = {
    "default-frozen": ("default", False, None, 3, 10),
    "default-finetune": ("default", True, None, 2, 5),
    "paper-frozen": ("paper", False, None, 1, 3),
    "paper-finetune": ("paper", True, 4, 1, 2),
}
GOAL_PAIRS_PER_S = {"default-frozen": 60.0}
# How torch's CPU threads run: as configured (params: threads 0 = torch's default, one per core; OpenMP
# threads spin while they wait for each other), waiting passively, or a single thread.
VARIANTS: dict[str, tuple[dict[str, str], int | None]] = {
    "default": ({}, None),
    "omp-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "1-thread": ({}, 1),
}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args.threads)
    torch.manual_seed(0)
    config, finetune, batch_size, warmup, steps = CONFIGS[args.config]
    warmup = args.warmup if args.warmup is not None else warmup
    steps = args.steps or steps
    params = load_config(config, finetune, args.params, args.overrides)
    batch_size = args.batch or batch_size or params.train.batch_size
    model = build_model(params, TRAIN_IDS[config]).train()
    optimizer = make_optimizer(model, params)
    generator = torch.Generator().manual_seed(0)
    hidden = text_hidden_size(params)
    batches = [random_batch(params, batch_size, generator, hidden) for _ in range(2)]
    times = []
    with peak_memory() as memory:
        for step in range(warmup + steps):
            start = time.perf_counter()
            loss = train_step(model, optimizer, batches[step % 2], params, generator)
            times.append(time.perf_counter() - start)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{args.config}: non-finite loss {float(loss)}")
    timed_steps = times[warmup:]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "config": args.config,
        "batch_size": batch_size,
        "steps_timed": len(timed_steps),
        "step_s_median": statistics.median(timed_steps),
        "step_s_all": times,
        "pairs_per_s": batch_size / statistics.median(timed_steps),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps_peak_rise_mb": memory["peak_mb"],
        "trainable_params_m": trainable / 1e6,
        "image_size": [params.image.height, params.image.width],
        "text": f"{params.text.encoder} ({'fine-tuned' if finetune else 'frozen'})",
        "machine": machine_info(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = machine_info()
    results, rows = [], []
    runs = [(name, v) for name in args.only for v in (args.variants if name in args.vary else ["default"])]
    for name, variant in runs:
        log.info("%s (%s) ...", name, variant)
        env, threads = VARIANTS[variant]
        extra = [
            f"--{key}={getattr(args, key)}" for key in ("batch", "warmup", "steps") if getattr(args, key)
        ]
        settings = [f"--params={args.params}", *(f"--set={o}" for o in args.overrides)]
        worker_args = [f"--config={name}", f"--threads={threads or args.threads}", *settings, *extra]
        r = run_worker("benchmarks.train_speed", worker_args, args.in_process, env)
        r["variant"] = variant
        results.append(r)
        goal = GOAL_PAIRS_PER_S.get(name)
        rows.append(
            {
                "config": name,
                "threads": f"{r['machine']['torch_threads']}{' (OMP passive)' if env else ''}",
                "image": "x".join(map(str, r["image_size"])),
                "text": r["text"],
                "trainable M": r["trainable_params_m"],
                "batch": r["batch_size"],
                "steps": r["steps_timed"],
                "s/step": r["step_s_median"],
                "pairs/s": r["pairs_per_s"],
                "peak RSS MB": r["peak_rss_mb"],
                "rise during steps MB": r["steps_peak_rise_mb"],
                "goal": f">= {goal:g} pairs/s: {'met' if r['pairs_per_s'] >= goal else 'MISSED'}"
                if goal
                else "",
                "load": r["machine"]["load_average"][0],
            }
        )
    return {
        "benchmark": "train_speed",
        "command": "python -m benchmarks.train_speed --only "
        + " ".join(args.only)
        + f" --threads {args.threads}",
        "machine_at_start": start,
        "machine_at_end": machine_info(),
        "rows": rows,
        "configs": results,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument(
        "--vary", nargs="*", default=["default-frozen"], help="configurations run in every variant"
    )
    p.add_argument("--batch", type=int, default=None, help="override every configuration's batch size")
    p.add_argument("--warmup", type=int, default=None, help="override the warm-up steps")
    p.add_argument("--steps", type=int, default=None, help="override the timed steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=RESULTS / "train_speed.json")
    add_params_options(p, configuration=False)  # applied on top of every configuration
    p.add_argument("--config", help=argparse.SUPPRESS)
    add_worker_options(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return benchmark_main(parser().parse_args(argv), worker, run)


if __name__ == "__main__":
    main()
