"""The reverse local score (phrases query image tokens, `model.attention: phrase_queries`) beside the forward
one, exact for every pair and at each caption's global top-k, on the same problem and projections.

    python -m benchmarks.reverse_similarity [--captions 1200 --images 600 --phrases 8 --dim 256] [--k 128]
        [--repeats 3] [--threads 2] [--out benchmarks/results/reverse_similarity.json]

The default size is the synthetic benchmark's test split (1,200 captions x 600 images, 7 image tokens,
8 phrase slots, d = 256); `--captions 6156 --images 3074 --ids 1000 --phrases 10 --dim 768` is CUHK-PEDES'.
Features are structured random ones (benchmarks/problems.py) scored by a random cross-attention with tied
projections. Each mode runs `--repeats` times in this process; the table gives the best wall time, its CPU
time (all threads) and the ratio to the forward score of the same kind. Both directions need the same two
products, 4 x pairs x R x P x d FLOPs; the reverse adds a per-image R x R Gram quadratic form.

Checks: the reverse kernel against `AsymmetricCrossAttention.reverse_similarity` (the paper form) on the
first `--check` captions x `--check` images, and the reverse top-k scores against the exact ones at the
candidates.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from acsa.runtime import set_threads
from benchmarks.common import RESULTS, cpu_seconds, format_table, machine_info, timed, write_json
from benchmarks.local_similarity import local_flops
from benchmarks.problems import make_problem, tied_cross_attention

SYNTHETIC_TEST = {"captions": 1200, "images": 600, "ids": 150}
SIZE_KEYS = ("captions", "images", "ids", "tokens", "phrases", "dim", "k")
COLUMNS = ["mode", "seconds", "cpu s", "x forward", "GFLOP", "max diff"]


def best_of(fn, repeats: int) -> tuple[Any, float, float]:
    """(value, best wall seconds, CPU seconds of that run) over `repeats` runs."""
    runs = []
    for _ in range(repeats):
        start = cpu_seconds()
        value, seconds = timed(fn)
        runs.append((seconds, cpu_seconds() - start, value))
    seconds, cpu, value = min(runs, key=lambda run: run[0])
    return value, seconds, cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args.threads)
    problem = make_problem(args.images, args.captions, args.ids, args.tokens, args.phrases, args.dim)
    module = tied_cross_attention(args.dim)
    start_machine = machine_info()
    rows = []
    with torch.no_grad():
        images = module.project_images(problem.image_tokens)
        phrases = module.project_phrases(problem.phrase_tokens, problem.phrase_mask)
        global_sim = F.normalize(problem.text_global, dim=-1) @ F.normalize(problem.image_global, dim=-1).T
        k = min(args.k, args.images)
        candidates = global_sim.topk(k, dim=1).indices
        exact = {}
        for reverse in (False, True):
            name = "reverse" if reverse else "forward"
            scores, seconds, cpu = best_of(
                lambda r=reverse: module.score_pairwise(images, phrases, r), args.repeats
            )
            exact[name] = scores
            rows.append({"mode": f"{name} exact", "seconds": seconds, "cpu s": cpu, "pairs": scores.numel()})
            top, seconds, cpu = best_of(
                lambda r=reverse: module.score_candidates(images, phrases, candidates, r), args.repeats
            )
            at_candidates = scores.gather(1, candidates)
            row = {"mode": f"{name} top-{k}", "seconds": seconds, "cpu s": cpu, "pairs": top.numel()}
            rows.append({**row, "max diff": float((top - at_candidates).abs().max())})
        n = min(args.check, args.captions, args.images)
        reference = module.reverse_similarity(
            problem.image_tokens[:n], problem.phrase_tokens[:n], problem.phrase_mask[:n]
        )
    by_mode = {row["mode"]: row for row in rows}
    by_mode["reverse exact"]["max diff"] = float((exact["reverse"][:n, :n] - reference).abs().max())
    for row in rows:
        partner = by_mode[row["mode"].replace("reverse", "forward")]
        row["x forward"] = row["seconds"] / partner["seconds"]
        row["GFLOP"] = local_flops(row["pairs"], args.tokens, args.phrases, args.dim) / 1e9
    return {
        "benchmark": "reverse_similarity",
        "sizes": {key: getattr(args, key) for key in SIZE_KEYS},
        "threads": args.threads,
        "machine_at_start": start_machine,
        "machine_at_end": machine_info(),
        "rows": rows,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captions", type=int, default=SYNTHETIC_TEST["captions"])
    p.add_argument("--images", type=int, default=SYNTHETIC_TEST["images"])
    p.add_argument("--ids", type=int, default=SYNTHETIC_TEST["ids"])
    p.add_argument("--tokens", type=int, default=7)
    p.add_argument("--phrases", type=int, default=8)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=128, help="candidates per caption of the top-k modes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check", type=int, default=64, help="captions and images checked against the paper form")
    p.add_argument("--out", type=Path, default=RESULTS / "reverse_similarity.json")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    summary = run(args)
    print(format_table(summary["rows"], COLUMNS))
    print(f"machine: {summary['machine_at_start']}; load at end {summary['machine_at_end']['load_average']}")
    print(f"written {write_json(args.out, summary)}")
    return summary


if __name__ == "__main__":
    main()
