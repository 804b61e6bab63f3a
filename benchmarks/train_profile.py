"""Where a default training step's time goes, its FLOPs and the fraction of the cores' matmul rate it reaches.

    python -m benchmarks.train_profile [--threads 2 1] [--concurrent 2] [--batch 48] [--steps 8]
        [--repeats 3] [--params params.yaml] [--set SECTION.KEY=VALUE ...]
        [--out benchmarks/results/train_profile.json]

The steps are the training loop's own (`acsa.training.loop.train_epoch`: identity batches from a DataLoader
over a preloaded uint8 image table, augmentation, encoders, losses, backward, AdamW, learning-rate schedule,
finite check and loss logging), on random images and text features of the synthetic split's sizes
(benchmarks/training.py `loop_run`). One process per thread count in `--threads`:

- time: `--repeats` runs of `--steps` steps after a warm-up run; the median run's seconds per step;
- profile: torch.profiler over `--steps` more steps. Each operator's self time goes to the phase it ran in
  (acsa.training.step.PHASES, and the DataLoader's fetch); a backward operator counts for the phase of the
  forward operator that recorded it (autograd sequence numbers), and inside the image encoder by kind:
  convolutions, BatchNorm, pooling, matrix products (the heads), other. "Python, dispatch, autograd engine"
  is the profiled steps' wall time minus all operators' self time (the profiler's own cost included: the
  "profiled s/step" column shows how much it adds);
- FLOPs: torch.utils.flop_counter over one step (forward and backward: convolutions and matrix products,
  what the matmul rate bounds; the optimizer's elementwise work is not counted);
- reference: one core's fp32 matmul rate (benchmarks.common.core_rate: best of five single-threaded 2048^3
  products) before and after; the cores' rate is threads x the better of the two.
- on cores shared with other jobs, wall-clock figures measure the load as much as the code: the "CPU"
  columns divide by the CPU time the process got instead (its threads' user + system time; the matmul
  rate per CPU second of its thread), which other jobs lower much less.

`--concurrent N` (0 to skip) starts N single-thread processes that train side by side (each builds and warms
up, then all start together and each runs `--steps` x `--repeats` steps): their pairs/s add up, against N
cores' matmul rate. Last, the decoding of the training split's images (PNG -> uint8 tensor, once per run):
the prepared split under `--prepared` when it exists, else a small synthetic benchmark generated here,
extrapolated to the configured split size.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from acsa.cli import add_params_options
from acsa.config.sections import SyntheticConfig
from acsa.data.image_tables import ImageTable
from acsa.data.prepared import image_table, load_prepared
from acsa.data.synthetic import generate_synthetic
from acsa.runtime import set_threads
from benchmarks.common import (
    REPO,
    RESULTS,
    add_worker_options,
    benchmark_main,
    core_rate,
    cpu_seconds,
    format_table,
    machine_info,
    run_worker,
    run_workers_together,
    wait_at_barrier,
)
from benchmarks.training import load_config, loop_run

log = logging.getLogger(__name__)

DATA = "enumerate(DataLoader)"  # the profiler's range around each DataLoader fetch
# (category, phase, operator kinds or None for all) in table order; the first match wins.
CATEGORIES = (
    ("data: batch assembly (DataLoader)", "data", None),
    ("data: augmentation (to float, flip, translate)", "augment", None),
    ("image encoder: convolutions", "image_encoder", ("conv",)),
    ("image encoder: BatchNorm", "image_encoder", ("batch_norm",)),
    ("image encoder: pooling", "image_encoder", ("pool",)),
    ("image encoder: matrix products (heads)", "image_encoder", ("mm", "addmm", "bmm", "linear", "matmul")),
    ("image encoder: other ops (ReLU, adds, copies)", "image_encoder", None),
    ("text projections", "text", None),
    ("loss heads: local similarity, CMPM, CMPC", "losses", None),
    ("optimizer (AdamW)", "optimizer", None),
    ("other ops: schedule, finite check, logging, grad accumulation", None, None),
)
OVERHEAD = "Python, dispatch, autograd engine (wall - op self time)"


def kind_matches(name: str, kinds: tuple[str, ...]) -> bool:
    """Whether operator `name` is of one of `kinds`: a part of its name for convolution, BatchNorm and pooling
    (forward and backward variants), its whole first word for the matrix products (mm, not mm-anything)."""
    op = name.removeprefix("aten::")
    return any(k in op if k in ("conv", "batch_norm", "pool") else op.split("_")[0] == k for k in kinds)


def enclosing(event, prefix: str):
    """The nearest ancestor (or the event itself) whose name starts with `prefix`, or None."""
    while event is not None and not event.name.startswith(prefix):
        event = event.cpu_parent
    return event


def phase_of(event, forward_phase: dict[int, str]) -> str | None:
    """The step phase an operator ran in; backward operators get their forward operator's phase."""
    node = event
    while node is not None:
        if node.name.startswith("autograd::engine::evaluate_function"):
            return forward_phase.get(node.sequence_nr)
        if node.name.startswith("acsa.") and node.name != "acsa.backward":
            return node.name.removeprefix("acsa.")
        if node.name.startswith(DATA):
            return "data"
        node = node.cpu_parent
    return None


