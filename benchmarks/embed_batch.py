"""The frozen backbone's throughput (the embed_images stage's loop) by images per forward and grad mode.

    python -m benchmarks.embed_batch [--split val] [--batches 32 64 128 256] [--isa native|avx2]
        [--prepared data/prepared] [--set section.key=value ...] [--out benchmarks/results/embed_batch.json]

Runs acsa.model.backbone_cache.backbone_outputs_of, as the embed_images stage does (params.yaml's `image`
section, its pretrained weights, all cores), over one prepared split's images (run `dvc repro prepare`
first) at each batch size, once under torch.no_grad and once under torch.inference_mode (the stage's), the
settings interleaved so that load drifts fall on all alike; prints images per second. `--isa avx2` reruns
itself with ATen's, oneDNN's and MKL's AVX2 kernels (an AVX2-only CPU's figures on an AVX-512 machine).
The figures chose the stage's batch size (BENCHMARKS.md, k).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from acsa import paths
from acsa.config.loading import load_params
from acsa.data.prepared import image_table, load_prepared
from acsa.model.backbone_cache import backbone_outputs_of
from acsa.model.image_encoder import ImageEncoder
from acsa.runtime import set_threads
from benchmarks.common import AVX2_ENV, RESULTS, format_table, kernels_in_use, machine_info, write_json

MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def throughput(encoder, images, cfg, batch: int, mode: str) -> float:
    """Images per second of one pass over `images` (one view) at `batch` images per forward."""
    loop = backbone_outputs_of.__wrapped__  # the stage's loop without its own inference_mode
    started = time.perf_counter()
    with MODES[mode]():
        loop(encoder, images, 1, cfg, torch.device("cpu"), batch_size=batch)
    return len(images) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", default="val", choices=paths.SPLITS)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a params override")
    parser.add_argument("--prepared", type=Path, default=paths.PREPARED, help="the prepare stage's output")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--out", type=Path, default=RESULTS / "embed_batch.json")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.isa == "avx2" and os.environ.get("ATEN_CPU_CAPABILITY") != AVX2_ENV["ATEN_CPU_CAPABILITY"]:
        env = {**os.environ, **AVX2_ENV}
        raise SystemExit(subprocess.call([sys.executable, "-m", "benchmarks.embed_batch", *argv], env=env))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = load_params(args.params, overrides=args.set)
    cfg = params.image
    set_threads(0)
    torch.manual_seed(0)
    encoder = ImageEncoder(cfg, params.model.embed_dim, params.model.dropout).eval()
    images = image_table(load_prepared(args.prepared), args.split, cfg)
    machine = machine_info()
    throughput(encoder, images, cfg, args.batches[0], "inference_mode")  # warm-up: weights, allocator
    rows = []
    for batch in args.batches:
        for mode in MODES:
            rate = throughput(encoder, images, cfg, batch, mode)
            rows.append({"batch": batch, "mode": mode, "images_per_s": round(rate, 1)})
    summary = {
        "benchmark": "embed_batch",
        "command": "python -m benchmarks.embed_batch " + " ".join(argv),
        "images": len(images),
        "input": [cfg.height, cfg.width],
        "backbone": cfg.backbone,
        "threads": torch.get_num_threads(),
        "kernels": kernels_in_use(AVX2_ENV if args.isa == "avx2" else None),
        "machine_at_start": machine,
        "machine_at_end": machine_info(),
        "rows": rows,
    }
    print(format_table(rows, ["batch", "mode", "images_per_s"]))
    print(f"machine: {machine['cpu']} {machine['cpu_flags']}; kernels {summary['kernels']}")
    print(f"load at start {machine['load_average']}, at end {summary['machine_at_end']['load_average']}")
    print(f"written {write_json(args.out, summary)}")
    return summary


if __name__ == "__main__":
    main()
