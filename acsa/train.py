"""Stage `train`: prepared data + frozen text features -> a trained ACSA model.

Inputs:  params.yaml (image, model, loss, train, text, evaluate; --configuration NAME applies the overrides of
         study.configurations.NAME), PREPARED (default data/prepared: its train and val folders only, never
         the test split), FEATURES (default data/text_features: train.safetensors and val.safetensors),
         IMAGE_FEATURES (default data/image_features: with image.frozen, the backbone's cached outputs of the
         train and val images; their pixels otherwise).
Outputs: OUT/model.safetensors   the weights of the epoch with the best validation R@1, with the configuration
                                 and what validation chose (epoch, fusion weight and its curve, metrics)
         OUT/train_summary.json  the same choices, the validation curve, trainable parameters, steps, time
         CHECKPOINTS/            per-epoch checkpoints while training: a run that was killed, or stopped by a
                                 non-finite loss, continues from them when the same command runs again; a
                                 finished run empties the folder, so the next run trains afresh
         LIVE/                   DVCLive metrics.json (last epoch) and plots/ (per-epoch curves)

With --study NAME, every run of study configuration NAME (one per seed of study.seeds, except the main
model's own run, models/main, when NAME is study.main) is trained into OUT/NAME/seed-S; with
--all-configurations, every run of every configuration of study.configurations. The runs share one pool of
train.parallel_runs processes (0: as many as the cores hold at train.threads threads each), each run exactly
`python -m acsa.train --configuration NAME --set train.seed=S ...` (checkpoints/study/NAME/seed-S,
dvclive/study/NAME/seed-S; their output in logs/study/NAME/seed-S.log).

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
from acsa.config.loading import load_params
from acsa.config.sections import Params
from acsa.config.study import load_study
from acsa.storage.files import atomic_output_dir, read_json, write_json
from acsa.training import distributed
from acsa.training.loop import TrainPaths, fit
from acsa.training.plans import PLANS, Planned, plan, study_plan
from acsa.training.resume import CheckpointFolder
from acsa.training.runs import Run, run_pool, runs_at_once

log = logging.getLogger(__name__)


def train_one(params: Params, args: argparse.Namespace) -> None:
    train_paths = TrainPaths(
        prepared=args.prepared,
        features=args.features,
        checkpoints=args.checkpoints or paths.checkpoints_for(args.out),
        live=args.live or paths.live_for(args.out),
        image_features=args.image_features,
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


def run_cost(params: Params) -> float:
    """A run's length relative to the others, for the pool's order (longest first): epochs, times the
    local alignment's share of a step (both directions cost about twice one; none, about a third)."""
    per_epoch = 0.35 if not params.model.use_local else 2.0 if params.model.attention == "both" else 1.0
    return params.train.epochs * per_epoch


def pool_runs(args: argparse.Namespace, planned: list[Planned]) -> list[Run]:
    """Planned runs as the pool runs them, each exactly `python -m acsa.train --configuration NAME --set
    train.seed=S ...` into OUT/<its folder>."""
    checkpoints = args.checkpoints or paths.checkpoints_for(args.out)
    live = args.live or paths.live_for(args.out)
    runs = []
    for run in planned:
        overrides = [*args.overrides, *run.overrides, f"train.seed={run.seed}"]
        configured = load_params(args.params, configuration=run.configuration, overrides=overrides)
        argv = [
            "--params", str(args.params),
            "--prepared", str(args.prepared),
            "--features", str(args.features),
            "--image-features", str(args.image_features),
            "--configuration", run.configuration,
            *(arg for override in overrides for arg in ("--set", override)),
            "--out", str(args.out / run.folder),
            "--checkpoints", str(checkpoints / run.folder),
            "--live", str(live / run.folder),
        ]  # fmt: skip
        log_file = paths.log_file(args.out / run.folder)
        runs.append(Run(f"{run.configuration} {run.folder.name}", argv, log_file, run_cost(configured)))
    return runs


def train_plan(params: Params, args: argparse.Namespace, planned: list[Planned]) -> None:
    """The planned runs in one pool of train.parallel_runs processes of train.threads threads each; with
    --record, every run's training summary (configuration, seed, overrides, validation curve) gathered."""
    runs = pool_runs(args, planned)
    threads = params.train.threads
    parallel = params.train.parallel_runs or (runs_at_once(threads) if threads else 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)  # a DVC output, even with no run to train
    log.info("training %d runs, %d at a time, %s thread(s) each", len(runs), parallel, threads or "all")
    run_pool("acsa.train", runs, parallel)
    if args.record is not None:
        records = [
            {
                "configuration": run.configuration,
                "seed": run.seed,
                "overrides": list(run.overrides),
                **read_json(args.out / run.folder / "train_summary.json"),
            }
            for run in planned
        ]
        write_json(args.record, records)
        log.info("%d runs' training summaries -> %s", len(records), args.record)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--features", paths.TEXT_FEATURES, "the embed_text stage's output")
    add_path(parser, "--image-features", paths.IMAGE_FEATURES, "the embed_images stage's output")
    add_path(parser, "--out", paths.MODEL, "output folder")
    add_path(parser, "--checkpoints", None, "resume checkpoints (default: checkpoints/<run>)")
    add_path(parser, "--live", None, "DVCLive folder (default: dvclive/<run>)")
    add_study_option(parser, "train every seed of study configuration NAME into OUT/NAME/seed-S")
    parser.add_argument(
        "--plan",
        choices=PLANS,
        help="train a plan of runs of params.yaml `study` in one pool into OUT: `study` (every seed of every "
        "configuration but the main model's run), `convergence` (study.convergence's runs at the longer "
        "budget), `sweep` (every configuration at every learning rate of study.sweep), `end_to_end` (the "
        "optional confirmation)",
    )
    add_path(parser, "--record", None, "with --plan: write every run's training summary here (JSON)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    if args.plan is not None or args.study is not None:
        study = load_study(args.params)
        if args.plan is not None:
            planned = plan(args.plan, study, args.params, args.overrides, params.train.seed)
        else:
            planned = study_plan(study, [args.study], params.train.seed)
        train_plan(params, args, planned)
        return
    nproc = params.train.nproc_per_node
    if nproc > 1 and not distributed.launched():
        sys.exit(distributed.launch(nproc, "acsa.train", sys.argv[1:] if argv is None else list(argv)))
    train_one(params, args)


if __name__ == "__main__":
    run_stage(main)
