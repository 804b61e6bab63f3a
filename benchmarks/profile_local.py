"""torch.profiler breakdown of the local similarity (exact and re-rank) on part of the CUHK-size problem.

    python -m benchmarks.profile_local [--captions 256] [--images 1024] [--k 128] [--threads 2]
        [--implementation FILE]

`--implementation` picks the version of the cross-attention: `current` (acsa/model/cross_attention.py) or any
file (e.g. the simpler version before the optimisation:
`git show 26dfcfe:acsa/cross_attention.py > /tmp/before.py`) whose AsymmetricCrossAttention takes the same
constructor and state dict. With --threads 1 every operator runs in the main thread and is recorded (with
more, the current version runs its blocks on worker threads, which the profiler does not follow).
Prints the operators by self time: what the time goes to (products vs. passes over memory vs. copies).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from acsa.runtime import set_threads
from benchmarks.common import IMPLEMENTATION_HELP, cross_attention_module, machine_info
from benchmarks.problems import make_problem, tied_cross_attention


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captions", type=int, default=256)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15, help="operators shown")
    p.add_argument("--implementation", default="current", help=IMPLEMENTATION_HELP)
    args = p.parse_args(argv)
    set_threads(args.threads)
    implementation = cross_attention_module(args.implementation)
    problem = make_problem(args.images, args.captions, max(1, args.images // 3), dim=args.dim)
    reference = tied_cross_attention(args.dim, implementation="current")
    module = implementation.AsymmetricCrossAttention(args.dim).eval()
    module.load_state_dict(reference.state_dict())
    print(f"{args.implementation}; {machine_info()}")
    with torch.no_grad():
        images = module.project_images(problem.image_tokens)
        phrases = module.project_phrases(problem.phrase_tokens, problem.phrase_mask)
        similarity = F.normalize(problem.text_global, dim=-1) @ F.normalize(problem.image_global, dim=-1).T
        candidates = similarity.topk(min(args.k, args.images), dim=1).indices
        runs = {
            "exact": lambda: module.score_pairwise(images, phrases),
            f"re-rank top-{args.k}": lambda: module.score_candidates(images, phrases, candidates),
        }
        for name, run in runs.items():
            run()  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run()
            print(f"\n{name}: {args.captions} captions x {args.images} images")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
