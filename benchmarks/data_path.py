"""The data path at CUHK-PEDES size: prepare, embed_text, embed_images, a short training slice and evaluate,
each stage's wall time and peak memory.

    python -m benchmarks.data_path [--scale 1.0] [--train-steps 20] [--scratch DIR] [--keep]
                                   [--set SECTION.KEY=VALUE ...] [--out FILE]

The synthetic generator writes a benchmark with CUHK-PEDES's split sizes (identities / images / captions:
train 11,003 / 34,054 / 68,126, val 1,000 / 3,078 / 6,158, test 1,000 / 3,074 / 6,156; `--scale` multiplies
them) in the CUHK-PEDES layout to SCRATCH/benchmark (`python -m acsa.data.synthetic`, timed apart: a user
has the images already). Then each stage runs as its own command in SCRATCH, as a user with a copy of
CUHK-PEDES would run it (`--set data.dataset=cuhk-pedes --set data.root=benchmark`, params.yaml otherwise):

    prepare     python -m acsa.prepare ...      read, check every image, noun phrases, tokens
    embed_text  python -m acsa.embed_text ...   frozen text features of every caption and unique phrase
    embed_images python -m acsa.embed_images ... the frozen backbone's outputs of every image (image.views
                                                views of each training image)
    train       python -m acsa.train ...        --train-steps optimizer steps, then validation on the whole
                                                val split (exact local scores: epoch and fusion weight)
    evaluate    python -m acsa.evaluate ...     the test split, exact local scores

Time: wall clock of the stage's process, and its CPU time (all threads: on busy shared cores the wall time
grows, the CPU time much less, so it shows what a quiet machine would take). Peak memory: the largest
resident set of the stage's process and the children it waited for (ru_maxrss). Goals of issue 15 on 2
cores (checked at --scale 1): prepare + embed_text <= 15 min, evaluate <= 3 min, peak memory <= 8 GB. The
stages' own logs are in SCRATCH/logs/ (--keep keeps SCRATCH).

Not run in CI (about half an hour); tests/test_benchmarks.py runs it at --scale 0.002 with --in-process
(each stage's main called in this process: seconds instead of a minute of interpreter starts, but the peak
memory is then this process's so far, not each stage's).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS, format_table, machine_info, write_json
from benchmarks.repro_time import environment

# CUHK-PEDES split sizes: (identities, images, captions)
CUHK_PEDES = {"train": (11_003, 34_054, 68_126), "val": (1_000, 3_078, 6_158), "test": (1_000, 3_074, 6_156)}
GOALS = {"prepare + embed_text": 15 * 60.0, "evaluate": 3 * 60.0}  # seconds
PEAK_GOAL_MB = 8 * 1024.0
STAGES = ("generate", "prepare", "embed_text", "embed_images", "train", "evaluate")


def split_sizes(scale: float) -> dict[str, tuple[int, int, int]]:
    """CUHK-PEDES's sizes times `scale`, at least 2 identities, 2 images per identity, 1 caption per image."""
    sizes = {}
    for split, (ids, images, captions) in CUHK_PEDES.items():
        n_ids = max(2, round(ids * scale))
        n_images = max(2 * n_ids, round(images * scale))
        sizes[split] = (n_ids, n_images, max(n_images, round(captions * scale)))
    return sizes


def generator_overrides(sizes: dict[str, tuple[int, int, int]]) -> list[str]:
    ids = [f"synthetic.{split}_ids={sizes[split][0]}" for split in CUHK_PEDES]
    images = ",".join(str(sizes[split][1]) for split in CUHK_PEDES)
    captions = ",".join(str(sizes[split][2]) for split in CUHK_PEDES)
    return [*ids, f"synthetic.split_images=[{images}]", f"synthetic.split_captions=[{captions}]"]


def commands(params: Path, sizes, train_steps: int, overrides: list[str]) -> dict[str, list[str]]:
    """Each stage's command line, run in the scratch folder."""

    def stage(module: str, *args: str, extra: tuple[str, ...] = ()) -> list[str]:
        sets = [a for o in [*extra, *overrides] for a in ("--set", o)]
        return [sys.executable, "-m", module, "--params", str(params), *sets, *args]

    data = ("data.dataset=cuhk-pedes", "data.root=benchmark")
    features = "features"
    return {
        "generate": stage(
            "acsa.data.synthetic", "--out", "benchmark", extra=tuple(generator_overrides(sizes))
        ),
        "prepare": stage("acsa.prepare", "--out", "prepared", extra=data),
        "embed_text": stage("acsa.embed_text", "--prepared", "prepared", "--out", "features", extra=data),
        "embed_images": stage("acsa.embed_images", "--prepared", "prepared", "--out", "images", extra=data),
        "train": stage(
            "acsa.train",
            *("--prepared", "prepared", "--features", features, "--image-features", "images"),
            *("--out", "model", "--checkpoints", "checkpoints", "--live", "live"),
            extra=(*data, f"train.max_steps={train_steps}"),
        ),
        "evaluate": stage(
            "acsa.evaluate",
            *("--model", "model", "--prepared", "prepared", "--features", features),
            *("--image-features", "images", "--out", "eval"),
            extra=data,
        ),
    }


# Starts the stage and reports its peak memory. A child's ru_maxrss starts at the resident set of the process
# that forked it (Linux carries the old address space's high-water mark across exec), so the stage is
# started from this small interpreter, not from the benchmark's own (torch loaded: 600 MB and more).
_LAUNCHER = (
    "import json, resource, subprocess, sys; "
    "code = subprocess.call(sys.argv[2:]); "
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "cpu = usage.ru_utime + usage.ru_stime; "
    "open(sys.argv[1], 'w').write(json.dumps({'exit': code, 'peak_kb': usage.ru_maxrss, 'cpu_s': cpu})); "
    "sys.exit(0)"
)