def breakdown(events, wall_s: float, steps: int) -> dict[str, float]:
    """Milliseconds per step of each category (CATEGORIES, then OVERHEAD) from the profiler's events."""
    forward_phase: dict[int, str] = {}
    for e in events:
        if e.sequence_nr >= 0 and enclosing(e, "acsa.backward") is None:
            phase = phase_of(e, {})
            if phase is not None:
                forward_phase.setdefault(e.sequence_nr, phase)
    totals: dict[str, float] = defaultdict(float)
    op_seconds = 0.0
    for e in events:
        if not e.name.startswith("aten::") or e.self_cpu_time_total <= 0:
            continue
        seconds = e.self_cpu_time_total / 1e6
        op_seconds += seconds
        phase = phase_of(e, forward_phase)
        for name, category_phase, kinds in CATEGORIES:
            if category_phase in (phase, None) and (kinds is None or kind_matches(e.name, kinds)):
                totals[name] += seconds
                break
    totals[OVERHEAD] = max(0.0, wall_s - op_seconds)
    return {name: 1000 * totals[name] / steps for name, *_ in (*CATEGORIES, (OVERHEAD,))}


def step_flops(run, steps: int = 1) -> float:
    with FlopCounterMode(display=False) as counter:
        run.steps(steps)
    return counter.get_total_flops() / steps


def timed_steps(run, steps: int, repeats: int) -> tuple[list[float], float]:
    """(seconds per step of each of `repeats` runs of `steps` steps, CPU seconds per step over all)."""
    out = []
    start_cpu = cpu_seconds()
    for _ in range(repeats):
        start = time.perf_counter()
        run.steps(steps)
        out.append((time.perf_counter() - start) / steps)
    return out, (cpu_seconds() - start_cpu) / (steps * repeats)


