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

from acsa import paths
from acsa.cli import add_path, params_from_args, run_stage, stage_parser
from acsa.config import Params
from acsa.data.prepared import load_prepared, read_split
from acsa.model.acsa import ACSA
from acsa.runtime import resolve_device, set_threads
from acsa.scoring.retrieval import choose_fusion_weight, metrics_by_kind, rankings, score_split
from acsa.storage.files import atomic_output_dir, write_json

log = logging.getLogger(__name__)


def evaluate(params: Params, model_dir: Path, prepared: Path, features: Path, out: Path) -> dict:
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    model = ACSA.from_checkpoint(model_dir, params)
    model.to(device)
    started = time.perf_counter()
    has_val = "val" in load_prepared(prepared).splits
    cfg, workers = params.evaluate, params.train.num_workers
    if has_val:
        val = read_split(prepared, features, "val", params)
        val_scores = score_split(model, val, cfg, device, workers)
        weight, curve = choose_fusion_weight(val_scores, val.query_ids, val.gallery_ids, cfg.fusion_weights)
        val_metrics = metrics_by_kind(val_scores, val.query_ids, val.gallery_ids, weight, "val")
    else:
        weight, curve, val_metrics = 1.0, [], {}
        log.warning("no validation split: fusion weight fixed at %.2f (not tuned, and never on test)", weight)
    test = read_split(prepared, features, "test", params)
    test_scores = score_split(model, test, cfg, device, workers)
    test_q, test_g = test.query_ids, test.gallery_ids
    results = {
        "test": metrics_by_kind(test_scores, test_q, test_g, weight, "test"),
        "val": val_metrics,
        "fusion_weight": weight,
        "fusion_weight_chosen_on": "val" if has_val else "fixed",
        "local_mode": cfg.local_mode if model.uses_local else "none",
        "rerank_k": cfg.rerank_k,
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
    add_path(parser, "--model", paths.MODEL, "the train stage's output")
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--features", paths.FEATURES, "the embed_text stage's features")
    add_path(parser, "--out", paths.EVAL, "output folder")
    args = parser.parse_args(argv)
    evaluate(params_from_args(args), args.model, args.prepared, args.features, args.out)


if __name__ == "__main__":
    run_stage(main)
