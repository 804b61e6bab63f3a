"""Stage `train`: prepared data + frozen text features -> a trained ACSA model.

Inputs:  params.yaml (image, model, loss, train, text; an --ablation applies its overrides),
         PREPARED (default data/prepared), FEATURES (default data/text_features/features.safetensors).
Outputs: OUT/model.safetensors   the best epoch's weights on the validation split (config stored as JSON)
         OUT/train_summary.json  best epoch, steps, time
         CHECKPOINTS/            per-epoch checkpoints while training: a run that was killed, or stopped by a
                                 non-finite loss, continues from them when the same command runs again; a
                                 finished run empties the folder, so the next run trains afresh
         LIVE/                   DVCLive metrics.json (last epoch) and plots/ (per-epoch curves)

Several GPUs or machines: `torchrun --nproc_per_node N -m acsa.train ...` (README, Multi-GPU).
Exit status: 0 done; 2 bad input or configuration; 3 a NaN or infinite loss stopped training (one line each).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from acsa import distributed
from acsa.checkpoint import CheckpointFolder, save_checkpoint
from acsa.cli import params_from_args, run_stage, stage_parser
from acsa.config import params_to_dict
from acsa.engine import NonFiniteLossError, TrainPaths, fit
from acsa.io import atomic_output_dir, write_json

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--features", type=Path, default=Path("data/text_features/features.safetensors"))
    parser.add_argument("--out", type=Path, default=Path("models/main"))
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: checkpoints/<OUT name>")
    parser.add_argument("--live", type=Path, default=None, help="default: dvclive/<OUT name>")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    nproc = params.train.nproc_per_node
    if nproc > 1 and not distributed.launched():
        sys.exit(distributed.launch(nproc, "acsa.train", sys.argv[1:] if argv is None else list(argv)))
    paths = TrainPaths(
        prepared=args.prepared,
        features=args.features,
        checkpoints=args.checkpoints or Path("checkpoints") / args.out.name,
        live=args.live or Path("dvclive") / args.out.name,
    )
    with distributed.process_group(params.train.device) as (ctx, device):
        model, summary = fit(params, paths, ctx, device)
        if not ctx.is_main:  # rank 0 writes every output
            return
        meta = {
            "config": params_to_dict(params),
            "num_classes": model.classifier.shape[1],
            "text_hidden_size": model.sentence_mean.shape[0],
            "summary": summary,
        }
        with atomic_output_dir(args.out) as work:
            save_checkpoint(work / "model.safetensors", model.state_dict(), None, meta)
            write_json(work / "train_summary.json", summary)
        # Checkpoints exist only to continue an interrupted run. The folder itself stays: it is a DVC output.
        CheckpointFolder(paths.checkpoints).clear(lock=True)
        log.info("trained model -> %s: %s", args.out, summary)


def cli(argv: list[str] | None = None) -> None:
    """`python -m acsa.train`: run_stage's one-line errors, plus exit status 3 for a non-finite loss."""
    try:
        run_stage(main, argv)
    except NonFiniteLossError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    cli()