def worker(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args.threads[0])
    torch.manual_seed(0)
    if args.mode == "decode":
        return decode_images(args)
    params = load_config("default", False, args.params, args.overrides)
    run = loop_run(params, args.batch)
    batch = run.params.train.batch_size
    run.steps(args.warmup)
    if args.barrier:  # one of --concurrent processes: wait for the others, then train side by side
        wait_at_barrier(args.barrier)
        per_step, cpu_per_step = timed_steps(run, args.steps, args.repeats)
        return {
            "batch_size": batch,
            "step_s": per_step,
            "pairs_per_s": batch / statistics.median(per_step),
            "cpu_s_per_step": cpu_per_step,
            "machine": machine_info(),
        }
    rate_before, cpu_rate_before = core_rate(), core_rate(clock=time.thread_time)
    per_step, cpu_per_step = timed_steps(run, args.steps, args.repeats)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run.steps(args.steps)
        profiled_s = time.perf_counter() - start
    categories = breakdown(prof.events(), profiled_s, args.steps)
    flops = step_flops(run)
    rate = max(rate_before, core_rate())
    cpu_rate = max(cpu_rate_before, core_rate(clock=time.thread_time))
    step_s = statistics.median(per_step)
    return {
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "step_s": per_step,
        "step_s_median": step_s,
        "cpu_s_per_step": cpu_per_step,
        "profiled_step_s": profiled_s / args.steps,
        "pairs_per_s": batch / step_s,
        "flops_per_step": flops,
        "core_rate_flops": rate,
        "fraction_of_cores": flops / step_s / (torch.get_num_threads() * rate),
        "core_rate_flops_per_cpu_s": cpu_rate,
        "fraction_per_cpu_s": flops / cpu_per_step / cpu_rate,
        "categories_ms": categories,
        "operator_count_per_step": sum(1 for e in prof.events() if e.name.startswith("aten::")) / args.steps,
        "steps_per_epoch": len(run.loader),
        "machine": machine_info(),
    }


