"""Stage `train`: prepared data + frozen text features -> a trained ACSA model.

Inputs:  params.yaml (image, model, loss, train, text; an --ablation applies its overrides),
         PREPARED (default data/prepared), FEATURES (default data/text_features/features.safetensors).
Outputs: OUT/model.safetensors   the best epoch's weights on the validation split (config stored as JSON)
         OUT/train_summary.json  best epoch, steps, time
         CHECKPOINTS/            per-epoch checkpoints while training: a run that was killed, or stopped by a
                                 non-finite loss, continues from them when the same command runs again; a
                                 finished run empties the folder, so the next run trains afresh
         LIVE/                   DVCLive metrics.json (last epoch) and plots/ (per-epoch curves)

Several GPUs or machines: `torchrun --nproc_per_node N -m acsa.train ...` (README, Multi-GPU); the loop itself
is acsa.training.loop.
Exit status: 0 done; 2 bad input or configuration; 3 a NaN or infinite loss stopped training (one line each).
"""

from __future__ import annotations

import logging
import sys

from acsa import paths
from acsa.cli import add_path, params_from_args, run_stage, stage_parser
from acsa.storage.files import atomic_output_dir, write_json
from acsa.training import distributed
from acsa.training.loop import TrainPaths, fit
from acsa.training.resume import CheckpointFolder

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--features", paths.FEATURES, "the embed_text stage's features")
    add_path(parser, "--out", paths.MODEL, "output folder")
    add_path(parser, "--checkpoints", None, "resume checkpoints (default: checkpoints/<OUT name>)")
    add_path(parser, "--live", None, "DVCLive folder (default: dvclive/<OUT name>)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    nproc = params.train.nproc_per_node
    if nproc > 1 and not distributed.launched():
        sys.exit(distributed.launch(nproc, "acsa.train", sys.argv[1:] if argv is None else list(argv)))
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


if __name__ == "__main__":
    run_stage(main)
