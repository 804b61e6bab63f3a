"""Local similarity at CUHK-PEDES test size: exact batched mode, a per-caption loop, global top-k re-rank.

    python -m benchmarks.local_similarity [--captions 6156 --images 3074 --dim 768] [--ks 32 64 128]
        [--loop-captions 48] [--threads 2] [--unstructured] [--out benchmarks/results/local_similarity.json]

Features are structured random ones (benchmarks/problems.py: identities with attributes, 7 image tokens,
up to 10 phrases), scored by a randomly initialised cross-attention with tied projections. Each mode runs in
its own process, so that its peak memory (resident, above the level before it starts) is its own:

- loop:    what the released code computes: one caption at a time, tensors over all images (attention of
           every image token over the caption's phrases, context vectors [I, R, d], cosines, mean). Timed on
           the first --loop-captions captions and extrapolated linearly to all.
- exact:   AsymmetricCrossAttention.score_pairwise, every pair.
- top-k:   global similarity, each caption's global top-k, AsymmetricCrossAttention.score_candidates.

Times exclude the Q/K/V projections (computed once per gallery and query set, shared by all modes; their
time is reported apart). FLOPs count the two products of the local score, 4 x pairs x R x P x d (the
Gram, softmax and reduction terms add under 2%), plus the global similarity's 2 x T x I x d for top-k.

The limit is FLOPs / the cores' fp32 matmul rate: threads x one core's rate, measured in the same process
just before and after the mode (best of five single-threaded 2048^3 products: one thread is not held up
by a busy partner core, so this is a stable figure for the hardware). On cores shared with other jobs the
process may get less than its cores: "cores used" is its CPU time / wall time, and "x limit (CPU time)"
the ratio had it had them to itself (CPU seconds / threads / limit; meaningful without spin-waiting
threads, i.e. for exact and top-k, whose worker threads never wait on each other). For top-k the memory
limit is also given: each pair copies 2 x R x d floats of gallery tokens, at the scattered-row copy rate
measured in the same process.

Checks: max |difference| of each mode's local scores to the loop's (on the loop's captions) and of the
top-k scores to the exact ones at the candidates; R@1/5/10 of the fused score (global + weight x local) of
each mode, which must agree (top-k with exact on all captions, exact with the loop on the loop's).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from acsa.kernels.local_similarity import EPS, ProjectedImages, ProjectedPhrases
from acsa.model.cross_attention import AsymmetricCrossAttention
from acsa.runtime import set_threads
from acsa.scoring.metrics import rank_metrics
from acsa.scoring.retrieval import Scores
from benchmarks.common import (
    IMPLEMENTATION_HELP,
    RESULTS,
    add_worker_options,
    benchmark_main,
    core_rate,
    cpu_seconds,
    gather_rate,
    machine_info,
    matmul_rate,
    peak_memory,
    run_worker,
    timed,
)
from benchmarks.problems import CUHK_TEST, make_problem, tied_cross_attention

log = logging.getLogger(__name__)
RANKS = ("R1", "R5", "R10")


def loop_scores(
    module: AsymmetricCrossAttention, images: ProjectedImages, phrases: ProjectedPhrases, rows: range
) -> torch.Tensor:
    """The released code's way: per caption t, S(i, t) for all images i at once -> [len(rows), I]."""
    attend = getattr(module, "attention", None) or module._attention  # older versions: _attention
    out = []
    for t in rows:
        logits = torch.einsum("ird,pd->irp", images.query, phrases.key[t])  # [I, R, P]
        attn = attend(logits, phrases.mask[t][None, None, :])  # [I, R, P]
        context = attn @ phrases.value[t]  # [I, R, d]
        out.append(F.cosine_similarity(images.value, context, dim=-1, eps=EPS).mean(dim=-1))  # [I]
    return torch.stack(out)


def local_flops(pairs: int, tokens: int, phrases: int, dim: int) -> float:
    """The two products of the local score: Q.K and V_img.V_txt for every pair."""
    return 4.0 * pairs * tokens * phrases * dim


def _ranks(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(metrics[k], 4) for k in RANKS}


