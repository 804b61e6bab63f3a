"""The study's design, route by route: what one training run costs and what it reaches on validation.

    python -m benchmarks.study_design [--routes NAME ...] [--seed 0] [--isa native|avx2] [--scratch DIR]
        [--out benchmarks/results/study_design.json]

Each route is a way to train the study's runs (params overrides, below). For each, the main configuration
(full ACSA) and the strongest global-only control (global_fair) are trained once with `--seed`, on train
and val only, two at a time with one thread each (as the study's pool trains them), from the repository's
prepared data and text features (run `dvc repro embed_text` first). A frozen route first computes its
backbone outputs (the embed_images stage, timed on its own, both cores). Printed per route and
configuration: validation R@1 of the kept epoch (the run's model selection), the epochs, the run's
seconds, its cost relative to the end-to-end route, and whether full ACSA still ranks above the control.
The figures decide the design (docs/decisions.md, "A study of cheap runs"); the test split is
never read.

Routes:
  end_to_end      the previous protocol: resnet10t from scratch at 128x64, 16 epochs, end to end
  pretrained_e2e  ImageNet MobileNetV2 at 128x64, fine-tuned end to end (a few epochs: its steps are dear)
  frozen_128      ImageNet MobileNetV2 frozen at 128x64, 2 cached views, heads trained (16 epochs)
  frozen_256_v1   ... at 256x128 (the 128x64 images upsampled), 1 view (no augmentation)
  frozen_256_v2   ... at 256x128, 2 views (the default)
  frozen_256_v4   ... at 256x128, 4 views
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import AVX2_ENV, REPO, RESULTS, format_table, kernels_in_use, machine_info, write_json

log = logging.getLogger(__name__)

SCRATCH_RESNET = {
    "image.backbone": "resnet10t",
    "image.backbone_kwargs": {"channels": [32, 64, 128, 256], "stem_width": 16},
    "image.init": "scratch",
    "image.pretrained_path": None,
    "image.frozen": False,
    "image.height": 128,
    "image.width": 64,
}
MOBILENET = {"image.backbone": "mobilenetv2_100", "image.backbone_kwargs": {}, "image.init": "pretrained"}


def frozen(height: int, width: int, views: int) -> dict[str, Any]:
    size = {"image.height": height, "image.width": width}
    return {**MOBILENET, "image.frozen": True, **size, "image.views": views}


ROUTES: dict[str, dict[str, Any]] = {
    "end_to_end": {**SCRATCH_RESNET, "train.epochs": 16},
    "pretrained_e2e": {
        **MOBILENET, "image.frozen": False, "image.height": 128, "image.width": 64, "train.epochs": 4
    },
    "frozen_128": frozen(128, 64, 2),
    "frozen_256_v1": frozen(256, 128, 1),
    "frozen_256_v2": frozen(256, 128, 2),
    "frozen_256_v4": frozen(256, 128, 4),
}  # fmt: skip
CONFIGURATIONS = ("full", "global_fair")
BASELINE = "end_to_end"


def sets(overrides: dict[str, Any]) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def run_together(commands: list[list[str]], env: dict[str, str], logs: list[Path]) -> float:
    """Run commands at once, to completion (each one's output in its log); their wall seconds. A failure
    stops the benchmark."""
    started = time.perf_counter()
    outs = [open(path, "w") for path in logs]
    try:
        processes = [
            subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            for command, out in zip(commands, outs, strict=True)
        ]
        codes = [process.wait() for process in processes]
    finally:
        for out in outs:
            out.close()
    for code, path in zip(codes, logs, strict=True):
        if code != 0:
            raise SystemExit(f"a run failed (exit {code}): see {path}")
    return time.perf_counter() - started


def route_rows(name: str, overrides: dict, args, scratch: Path, env: dict[str, str]) -> list[dict]:
    """Cache (frozen routes), then full ACSA and global_fair trained side by side, one thread each."""
    folder = scratch / name
    folder.mkdir(parents=True, exist_ok=True)
    common = [sys.executable, "-m", "acsa.train", "--params", str(args.params), *sets(overrides)]
    cache_seconds = 0.0
    if overrides.get("image.frozen"):
        cache = [
            sys.executable, "-m", "acsa.embed_images", "--params", str(args.params), *sets(overrides),
            "--prepared", "data/prepared", "--out", str(folder / "cache"),
        ]  # fmt: skip
        cache_seconds = run_together([cache], env, [folder / "embed_images.log"])
    runs = [
        [
            *common,
            "--configuration",
            configuration,
            "--set",
            f"train.seed={args.seed}",
            "--set",
            "train.threads=1",
            "--image-features",
            str(folder / "cache"),
            "--out",
            str(folder / configuration),
            "--checkpoints",
            str(folder / "checkpoints" / configuration),
            "--live",
            str(folder / "live" / configuration),
        ]  # fmt: skip
        for configuration in CONFIGURATIONS
    ]
    run_together(runs, env, [folder / f"{configuration}.log" for configuration in CONFIGURATIONS])
    rows = []
    for configuration in CONFIGURATIONS:
        summary = json.loads((folder / configuration / "train_summary.json").read_text())
        rows.append(
            {
                "route": name,
                "configuration": configuration,
                "val_R1": round(summary["best_val_selection_R1"], 2),
                "epochs": len(summary["validation_curve"]),
                "best_epoch": summary["best_epoch"],
                "run_s": round(summary["train_seconds_this_run"], 1),
                "cache_s": round(cache_seconds, 1),
                "trainable": summary["trainable_parameters"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routes", nargs="+", choices=list(ROUTES), default=list(ROUTES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--scratch", type=Path, default=None, help="working folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "study_design.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if args.isa == "avx2":
        env.update(AVX2_ENV)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="acsa-design-"))
    machine = machine_info()
    rows = []
    for name in args.routes:
        log.info("route %s", name)
        rows += route_rows(name, ROUTES[name], args, scratch, env)
    baseline = {r["configuration"]: r["run_s"] for r in rows if r["route"] == BASELINE}
    for row in rows:
        base = baseline.get(row["configuration"])
        row["x_cost"] = round(row["run_s"] / base, 3) if base else None
    for name in args.routes:
        pair = {r["configuration"]: r["val_R1"] for r in rows if r["route"] == name}
        for row in rows:
            if row["route"] == name:
                row["full_above_control"] = pair["full"] > pair["global_fair"]
    summary = {
        "benchmark": "study_design",
        "command": "python -m benchmarks.study_design " + " ".join(argv or sys.argv[1:]),
        "machine": machine,
        "kernels": kernels_in_use(AVX2_ENV if args.isa == "avx2" else None),
        "routes": {name: ROUTES[name] for name in args.routes},
        "rows": rows,
    }
    columns = ["route", "configuration", "val_R1", "epochs", "best_epoch", "run_s", "x_cost", "cache_s",
               "trainable", "full_above_control"]  # fmt: skip
    print(format_table(rows, columns))
    print(f"machine: {machine['cpu']} {machine['cpu_flags']}; kernels {summary['kernels']}")
    print(f"load at start {machine['load_average']}, at end {machine_info()['load_average']}")
    print(f"written {write_json(args.out, summary)}")
    return summary


if __name__ == "__main__":
    main()