def run_command(command: list[str], cwd: Path, log_path: Path) -> dict[str, Any]:
    """Run one stage; its wall time, CPU time (user + system, all threads), peak resident memory (MB:
    ru_maxrss of the stage and the children it waited for) and exit status."""
    env = environment()
    env["PYTHONPATH"] = str(REPO)  # this checkout's acsa, whatever the environment has installed
    report = log_path.with_suffix(".rusage.json")
    with open(log_path, "w") as log_file:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(report), *command],
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            check=True,
        )
        seconds = time.perf_counter() - started
    result = json.loads(report.read_text())
    return {
        "seconds": seconds,
        "cpu_seconds": result["cpu_s"],
        "peak_mb": result["peak_kb"] / 1024,
        "exit": result["exit"],
    }


def run_in_process(command: list[str], cwd: Path) -> dict[str, Any]:
    """Call the stage's main (command: python -m MODULE ARGS...) here, in `cwd`; for tests."""
    module, argv = command[2], command[3:]
    before = Path.cwd()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        os.chdir(cwd)
        importlib.import_module(module).main(argv)
    finally:
        os.chdir(before)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak, "exit": 0}


def goal_rows(rows: dict[str, dict[str, Any]], full_size: bool) -> list[dict[str, Any]]:
    prepare_embed = rows["prepare"]["seconds"] + rows["embed_text"]["seconds"]
    peak = max(r["peak_mb"] for name, r in rows.items() if name != "generate")
    checks = [
        ("prepare + embed_text", prepare_embed, GOALS["prepare + embed_text"], "s"),
        ("evaluate", rows["evaluate"]["seconds"], GOALS["evaluate"], "s"),
        ("peak memory of a stage", peak, PEAK_GOAL_MB, "MB"),
    ]
    return [
        {
            "goal": f"{name} <= {limit:.0f} {unit}",
            "measured": value,
            "met": (value <= limit) if full_size else "n/a (scaled)",
        }
        for name, value, limit, unit in checks
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="acsa-data-path-"))
    if scratch.exists() and any(scratch.iterdir()):
        raise SystemExit(f"{scratch} is not empty: pass an empty or new folder")
    (scratch / "logs").mkdir(parents=True)
    sizes = split_sizes(args.scale)
    plan = commands(Path(args.params).resolve(), sizes, args.train_steps, args.overrides)
    start_machine = machine_info()
    rows: dict[str, dict[str, Any]] = {}
    for name in STAGES:
        print(f"{name}: {' '.join(plan[name][1:])}", flush=True)
        if args.in_process:
            rows[name] = run_in_process(plan[name], scratch)
        else:
            rows[name] = run_command(plan[name], scratch, scratch / "logs" / f"{name}.log")
        rows[name]["load"] = os.getloadavg()[0]
        print(f"  {rows[name]['seconds']:.1f} s, peak {rows[name]['peak_mb']:.0f} MB", flush=True)
        if rows[name]["exit"] != 0:
            tail = (scratch / "logs" / f"{name}.log").read_text().splitlines()[-5:]
            raise SystemExit(f"{name} failed (exit {rows[name]['exit']}): " + " | ".join(tail))
    summary = {
        "benchmark": "data_path",
        "command": "python -m benchmarks.data_path"
        + (f" --scale {args.scale:g}" if args.scale != 1 else "")
        + f" --train-steps {args.train_steps}"
        + "".join(f" --set {o}" for o in args.overrides),
        "scale": args.scale,
        "sizes": {s: dict(zip(("ids", "images", "captions"), v, strict=True)) for s, v in sizes.items()},
        "prepared": json.loads((scratch / "prepared" / "summary.json").read_text()),
        "test_metrics": json.loads((scratch / "eval" / "metrics.json").read_text())["test"],
        "benchmark_mb": sum(f.stat().st_size for f in (scratch / "benchmark").rglob("*") if f.is_file())
        / 2**20,
        "rows": [{"stage": name, **row} for name, row in rows.items()],
        "goals": goal_rows(rows, full_size=args.scale == 1),
        "commands": {name: " ".join(command[1:]) for name, command in plan.items()},
        "machine_at_start": start_machine,
        "machine_at_end": machine_info(),
        "scratch": str(scratch),
    }
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies CUHK-PEDES's split sizes (default 1)")
    p.add_argument("--train-steps", type=int, default=20, help="optimizer steps of the training slice")
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an override for every stage (repeatable)",
    )
    p.add_argument("--scratch", type=Path, default=None, help="an empty folder (default: a new temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder: benchmark, outputs, logs")
    p.add_argument("--in-process", action="store_true", help="call the stages here (tests; see above)")
    p.add_argument("--out", type=Path, default=RESULTS / "data_path.json")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    summary = run(args)
    print(format_table(summary["rows"], ["stage", "seconds", "cpu_seconds", "peak_mb", "load"]))
    print(format_table(summary["goals"], ["goal", "measured", "met"]))
    print(f"sizes: {summary['sizes']}; benchmark on disk {summary['benchmark_mb']:.0f} MB")
    print(f"machine: {summary['machine_at_start']}; load at end {summary['machine_at_end']['load_average']}")
    print(f"written {write_json(args.out, summary)}")
    return summary


if __name__ == "__main__":
    main()