def time_rank_metrics(similarity: torch.Tensor, query_ids, gallery_ids) -> dict[str, Any]:
    """Seconds of one rank_metrics call (R@K, mAP, mINP of the whole matrix; the evaluate stage calls it
    once per fusion weight and kind)."""
    _, seconds = timed(lambda: rank_metrics(similarity, query_ids, gallery_ids))
    return {"seconds": seconds}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One mode, in its own process: time, peak memory, reference rates, metrics, check arrays."""
    set_threads(args.threads)
    problem = make_problem(
        args.images,
        args.captions,
        args.ids,
        args.tokens,
        args.phrases,
        args.dim,
        structured=not args.unstructured,
    )
    module = tied_cross_attention(args.dim, implementation=args.implementation)
    sizes = problem.sizes
    num_texts, num_images = sizes["captions"], sizes["images"]
    check = Path(args.check_dir)
    result: dict[str, Any] = {"mode": args.mode}
    with torch.no_grad():
        (images, phrases), projection_s = timed(
            lambda: (
                module.project_images(problem.image_tokens),
                module.project_phrases(problem.phrase_tokens, problem.phrase_mask),
            )
        )
        text_global = F.normalize(problem.text_global, dim=-1)
        image_global = F.normalize(problem.image_global, dim=-1)
        loop_rows = range(min(args.loop_captions, num_texts))
        rate_before = core_rate(args.rate_size)
        cpu_start = cpu_seconds()
        with peak_memory() as memory:
            if args.mode == "loop":
                local, seconds = timed(lambda: loop_scores(module, images, phrases, loop_rows))
                global_s, pairs = 0.0, num_texts * num_images  # FLOPs of all captions: time is extrapolated
            elif args.mode == "exact":
                local, seconds = timed(lambda: module.score_pairwise(images, phrases))
                global_s, pairs = 0.0, num_texts * num_images
            else:
                k = min(int(args.mode.split("-")[1]), num_images)
                global_sim, global_s = timed(lambda: text_global @ image_global.T)
                candidates, topk_s = timed(lambda: global_sim.topk(k, dim=1).indices)
                local, seconds = timed(lambda: module.score_candidates(images, phrases, candidates))
                global_s += topk_s
                pairs = num_texts * k
        cpu_s = cpu_seconds() - cpu_start
        rate_after = core_rate(args.rate_size)
        global_sim = text_global @ image_global.T
        weight = args.weight
        if args.mode == "loop":
            fused = global_sim[: len(loop_rows)] + weight * local
            result["loop_metrics"] = _ranks(
                rank_metrics(fused, problem.caption_ids[: len(loop_rows)], problem.image_ids)
            )
            result["extrapolated_s"] = seconds * num_texts / max(1, len(loop_rows))
            torch.save(local, check / "loop.pt")
        elif args.mode == "exact":
            scores = Scores(global_sim, local, None)
            result["metrics"] = _ranks(
                rank_metrics(scores.fused(weight), problem.caption_ids, problem.image_ids)
            )
            result["loop_metrics"] = _ranks(
                rank_metrics(
                    scores.fused(weight)[: len(loop_rows)],
                    problem.caption_ids[: len(loop_rows)],
                    problem.image_ids,
                )
            )
            result["global_metrics"] = _ranks(
                rank_metrics(global_sim, problem.caption_ids, problem.image_ids)
            )
            fused = scores.fused(weight)
            result["rank_metrics_s"] = time_rank_metrics(fused, problem.caption_ids, problem.image_ids)
            torch.save(local, check / "exact.pt")
        else:
            scores = Scores(global_sim, local, candidates)
            result["metrics"] = _ranks(
                rank_metrics(scores.fused(weight), problem.caption_ids, problem.image_ids)
            )
            torch.save({"local": local, "candidates": candidates}, check / f"{args.mode}.pt")
            result["gather_bytes_per_s"] = gather_rate(
                num_images * args.tokens, args.dim, args.tokens * k, workers=max(1, args.threads)
            )
            result["gather_bytes"] = 2.0 * pairs * args.tokens * args.dim * 4
    flops = local_flops(pairs, args.tokens, args.phrases, args.dim)
    if args.mode.startswith("top"):
        flops += 2.0 * num_texts * num_images * args.dim
    result.update(
        seconds=seconds,
        global_topk_s=global_s,
        cpu_s=cpu_s,
        projection_s=projection_s,
        pairs=pairs,
        flops=flops,
        core_flops_per_s=[rate_before, rate_after],
        matmul_flops_per_s_all_threads=matmul_rate(args.rate_size),
        peak_mb=memory["peak_mb"],
        machine=machine_info(),
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every mode in its own process; then the comparisons and the table."""
    modes = ["loop", "exact"] + [f"top-{k}" for k in args.ks]
    shared = [
        f"--{name}={getattr(args, name.replace('-', '_'))}"
        for name in (
            "captions",
            "images",
            "ids",
            "tokens",
            "phrases",
            "dim",
            "loop-captions",
            "threads",
            "weight",
            "rate-size",
            "implementation",
        )
    ] + (["--unstructured"] if args.unstructured else [])
    start_machine = machine_info()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as check_dir:
        for mode in modes:
            log.info("mode %s ...", mode)
            worker_args = [*shared, f"--mode={mode}", f"--check-dir={check_dir}"]
            results[mode] = run_worker("benchmarks.local_similarity", worker_args, args.in_process)
        check = Path(check_dir)
        loop = torch.load(check / "loop.pt")
        exact = torch.load(check / "exact.pt")
        n = loop.shape[0]
        results["exact"]["max_abs_diff_vs_loop"] = float((exact[:n] - loop).abs().max())
        for mode in modes[2:]:
            saved = torch.load(check / f"{mode}.pt")
            at = saved["candidates"]
            results[mode]["max_abs_diff_vs_loop"] = float(
                (saved["local"][:n] - loop.gather(1, at[:n])).abs().max()
            )
            results[mode]["max_abs_diff_vs_exact"] = float((saved["local"] - exact.gather(1, at)).abs().max())
    rows = []
    exact_seconds = results["exact"]["seconds"]
    loop_seconds = results["loop"]["extrapolated_s"]
    for mode in modes:
        r = results[mode]
        cores = max(1, args.threads)
        rate = cores * max(r["core_flops_per_s"])
        total = r["seconds"] + r["global_topk_s"]
        seconds = r.get("extrapolated_s", total)
        limit = r["flops"] / rate
        cpu_s = r["cpu_s"] * seconds / total  # the loop's is extrapolated like its time
        row = {
            "mode": mode,
            "seconds": seconds,
            "peak MB": r["peak_mb"],
            "TFLOP": r["flops"] / 1e12,
            "limit GFLOP/s": rate / 1e9,
            "limit s": limit,
            "x limit": seconds / limit,
            "cores used": cpu_s / seconds,
            "x limit (CPU time)": cpu_s / cores / limit,
            "vs loop": loop_seconds / seconds,
            "max diff vs loop": r.get("max_abs_diff_vs_loop"),
        }
        if mode.startswith("top"):
            memory_limit = r["gather_bytes"] / r["gather_bytes_per_s"]
            row["memory limit s"] = memory_limit
            row["x max(limits)"] = seconds / max(limit, memory_limit)
            row["max diff vs exact"] = r["max_abs_diff_vs_exact"]
            row["R@1/5/10"] = "/".join(f"{r['metrics'][k]:.2f}" for k in RANKS)
            row["= exact"] = r["metrics"] == results["exact"]["metrics"]
            row["goal <=1.5x"] = seconds / limit <= 1.5
        elif mode == "exact":
            row["R@1/5/10"] = "/".join(f"{r['metrics'][k]:.2f}" for k in RANKS)
            row["= loop (its captions)"] = r["loop_metrics"] == results["loop"]["loop_metrics"]
            row["goal <=1.5x"] = seconds / limit <= 1.5
        else:
            row["R@1/5/10"] = "/".join(f"{r['loop_metrics'][k]:.2f}" for k in RANKS) + f" ({n} captions)"
        rows.append(row)
    summary = {
        "benchmark": "local_similarity",
        "command": "python -m benchmarks.local_similarity " + " ".join(shared),
        "sizes": {
            "captions": args.captions,
            "images": args.images,
            "ids": args.ids,
            "tokens": args.tokens,
            "phrases": args.phrases,
            "dim": args.dim,
            "loop_captions_timed": n,
            "structured": not args.unstructured,
            "implementation": args.implementation,
            "fusion_weight": args.weight,
        },
        "machine_at_start": start_machine,
        "machine_at_end": machine_info(),
        "exact_speedup_over_loop": loop_seconds / exact_seconds,
        "rank_metrics_s": results["exact"]["rank_metrics_s"],
        "projection_s": results["exact"]["projection_s"],
        "global_metrics": results["exact"]["global_metrics"],
        "rows": rows,
        "modes": results,
    }
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captions", type=int, default=CUHK_TEST["captions"])
    p.add_argument("--images", type=int, default=CUHK_TEST["images"])
    p.add_argument("--ids", type=int, default=CUHK_TEST["ids"])
    p.add_argument("--tokens", type=int, default=7)
    p.add_argument("--phrases", type=int, default=10)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--ks", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--loop-captions", type=int, default=48, help="captions the loop is timed on")
    p.add_argument("--weight", type=float, default=1.0, help="fusion weight of the local score")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--implementation", default="current", help=IMPLEMENTATION_HELP)
    p.add_argument("--rate-size", type=int, default=2048, help="side of the reference matmul")
    p.add_argument("--unstructured", action="store_true", help="identities without shared attributes")
    p.add_argument("--out", type=Path, default=RESULTS / "local_similarity.json")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--check-dir", help=argparse.SUPPRESS)
    add_worker_options(p)
    return p


COLUMNS = [
    "mode",
    "seconds",
    "peak MB",
    "TFLOP",
    "limit GFLOP/s",
    "limit s",
    "x limit",
    "cores used",
    "x limit (CPU time)",
    "memory limit s",
    "x max(limits)",
    "goal <=1.5x",
    "vs loop",
    "max diff vs loop",
    "max diff vs exact",
    "R@1/5/10",
    "= exact",
    "= loop (its captions)",
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return benchmark_main(parser().parse_args(argv), worker, run, COLUMNS)


if __name__ == "__main__":
    main()
