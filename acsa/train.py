"""Stage `train`: prepared data + frozen text features -> a trained ACSA model.

Inputs:  params.yaml (image, model, loss, train, text; an --ablation applies its overrides),
         PREPARED (default data/prepared), FEATURES (default data/text_features/features.safetensors).
Outputs: OUT/model.safetensors   the best epoch's weights on the validation split (config stored as JSON)
         OUT/train_summary.json  best epoch, steps, time
         CHECKPOINTS/            per-epoch checkpoints while training; an interrupted run resumes from
                                 them, a finished one removes them
         LIVE/                   DVCLive metrics.json (last epoch) and plots/ (per-epoch curves)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from acsa.checkpoint import save_checkpoint
from acsa.cli import params_from_args, run_stage, stage_parser
from acsa.config import params_to_dict
from acsa.engine import TrainPaths, fit
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
    paths = TrainPaths(
        prepared=args.prepared,
        features=args.features,
        checkpoints=args.checkpoints or Path("checkpoints") / args.out.name,
        live=args.live or Path("dvclive") / args.out.name,
    )
    model, summary = fit(params, paths)
    meta = {
        "config": params_to_dict(params),
        "num_classes": model.classifier.shape[1],
        "text_hidden_size": model.sentence_mean.shape[0],
        "summary": summary,
    }
    with atomic_output_dir(args.out) as work:
        save_checkpoint(work / "model.safetensors", model.state_dict(), None, meta)
        write_json(work / "train_summary.json", summary)
    # Checkpoints exist only to resume an interrupted run: a finished run removes them.
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    log.info("trained model -> %s: %s", args.out, summary)


if __name__ == "__main__":
    run_stage(main)