def decode_images(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to decode the training split's images once (what a training run does at start)."""
    params = load_config("default", False, args.params, args.overrides)
    wanted = params.synthetic.train_ids * params.synthetic.images_per_id
    prepared_dir = Path(args.prepared)
    with tempfile.TemporaryDirectory() as tmp:
        if (prepared_dir / "train" / "records.json").is_file():
            prepared = load_prepared(prepared_dir)
            records, source = prepared.split("train"), str(prepared_dir)
            decode = lambda: image_table(prepared, "train", params.image)  # noqa: E731
            count = len(records["images"])
        else:  # a small synthetic benchmark: its images, all splits
            cfg = SyntheticConfig(train_ids=24, val_ids=4, test_ids=4, seed=params.synthetic.seed)
            root = generate_synthetic(Path(tmp), cfg)
            paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
            source = f"generated synthetic sample ({len(paths)} images)"
            decode = lambda: ImageTable(root, paths, params.image.height, params.image.width, True)  # noqa: E731
            count = len(paths)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        decode()
        wall, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    return {
        "source": source,
        "images": count,
        "wall_s": wall,
        "cpu_s": cpu,
        "split_images": wanted,
        "split_cpu_s": cpu / count * wanted,
        "split_wall_s": wall / count * wanted,
        "machine": machine_info(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = machine_info()
    params = load_config("default", False, args.params, args.overrides)
    settings = [
        f"--params={args.params}",
        *(f"--set={o}" for o in args.overrides),
        f"--steps={args.steps}",
        f"--repeats={args.repeats}",
        f"--warmup={args.warmup}",
        *([f"--batch={args.batch}"] if args.batch else []),
    ]
    module = "benchmarks.train_profile"
    profiles = []
    for threads in args.threads:
        log.info("profiling with %d thread(s) ...", threads)
        profiles.append(run_worker(module, [f"--threads={threads}", *settings], args.in_process))
    rows = [summary_row(f"1 process, {p['threads']} thread(s)", p) for p in profiles]
    concurrent = []
    if args.concurrent:
        log.info("%d single-thread processes side by side ...", args.concurrent)
        concurrent = run_workers_together(
            module, [["--threads=1", *settings]] * args.concurrent, barrier=True
        )
        rows.append(concurrent_row(concurrent, min(profiles, key=lambda p: p["threads"])))
    decode = run_worker(module, ["--mode=decode", f"--prepared={args.prepared}", *settings], args.in_process)
    steps_per_run = profiles[0]["steps_per_epoch"] * params.train.epochs
    decode["ms_per_step_amortised"] = 1000 * decode["split_cpu_s"] / steps_per_run
    table = breakdown_table(profiles)
    print(format_table(table, list(table[0])))
    print(
        f"decoding {decode['split_images']} training images once per run: {decode['split_cpu_s']:.2f} CPU s "
        f"({decode['ms_per_step_amortised']:.2f} ms per step over a run's {steps_per_run} steps; measured on "
        f"{decode['images']} images of {decode['source']}, wall {decode['wall_s']:.2f} s)"
    )
    return {
        "benchmark": "train_profile",
        "command": "python -m benchmarks.train_profile " + " ".join(sys.argv[1:]),
        "machine_at_start": start,
        "machine_at_end": machine_info(),
        "rows": rows,
        "breakdown": table,
        "profiles": profiles,
        "concurrent": concurrent,
        "decode": decode,
    }


def concurrent_row(concurrent: list[dict[str, Any]], reference: dict[str, Any]) -> dict[str, Any]:
    """The side-by-side processes' sum, with the FLOPs per pair and core rate of a single-thread profile."""
    pairs = sum(c["pairs_per_s"] for c in concurrent)
    flops = pairs * reference["flops_per_step"] / reference["batch_size"]
    cpu_per_step = statistics.mean(c["cpu_s_per_step"] for c in concurrent)
    return {
        "mode": f"{len(concurrent)} processes x 1 thread (sum)",
        "pairs/s": pairs,
        "CPU s/step": cpu_per_step,
        "GFLOP/step": reference["flops_per_step"] / 1e9,
        "GFLOP/s": flops / 1e9,
        "core GFLOP/s": reference["core_rate_flops"] / 1e9,
        "% of cores' matmul rate": 100 * flops / (len(concurrent) * reference["core_rate_flops"]),
        "GFLOP/CPU s": reference["flops_per_step"] / cpu_per_step / 1e9,
        "% of matmul rate per CPU s": 100
        * reference["flops_per_step"]
        / cpu_per_step
        / reference["core_rate_flops_per_cpu_s"],
        "load": concurrent[0]["machine"]["load_average"][0],
    }


def summary_row(mode: str, p: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": mode,
        "pairs/s": p["pairs_per_s"],
        "s/step": p["step_s_median"],
        "profiled s/step": p["profiled_step_s"],
        "CPU s/step": p["cpu_s_per_step"],
        "GFLOP/step": p["flops_per_step"] / 1e9,
        "GFLOP/s": p["flops_per_step"] / p["step_s_median"] / 1e9,
        "core GFLOP/s": p["core_rate_flops"] / 1e9,
        "% of cores' matmul rate": 100 * p["fraction_of_cores"],
        "GFLOP/CPU s": p["flops_per_step"] / p["cpu_s_per_step"] / 1e9,
        "% of matmul rate per CPU s": 100 * p["fraction_per_cpu_s"],
        "ops/step": p["operator_count_per_step"],
        "load": p["machine"]["load_average"][0],
    }


def breakdown_table(profiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per category: ms per profiled step and its share, for each thread count."""
    rows = []
    for name in [*(c[0] for c in CATEGORIES), OVERHEAD, "total (profiled wall)"]:
        row: dict[str, Any] = {"category": name}
        for p in profiles:
            total = sum(p["categories_ms"].values())
            ms = total if name.startswith("total") else p["categories_ms"][name]
            row[f"ms ({p['threads']} thr)"] = ms
            row[f"% ({p['threads']} thr)"] = 100 * ms / total
        rows.append(row)
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="one profiled process per count")
    p.add_argument("--concurrent", type=int, default=2, help="single-thread processes side by side (0: none)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: params)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prepared", default=str(REPO / "data" / "prepared"), help="prepared benchmark to decode")
    p.add_argument("--out", default=RESULTS / "train_profile.json")
    add_params_options(p, configuration=False)
    p.add_argument("--mode", default="profile", help=argparse.SUPPRESS)
    add_worker_options(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return benchmark_main(parser().parse_args(argv), worker, run)


if __name__ == "__main__":
    main()
