"""Scaling of global top-k + local re-rank with the gallery size: time and peak memory, 1k to 64k images.

    python -m benchmarks.scaling [--images 1024 4096 16384 65536] [--dim 256] [--k 128]
        [--timed-captions 16384] [--threads 2] [--out benchmarks/results/scaling.json]

Two captions per image, ~3 images per identity (structured random features, benchmarks/problems.py),
7 image tokens, 10 phrases, d = 256 by default (d = 768 makes the 64k global similarity alone ~13 TFLOP,
over an hour here). Each size runs in its own process.

Nothing quadratic is ever held: the caption x image global similarity is computed `--chunk-elements` at a
time (a block of captions against all images), keeping only each caption's top-k (a running top-k over
caption blocks); the re-rank (AsymmetricCrossAttention.score_candidates) holds [T, k] scores and
cache-sized blocks. (acsa.scoring.retrieval.score builds the full [T, I] global matrix instead: 32 GB of
floats at 64k images x 128k captions; see BENCHMARKS.md for the library change.) Peak memory is the resident
memory above the stored features during global top-k + re-rank; the features themselves (projected tokens
and global vectors) are reported apart, and both must grow linearly.

Above `--timed-captions` captions, only that many (a random subset) are searched and re-ranked, against
the full gallery, and times are extrapolated linearly in the number of captions (each caption costs the
same: one row of the global product, one top-k, k re-ranked pairs); memory figures are then those of the
subset's outputs plus the full features.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from acsa.runtime import set_threads
from acsa.scoring.metrics import rank_metrics
from benchmarks.common import (
    IMPLEMENTATION_HELP,
    RESULTS,
    add_worker_options,
    benchmark_main,
    core_rate,
    cpu_seconds,
    machine_info,
    peak_memory,
    run_worker,
    timed,
)
from benchmarks.local_similarity import local_flops
from benchmarks.problems import make_problem, tied_cross_attention

log = logging.getLogger(__name__)


def chunked_topk(
    text_global: torch.Tensor, image_global: torch.Tensor, k: int, chunk_elements: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each caption's top-k images by global cosine ([T, k] values, indices), computing at most
    `chunk_elements` similarities at a time. Rows must be L2-normalised."""
    num_texts, num_images = text_global.shape[0], image_global.shape[0]
    k = min(k, num_images)
    rows = max(1, chunk_elements // num_images)
    values = text_global.new_empty(num_texts, k)
    indices = torch.empty(num_texts, k, dtype=torch.long, device=text_global.device)
    block = text_global.new_empty(min(rows, num_texts), num_images)  # reused: no page faults per block
    for start in range(0, num_texts, rows):
        part = torch.mm(text_global[start : start + rows], image_global.T, out=block[: num_texts - start])
        torch.topk(part, k, dim=1, out=(values[start : start + rows], indices[start : start + rows]))
    return values, indices


def recall_from_topk(
    ranked: torch.Tensor, query_ids: torch.Tensor, gallery_ids: torch.Tensor, ks=(1, 5, 10)
) -> dict[str, float]:
    """R@K (percent) from each query's best-first gallery indices [T, k], for each K <= k."""
    hits = gallery_ids[ranked] == query_ids[:, None]  # [T, k]
    return {f"R{K}": 100.0 * float(hits[:, :K].any(dim=1).double().mean()) for K in ks if K <= hits.shape[1]}


def _project(module, problem, rows: torch.Tensor):
    return (
        module.project_images(problem.image_tokens),
        module.project_phrases(problem.phrase_tokens[rows], problem.phrase_mask[rows]),
    )


def worker(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args.threads)
    num_images = args.images[0]
    num_texts = 2 * num_images
    timed_texts = min(num_texts, args.timed_captions)
    subset = torch.randperm(num_texts, generator=torch.Generator().manual_seed(0))[:timed_texts].sort().values
    problem = make_problem(
        num_images, num_texts, max(1, num_images // 3), dim=args.dim, caption_subset=subset
    )
    module = tied_cross_attention(args.dim, implementation=args.implementation)
    rows = torch.arange(timed_texts)  # the problem holds only the timed captions
    with torch.no_grad():
        (images, phrases), projection_s = timed(partial(_project, module, problem, rows))
        text_global = F.normalize(problem.text_global[rows], dim=-1)
        image_global = F.normalize(problem.image_global, dim=-1)
        query_ids, gallery_ids = problem.caption_ids[rows], problem.image_ids
        del problem  # raw tokens: only the projected ones are kept
        image_side = [images.query, images.value, images.value_norm, image_global]
        caption_bytes = (phrases.key[0].numel() + phrases.value[0].numel() + args.dim) * 4  # per caption
        features_mb = (
            sum(t.numel() * t.element_size() for t in image_side) + num_texts * caption_bytes
        ) / 2**20
        rate_before = core_rate(args.rate_size)
        cpu_start = cpu_seconds()
        with peak_memory() as memory:
            (values, candidates), global_s = timed(
                lambda: chunked_topk(text_global, image_global, args.k, args.chunk_elements)
            )
            local, rerank_s = timed(lambda: module.score_candidates(images, phrases, candidates))
        cpu_s = cpu_seconds() - cpu_start
        rate_after = core_rate(args.rate_size)
        fused = values + args.weight * local
        ranked = candidates.gather(1, fused.argsort(dim=1, descending=True))
        small = num_images <= 4096
        metrics = recall_from_topk(ranked, query_ids, gallery_ids)
        global_metrics = recall_from_topk(candidates, query_ids, gallery_ids)
        if small:  # cross-check the top-k R@K against the library's metric on the full ranking
            reference = rank_metrics(text_global @ image_global.T, query_ids, gallery_ids)
            for key, value in global_metrics.items():
                assert abs(value - reference[key]) < 1e-6, (key, value, reference[key])
    scale = num_texts / timed_texts
    k = candidates.shape[1]
    return {
        "images": num_images,
        "captions": num_texts,
        "timed_captions": timed_texts,
        "global_s": global_s * scale,
        "rerank_s": rerank_s * scale,
        "projection_s": projection_s,
        "global_flops": 2.0 * num_texts * num_images * args.dim,
        "rerank_flops": local_flops(num_texts * k, 7, 10, args.dim),
        "core_flops_per_s": [rate_before, rate_after],
        "cpu_s": cpu_s,
        "peak_mb": memory["peak_mb"],
        "features_mb": features_mb,
        "metrics": metrics,
        "global_metrics": global_metrics,
        "machine": machine_info(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows, results = [], []
    start = machine_info()
    for num_images in args.images:
        log.info("%d images ...", num_images)
        common = [
            f"--dim={args.dim}",
            f"--k={args.k}",
            f"--timed-captions={args.timed_captions}",
            f"--chunk-elements={args.chunk_elements}",
            f"--threads={args.threads}",
            f"--weight={args.weight}",
            f"--rate-size={args.rate_size}",
            f"--implementation={args.implementation}",
        ]
        r = run_worker("benchmarks.scaling", [f"--images={num_images}", *common], args.in_process)
        results.append(r)
        rate = max(1, args.threads) * max(r["core_flops_per_s"])
        total = r["global_s"] + r["rerank_s"]
        flops = r["global_flops"] + r["rerank_flops"]
        rows.append(
            {
                "images": r["images"],
                "captions": r["captions"],
                "timed captions": r["timed_captions"],
                "global top-k s": r["global_s"],
                "re-rank s": r["rerank_s"],
                "total s": total,
                "TFLOP": flops / 1e12,
                "x limit": total * rate / flops,
                "cores used": r["cpu_s"]
                / (r["global_s"] + r["rerank_s"])
                * r["captions"]
                / r["timed_captions"],
                "peak MB (work)": r["peak_mb"],
                "features MB": r["features_mb"],
                "features KB/image": 1024 * r["features_mb"] / r["images"],
                "R@1 global": r["global_metrics"]["R1"],
                "R@1 re-ranked": r["metrics"]["R1"],
            }
        )
    return {
        "benchmark": "scaling",
        "command": "python -m benchmarks.scaling --images "
        + " ".join(map(str, args.images))
        + f" --dim {args.dim} --k {args.k} --timed-captions {args.timed_captions} --threads {args.threads}"
        + f" --implementation {args.implementation}",
        "implementation": args.implementation,
        "machine_at_start": start,
        "machine_at_end": machine_info(),
        "rows": rows,
        "sizes": results,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--timed-captions", type=int, default=16384)
    p.add_argument("--chunk-elements", type=int, default=1 << 24, help="global similarities per block")
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--implementation", default="current", help=IMPLEMENTATION_HELP)
    p.add_argument("--rate-size", type=int, default=2048, help="side of the reference matmul")
    p.add_argument("--out", default=RESULTS / "scaling.json")
    add_worker_options(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return benchmark_main(parser().parse_args(argv), worker, run)


if __name__ == "__main__":
    main()
