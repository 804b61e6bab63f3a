"""Stage `evaluate`: trained models -> text-to-image retrieval metrics on the test split (final evaluation).

Inputs:  MODEL/model.safetensors (train stage; it carries what validation chose: the epoch and the fusion
         weight), PREPARED/test and FEATURES/test.safetensors, params.yaml (evaluate section). Nothing is
         chosen here: this is the only stage of the training path that reads the test split.
Outputs: OUT (default reports/eval/main), written atomically:
  OUT/metrics.json       test R1/R5/R10/mAP/mINP (percent) of the global, local and fused scores; the fusion
                         weight and the validation metrics of the chosen epoch (both from training)
  OUT/fusion_curve.json  validation R1/mAP for every candidate fusion weight (a DVC plot; from training)
  OUT/per_query.json     per test query and score kind, its share of each metric (the findings' bootstrap)
  OUT/rankings.json      per test query: the top-10 gallery indices (fused and global) and the rank of the
                         first correct image, for the reports

With --study NAME, MODEL is models/study/NAME and every seed-S model in it is evaluated into OUT/seed-S (the
same files but rankings.json), and OUT/metrics.json gathers their test metrics.

Protocol (IRRA): queries = every test caption, gallery = every test image once; a match is any gallery image
of the query's identity.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from acsa import paths
from acsa.cli import add_path, add_study_option, params_from_args, run_stage, stage_parser
from acsa.config.sections import Params, params_to_dict
from acsa.config.study import load_study
from acsa.data.prepared import Split, read_split
from acsa.model.acsa import ACSA
from acsa.runtime import resolve_device, set_threads
from acsa.scoring.metrics import per_query_metrics
from acsa.scoring.retrieval import metrics_by_kind, rankings, score_split
from acsa.storage.files import atomic_output_dir, write_json

log = logging.getLogger(__name__)


def evaluate_model(model: ACSA, test: Split, params: Params, device, work: Path, with_rankings: bool) -> dict:
    """Score the test split with the model's validation choices; write metrics.json, fusion_curve.json,
    per_query.json (and rankings.json) into `work`; return the metrics."""
    started = time.perf_counter()
    cfg = params.evaluate
    selection = model.summary
    weight = float(selection.get("fusion_weight", 0.0))
    scores = score_split(model, test, cfg, device, params.train.num_workers)
    query_ids, gallery_ids = test.query_ids, test.gallery_ids
    by_kind = {"global": scores.global_}
    if scores.local is not None:
        by_kind.update(local=scores.local_only(), fused=scores.fused(weight))
    results = {
        "test": metrics_by_kind(scores, query_ids, gallery_ids, weight, "test"),
        "val": selection.get("val", {}),
        "fusion_weight": weight,
        "fusion_weight_chosen_on": selection.get("chosen_on", "unknown"),
        "best_epoch": selection.get("best_epoch"),
        "local_mode": cfg.local_mode if model.uses_local else "none",
        "rerank_k": cfg.rerank_k,
        "seconds": round(time.perf_counter() - started, 1),
    }
    per_query = {
        "config": params_to_dict(model.params),  # what the model was trained with (findings compare runs)
        "query_ids": query_ids.tolist(),
        "kinds": {
            kind: {
                metric: values.tolist()
                for metric, values in per_query_metrics(
                    s, query_ids, gallery_ids, name=f"test {kind} scores"
                ).items()
            }
            for kind, s in by_kind.items()
        },
    }
    write_json(work / "metrics.json", results)
    write_json(work / "fusion_curve.json", selection.get("fusion_curve", []))
    write_json(work / "per_query.json", per_query, indent=None)
    if with_rankings:
        ranked = rankings(scores, weight, query_ids, gallery_ids, split="test")
        write_json(work / "rankings.json", ranked, indent=None)
    return results


def evaluate(params: Params, model_dir: Path, prepared: Path, features: Path, out: Path) -> dict:
    """The main model (or any single model folder)."""
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    model = ACSA.from_checkpoint(model_dir, params).to(device)
    test = read_split(prepared, features, "test", params)
    with atomic_output_dir(out) as work:
        results = evaluate_model(model, test, params, device, work, with_rankings=True)
    log.info("test metrics -> %s: %s", out, results["test"])
    return results


def evaluate_study(
    params: Params, params_file: Path, name: str, model_dir: Path, prepared: Path, features: Path, out: Path
) -> dict:
    """Every seed-S model of study configuration `name` in `model_dir`."""
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    seeds = load_study(params_file).seeds_of(name, params.train.seed)
    test = read_split(prepared, features, "test", params)
    gathered = {}
    with atomic_output_dir(out) as work:
        for seed in seeds:
            model = ACSA.from_checkpoint(paths.seed_dir(model_dir, seed), params).to(device)
            seed_work = paths.seed_dir(work, seed)
            seed_work.mkdir()
            results = evaluate_model(model, test, params, device, seed_work, with_rankings=False)
            gathered[f"seed-{seed}"] = {"test": results["test"], "fusion_weight": results["fusion_weight"]}
            log.info("%s seed %d: test %s", name, seed, results["test"])
        write_json(work / "metrics.json", gathered)
    return gathered


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--model", paths.MODEL, "the train stage's output")
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output (its test folder is read)")
    add_path(parser, "--features", paths.TEXT_FEATURES, "the embed_text stage's output")
    add_path(parser, "--out", paths.EVAL, "output folder")
    add_study_option(parser, "evaluate every seed of study configuration NAME")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    if args.study is not None:
        evaluate_study(params, args.params, args.study, args.model, args.prepared, args.features, args.out)
    else:
        evaluate(params, args.model, args.prepared, args.features, args.out)


if __name__ == "__main__":
    run_stage(main)
