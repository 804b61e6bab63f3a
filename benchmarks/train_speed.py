"""Training throughput (pairs/s) and peak memory of full optimizer steps on the CPU, per configuration.

    python -m benchmarks.train_speed [--only default-frozen paper-frozen ...] [--threads 2]
        [--variants default 1-thread 2x1-thread ...] [--baseline-ref REV] [--repeats N]
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

`2x1-thread`: two single-thread processes started together (as the train stage runs a configuration's
seeds side by side); pairs/s is their sum, peak memory the larger of the two.

Before/after: `--baseline-ref REV` exports revision REV of this repository (git archive) and runs its own
benchmark worker the same way, alternating with this checkout's (first one, then the other, the order
swapped every round) for `--repeats` rounds: each row adds REV's pairs/s and peak memory, "x baseline"
(median over rounds of this code's pairs/s over REV's in the same variant) and "x baseline default" (over
REV's `default` variant: the throughput the issue compares with). REV's worker gets only the options every
version has (--config, --threads, --batch, --warmup, --steps) and reads its own params.yaml: `--set` and
`--params` apply to this checkout's runs only.

Not included: loading and decoding images (the default preloads the synthetic split into memory: a tensor
index per batch) and the per-epoch validation.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from acsa.cli import add_params_options
from acsa.runtime import set_threads
from benchmarks.common import (
    REPO,
    RESULTS,
    add_worker_options,
    benchmark_main,
    machine_info,
    peak_memory,
    run_worker,
    run_workers_together,
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
# threads spin while they wait for each other), waiting passively, a single thread, or two single-thread
# processes side by side (as the train stage runs a configuration's seeds): name -> (environment, threads
# (None: --threads), processes).
VARIANTS: dict[str, tuple[dict[str, str], int | None, int]] = {
    "default": ({}, None, 1),
    "omp-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None, 1),
    "1-thread": ({}, 1, 1),
    "2x1-thread": ({}, 1, 2),
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


def worker_args(args: argparse.Namespace, name: str, threads: int, baseline: bool) -> list[str]:
    """A worker's command line; another revision's worker gets only the options every version has."""
    extra = [f"--{key}={getattr(args, key)}" for key in ("batch", "warmup", "steps") if getattr(args, key)]
    settings = [] if baseline else [f"--params={args.params}", *(f"--set={o}" for o in args.overrides)]
    return [f"--config={name}", f"--threads={threads}", *settings, *extra]


def measure(args: argparse.Namespace, name: str, variant: str, root: Path | None) -> dict[str, Any]:
    """One configuration in one variant, with this checkout's code or the one at `root`: the worker's
    result; with several processes (side by side), the first one's, pairs/s summed and peak memory maxed."""
    env, threads, processes = VARIANTS[variant]
    cmd = worker_args(args, name, threads or args.threads, root is not None)
    if processes == 1:
        r = run_worker("benchmarks.train_speed", cmd, args.in_process, env, root=root or REPO)
        r["processes"] = [r["pairs_per_s"]]
        return r
    together = run_workers_together("benchmarks.train_speed", [cmd] * processes, env, root=root or REPO)
    r = dict(together[0])
    r["processes"] = [t["pairs_per_s"] for t in together]
    r["pairs_per_s"] = sum(r["processes"])
    r["peak_rss_mb"] = max(t["peak_rss_mb"] for t in together)
    r["steps_peak_rise_mb"] = max(t["steps_peak_rise_mb"] for t in together)
    return r


def export_revision(rev: str, folder: Path) -> Path:
    """The tracked files of revision `rev` of this repository, written into `folder` (git archive)."""
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"--baseline-ref: git archive {rev} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = machine_info()
    runs = [(name, v) for name in args.only for v in (args.variants if name in args.vary else ["default"])]
    with tempfile.TemporaryDirectory() as tmp:
        baseline_root = export_revision(args.baseline_ref, Path(tmp)) if args.baseline_ref else None
        results: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for repeat in range(args.repeats):
            for name, variant in runs:
                codes = [("current", None)] + ([("baseline", baseline_root)] if baseline_root else [])
                for code, root in codes if repeat % 2 == 0 else codes[::-1]:  # alternate who goes first
                    log.info("%s (%s), %s code, round %d ...", name, variant, code, repeat + 1)
                    r = measure(args, name, variant, root)
                    r.update(variant=variant, code=code, repeat=repeat)
                    results[name, variant, code].append(r)
    rows = [result_row(name, variant, results, args.baseline_ref) for name, variant in runs]
    flat = [r for rs in results.values() for r in rs]
    return {
        "benchmark": "train_speed",
        "command": "python -m benchmarks.train_speed " + " ".join(sys.argv[1:]),
        "baseline_ref": args.baseline_ref,
        "machine_at_start": start,
        "machine_at_end": machine_info(),
        "rows": rows,
        "configs": flat,
    }


def result_row(name: str, variant: str, results: dict, baseline_ref: str | None) -> dict[str, Any]:
    """A table row: the median over repeats; with a baseline, its figures and the ratios (medians of the
    ratios of each round, in which both ran back to back)."""
    current = results[name, variant, "current"]
    r = current[0]
    env, _, processes = VARIANTS[variant]
    pairs = statistics.median(c["pairs_per_s"] for c in current)
    row = {
        "config": name,
        "threads": f"{processes} x " * (processes > 1)
        + f"{r['machine']['torch_threads']}{' (OMP passive)' if env else ''}",
        "image": "x".join(map(str, r["image_size"])),
        "text": r["text"],
        "trainable M": r["trainable_params_m"],
        "batch": r["batch_size"],
        "steps": r["steps_timed"],
        "s/step": statistics.median(c["step_s_median"] for c in current),
        "pairs/s": pairs,
        "peak RSS MB": max(c["peak_rss_mb"] for c in current),
        "rise during steps MB": max(c["steps_peak_rise_mb"] for c in current),
        "load": r["machine"]["load_average"][0],
    }
    goal = GOAL_PAIRS_PER_S.get(name)
    if goal and not baseline_ref:
        row["goal"] = f">= {goal:g} pairs/s: {'met' if pairs >= goal else 'MISSED'}"
    if baseline_ref:
        base = results[name, variant, "baseline"]
        first = results.get((name, "default", "baseline"), base)
        row |= {
            f"{baseline_ref} pairs/s": statistics.median(b["pairs_per_s"] for b in base),
            "x baseline": statistics.median(
                c["pairs_per_s"] / b["pairs_per_s"] for c, b in zip(current, base, strict=True)
            ),
            "x baseline default": statistics.median(
                c["pairs_per_s"] / b["pairs_per_s"] for c, b in zip(current, first, strict=True)
            ),
            f"{baseline_ref} peak RSS MB": max(b["peak_rss_mb"] for b in base),
            "peak RSS x baseline": row["peak RSS MB"] / max(b["peak_rss_mb"] for b in base),
        }
    return row


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
    p.add_argument(
        "--baseline-ref",
        help="a git revision of this repository (e.g. 910e1db) whose own benchmark runs each configuration "
        "and variant too, alternating with this code: pairs/s, peak memory and their ratios",
    )
    p.add_argument("--repeats", type=int, default=1, help="rounds of every run (medians are reported)")
    p.add_argument("--out", default=RESULTS / "train_speed.json")
    add_params_options(p, configuration=False)  # applied on top of every configuration
    p.add_argument("--config", help=argparse.SUPPRESS)
    add_worker_options(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return benchmark_main(parser().parse_args(argv), worker, run)


if __name__ == "__main__":
    main()
