"""Stage `train`: prepared data + frozen text features -> a trained ACSA model.

Inputs:  params.yaml (image, model, loss, train, text, evaluate; --configuration NAME applies the overrides of
         study.configurations.NAME), PREPARED (default data/prepared: its train and val folders only, never
         the test split), FEATURES (default data/text_features: train.safetensors and val.safetensors).
Outputs: OUT/model.safetensors   the weights of the epoch with the best validation R@1, with the configuration
                                 and what validation chose (epoch, fusion weight and its curve, metrics)
         OUT/train_summary.json  the same choices, steps, time
         CHECKPOINTS/            per-epoch checkpoints while training: a run that was killed, or stopped by a
                                 non-finite loss, continues from them when the same command runs again; a
                                 finished run empties the folder, so the next run trains afresh
         LIVE/                   DVCLive metrics.json (last epoch) and plots/ (per-epoch curves)

With --study NAME, the runs of study configuration NAME are trained side by side, one per seed of
study.seeds (except the main model's own run, models/main, when NAME is study.main), each as
`python -m acsa.train --configuration NAME --set train.seed=S ...` with its share of the CPU threads, into
OUT/seed-S (checkpoints/study/NAME/seed-S, dvclive/study/NAME/seed-S; their output in logs/).

Several GPUs or machines: `torchrun --nproc_per_node N -m acsa.train ...` (README, Multi-GPU); the loop itself
is acsa.training.loop.
Exit status: 0 done; 2 bad input or configuration; 3 a NaN or infinite loss stopped training (one line each).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from acsa import paths
from acsa.cli import add_path, add_study_option, params_from_args, run_stage, stage_parser
from acsa.config.sections import Params
from acsa.config.study import load_study
from acsa.storage.files import atomic_output_dir, write_json
from acsa.training import distributed
from acsa.training.loop import TrainPaths, fit
from acsa.training.resume import CheckpointFolder
from acsa.training.runs import Run, run_side_by_side, threads_per_run

log = logging.getLogger(__name__)


def train_one(params: Params, args: argparse.Namespace) -> None:
    train_paths = TrainPaths(
        prepared=args.prepared,
        features=args.features,
        checkpoints=args.checkpoints or paths.checkpoints_for(args.out),
        live=args.live or paths.live_for(args.out),
    )
    with distributed.process_group(params.train.device) as (ctx, device):
        model, summary = fit(params, train_paths, ctx, device)
        if not ctx.is_main:  # rank 0 writes every output
            return
        with atomic_output_dir(args.out) as work:
            model.save(work / paths.MODEL_FILE, summary)
            write_json(work / "train_summary.json", summary)
        # Checkpoints exist only to continue an interrupted run. The folder itself stays: it is a DVC output.
        CheckpointFolder(train_paths.checkpoints).clear(lock=True)
        log.info("trained model -> %s: %s", args.out, summary)


def train_study(params: Params, args: argparse.Namespace) -> None:
    """The runs of study configuration `args.study`, side by side, one per seed."""
    study = load_study(args.params)
    seeds = study.seeds_of(args.study, params.train.seed)
    parallel = params.train.parallel_runs or len(seeds) or 1
    threads = params.train.threads or threads_per_run(min(parallel, len(seeds) or 1))
    checkpoints = args.checkpoints or paths.checkpoints_for(args.out)
    live = args.live or paths.live_for(args.out)
    runs = []
    for seed in seeds:
        out = paths.seed_dir(args.out, seed)
        argv = [
            "--params", str(args.params),
            "--prepared", str(args.prepared),
            "--features", str(args.features),
            "--configuration", args.study,
            *(arg for override in args.overrides for arg in ("--set", override)),
            "--set", f"train.seed={seed}",
            "--set", f"train.threads={threads}",
            "--out", str(out),
            "--checkpoints", str(paths.seed_dir(checkpoints, seed)),
            "--live", str(paths.seed_dir(live, seed)),
        ]  # fmt: skip
        log_file = paths.LOGS / paths.run_name(out).with_suffix(".log")
        runs.append(Run(f"{args.study} seed {seed}", argv, log_file))
    Path(args.out).mkdir(parents=True, exist_ok=True)  # a DVC output, even with no run to train
    log.info(
        "training %s: seeds %s, %d at a time, %d thread(s) each", args.study, list(seeds), parallel, threads
    )
    run_side_by_side("acsa.train", runs, parallel)
    for seed in seeds:
        log.info("%s", paths.seed_dir(args.out, seed))


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--features", paths.TEXT_FEATURES, "the embed_text stage's output")
    add_path(parser, "--out", paths.MODEL, "output folder")
    add_path(parser, "--checkpoints", None, "resume checkpoints (default: checkpoints/<run>)")
    add_path(parser, "--live", None, "DVCLive folder (default: dvclive/<run>)")
    add_study_option(parser, "train every seed of study configuration NAME into OUT/seed-S")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    if args.study is not None:
        train_study(params, args)
        return
    nproc = params.train.nproc_per_node
    if nproc > 1 and not distributed.launched():
        sys.exit(distributed.launch(nproc, "acsa.train", sys.argv[1:] if argv is None else list(argv)))
    train_one(params, args)


if __name__ == "__main__":
    run_stage(main)
