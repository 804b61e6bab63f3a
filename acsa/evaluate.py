"""Stage `evaluate`: a trained model -> text-to-image retrieval metrics on the test split.

Inputs:  MODEL/model.safetensors (from the train stage), PREPARED, FEATURES, params.yaml (evaluate section).
Outputs: OUT (default reports/eval/main), written atomically:
  OUT/metrics.json       test R1/R5/R10/mAP/mINP (percent) for the global, local and fused scores, the fusion
                         weight (chosen on the validation split, never on test) and the validation metrics
  OUT/fusion_curve.json  validation R1/mAP for every candidate fusion weight (a DVC plot)
  OUT/rankings.json      per test query: the top-10 gallery indices (fused and global) and the rank of the
                         first correct image, for the reports

Protocol (IRRA): queries = every test caption, gallery = every test image once; a match is any gallery image
of the query's identity.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from acsa.checkpoint import load_checkpoint
from acsa.cli import params_from_args, run_stage, stage_parser
from acsa.config import ConfigError, Params, params_from_dict, params_to_dict
from acsa.data.dataset import load_prepared
from acsa.engine import image_table, open_text_source
from acsa.io import atomic_output_dir, write_json
from acsa.metrics import per_query_ranks
from acsa.model import ACSA
from acsa.retrieval import Scores, choose_fusion_weight, encode_images, encode_queries, metrics_by_kind, score
from acsa.runtime import resolve_device, set_threads

log = logging.getLogger(__name__)

MODEL_SECTIONS = ("image", "model", "text")  # what must match between the checkpoint and params.yaml ...
TRAINING_ONLY_KEYS = {  # ... except keys that only shape training
    "image.pretrained_path",
    "image.hflip",
    "image.translate",
    "text.lr",
    "text.batch_size",
}


def load_model(model_dir: Path, params: Params | None = None) -> tuple[ACSA, Params]:
    """Rebuild the trained model; with `params`, refuse a checkpoint whose model configuration differs."""
    checkpoint = load_checkpoint(Path(model_dir) / "model.safetensors")
    trained = params_from_dict(checkpoint.meta["config"])
    if params is not None:
        current, stored = params_to_dict(params), params_to_dict(trained)
        differing = [
            f"{section}.{key}"
            for section in MODEL_SECTIONS
            for key in current[section]
            if current[section][key] != stored[section][key] and f"{section}.{key}" not in TRAINING_ONLY_KEYS
        ]
        if differing:
            raise ConfigError(
                f"{model_dir}/model.safetensors was trained with a different configuration "
                f"({', '.join(differing)}); retrain it (dvc repro) or evaluate with its params"
            )
    model = ACSA(
        trained,
        num_classes=checkpoint.meta["num_classes"],
        text_hidden_size=checkpoint.meta["text_hidden_size"],
        pretrained=False,  # weights come from the checkpoint: never re-read image.pretrained_path
    )
    model.load_state_dict(checkpoint.model_state)
    model.eval()
    return model, trained


def score_split(model: ACSA, params: Params, prepared_dir: Path, features: Path, name: str, device):
    prepared = load_prepared(prepared_dir)
    split = prepared.split(name)
    images = image_table(prepared, split, "image_paths", params)
    text_source = open_text_source(params.text.finetune, prepared_dir, features, split, name)
    image_feats = encode_images(model, images, params.evaluate.batch_size, device, params.train.num_workers)
    text_feats = encode_queries(model, text_source, params.evaluate.batch_size, device)
    cfg = params.evaluate
    scores = score(model, text_feats, image_feats, cfg.local_mode, cfg.rerank_k, cfg.chunk_size)
    return scores, torch.tensor(split["caption_ids"]), torch.tensor(split["image_ids"])


def rankings(scores: Scores, weight: float, query_ids, gallery_ids, top: int = 10) -> list[dict]:
    """Per query: top gallery indices and 1-based rank of the first match, fused and global."""
    fused = per_query_ranks(scores.fused(weight), query_ids, gallery_ids, top=top)
    global_ = per_query_ranks(scores.global_, query_ids, gallery_ids, top=top)
    return [
        {
            "query": q,
            "top": fused.top_indices[q].tolist(),
            "first_match_rank": int(fused.first_match_rank[q]),
            "global_top": global_.top_indices[q].tolist(),
            "global_first_match_rank": int(global_.first_match_rank[q]),
        }
        for q in range(len(query_ids))
    ]


def evaluate(params: Params, model_dir: Path, prepared: Path, features: Path, out: Path) -> dict:
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    model, _ = load_model(model_dir, params)
    model.to(device)
    started = time.perf_counter()
    has_val = "val" in load_prepared(prepared).splits
    if has_val:
        val_scores, val_q, val_g = score_split(model, params, prepared, features, "val", device)
        weight, curve = choose_fusion_weight(val_scores, val_q, val_g, params.evaluate.fusion_weights)
        val_metrics = metrics_by_kind(val_scores, val_q, val_g, weight)
    else:
        weight, curve, val_metrics = 1.0, [], {}
        log.warning("no validation split: fusion weight fixed at %.2f (not tuned, and never on test)", weight)
    test_scores, test_q, test_g = score_split(model, params, prepared, features, "test", device)
    results = {
        "test": metrics_by_kind(test_scores, test_q, test_g, weight),
        "val": val_metrics,
        "fusion_weight": weight,
        "fusion_weight_chosen_on": "val" if has_val else "fixed",
        "local_mode": params.evaluate.local_mode if model.uses_local else "none",
        "rerank_k": params.evaluate.rerank_k,
        "seconds": round(time.perf_counter() - started, 1),
    }
    with atomic_output_dir(out) as work:
        write_json(work / "metrics.json", results)
        write_json(work / "fusion_curve.json", curve)
        write_json(work / "rankings.json", rankings(test_scores, weight, test_q, test_g), indent=None)
    log.info("test metrics -> %s: %s", out, results["test"])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/main"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--features", type=Path, default=Path("data/text_features/features.safetensors"))
    parser.add_argument("--out", type=Path, default=Path("reports/eval/main"))
    args = parser.parse_args(argv)
    evaluate(params_from_args(args), args.model, args.prepared, args.features, args.out)


if __name__ == "__main__":
    run_stage(main)
