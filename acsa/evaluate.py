"""Stage `evaluate`: trained models -> text-to-image retrieval metrics on the test split (final evaluation).

Inputs:  MODEL/model.safetensors (train stage; it carries what validation chose: the epoch and the fusion
         weight), PREPARED/test, FEATURES/test.safetensors, IMAGE_FEATURES/test.safetensors (with a frozen
         backbone: its cached outputs of the test images), params.yaml (evaluate section). Nothing is chosen
         here: with the other evaluate stages, this is the only part of the training path that reads test.
Outputs: OUT (default reports/eval/main), written atomically:
  OUT/metrics.json       test R1/R5/R10/mAP/mINP (percent) of the global, local and fused scores; the fusion
                         weight and the validation metrics of the chosen epoch (both from training)
  OUT/fusion_curve.json  validation R1/mAP for every candidate fusion weight (a DVC plot; from training)
  OUT/per_query.json     per test query and score kind, its share of each metric
  OUT/rankings.json      per test query: the top-10 gallery indices (fused and global) and the rank of the
                         first correct image, for the reports

With --study NAME (or --plan study: every configuration of study.configurations; --plan end_to_end: the
optional end-to-end confirmation's runs), every run (MODEL/NAME/seed-S; the main model's own run is
MAIN_MODEL) is evaluated, each first checked to have been trained as its folder says (configuration, seed
and every setting that changes results), and OUT (default reports/study) gets the compact record of them all
that the findings stage reads: OUT/runs.json and OUT/per_query.npz (acsa.analysis.study_runs).

Protocol (IRRA): queries = every test caption, gallery = every test image once; a match is any gallery image
of the query's identity.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from acsa import paths
from acsa.analysis.study_runs import run_record, write_study_runs
from acsa.cli import add_path, add_study_option, params_from_args, run_stage, stage_parser
from acsa.config.loading import load_params
from acsa.config.sections import Params, params_to_dict
from acsa.config.study import Study, load_study
from acsa.data.prepared import Split, read_split
from acsa.errors import DataError
from acsa.model.acsa import ACSA
from acsa.runtime import resolve_device, set_threads
from acsa.scoring.metrics import per_query_metrics
from acsa.scoring.retrieval import Scores, metrics_by_kind, rankings, score_split
from acsa.storage.files import atomic_output_dir, write_json
from acsa.training.plans import end_to_end_plan
from acsa.training.resume import config_differences

log = logging.getLogger(__name__)


def per_query_results(scores: Scores, weight: float, query_ids, gallery_ids) -> dict[str, dict[str, list]]:
    """Per score kind (global; with the local branch also local and fused) and metric, each test query's
    share of the metric in percent (the findings' input)."""
    by_kind = {"global": scores.global_}
    if scores.local is not None:
        by_kind.update(local=scores.local_only(), fused=scores.fused(weight))
    return {
        kind: per_query_metrics(similarity, query_ids, gallery_ids, name=f"test {kind} scores")
        for kind, similarity in by_kind.items()
    }


def evaluate_model(model: ACSA, test: Split, params: Params, device) -> tuple[dict, dict, Scores]:
    """Score the test split with the model's validation choices: (metrics, per-query results, scores)."""
    started = time.perf_counter()
    cfg = params.evaluate
    selection = model.summary
    weight = float(selection.get("fusion_weight", 0.0))
    scores = score_split(model, test, cfg, device, params.train.num_workers)
    query_ids, gallery_ids = test.query_ids, test.gallery_ids
    results = {
        "test": metrics_by_kind(scores, query_ids, gallery_ids, weight, "test"),
        "val": selection.get("val", {}),
        "fusion_weight": weight,
        "fusion_weight_chosen_on": selection.get("chosen_on", "unknown"),
        "best_epoch": selection.get("best_epoch"),
        "local_mode": cfg.local_mode if model.has_second_score else "none",
        "rerank_k": cfg.rerank_k,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return results, per_query_results(scores, weight, query_ids, gallery_ids), scores


def evaluate(
    params: Params, model_dir: Path, prepared: Path, features: Path, image_features: Path, out: Path
) -> dict:
    """The main model (or any single model folder): OUT/metrics.json, fusion_curve.json, per_query.json,
    rankings.json."""
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    model = ACSA.from_checkpoint(model_dir, params).to(device)
    test = read_split(prepared, features, "test", params, image_features)
    results, per_query, scores = evaluate_model(model, test, params, device)
    query_ids, gallery_ids = test.query_ids, test.gallery_ids
    with atomic_output_dir(out) as work:
        write_json(work / "metrics.json", results)
        write_json(work / "fusion_curve.json", model.summary.get("fusion_curve", []))
        record = {
            "config": params_to_dict(model.params),
            "query_ids": query_ids.tolist(),
            "kinds": {k: {m: v.tolist() for m, v in table.items()} for k, table in per_query.items()},
        }
        write_json(work / "per_query.json", record, indent=None)
        ranked = rankings(scores, results["fusion_weight"], query_ids, gallery_ids, split="test")
        write_json(work / "rankings.json", ranked, indent=None)
    log.info("test metrics -> %s: %s", out, results["test"])
    return results


def evaluated_runs(study: Study, args, main_seed: int) -> list[tuple[str, int, tuple[str, ...], Path]]:
    """(configuration, seed, overrides, model folder) of every run to evaluate: with --plan study every
    configuration's (the main model's own run is MAIN_MODEL), with --plan end_to_end the confirmation's,
    with --study NAME that configuration's."""
    if args.plan == "end_to_end":
        return [(r.configuration, r.seed, r.overrides, args.model / r.folder) for r in end_to_end_plan(study)]
    names = list(study.configurations) if args.plan == "study" else [args.study]
    return [
        (name, seed, (), study.run_folder(name, seed, main_seed, args.main_model, args.model))
        for name in names
        for seed in study.seeds
    ]


def evaluate_study(params: Params, args) -> list[dict]:
    """Every run of the plan (or of study configuration `args.study`) on the test split, each checked to be
    trained as its folder says, gathered into OUT/runs.json and OUT/per_query.npz (study_runs)."""
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    study = load_study(args.params)
    records, per_query, tests = [], {}, {}
    for name, seed, extra, model_dir in evaluated_runs(study, args, params.train.seed):
        overrides = [*args.overrides, *extra, f"train.seed={seed}"]
        configured = load_params(args.params, configuration=name, overrides=overrides)
        # runs of one image setting share the test split's images (or their cached backbone outputs)
        key = json.dumps(asdict(configured.image), sort_keys=True)
        if key not in tests:
            tests[key] = read_split(args.prepared, args.features, "test", configured, args.image_features)
        test = tests[key]
        model = ACSA.from_checkpoint(model_dir, configured).to(device)
        check_trained_as(model, configured, model_dir, f"{name} seed {seed}")
        results, per_query[(name, seed)], _ = evaluate_model(model, test, configured, device)
        config = params_to_dict(model.params)
        records.append(run_record(name, seed, model_dir, config, model.summary, results))
        log.info("%s seed %d: test %s", name, seed, results["test"])
    query_ids = next(iter(tests.values())).query_ids.numpy()
    with atomic_output_dir(args.out) as work:
        write_study_runs(work, records, query_ids, per_query)
    return records


def check_trained_as(model: ACSA, params: Params, model_dir: Path, run: str) -> None:
    """The model in `model_dir` was trained as `run` says: its stored configuration is `params` (the
    configuration's overrides and the seed), settings that change only speed aside (DataError otherwise: a
    run of another configuration or seed copied into this folder)."""
    differing = config_differences(params_to_dict(model.params), params_to_dict(params))
    if differing:
        raise DataError(
            f"{model_dir}: not a run of {run}: it was trained with other {', '.join(differing[:5])} "
            "(retrain it: dvc repro)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--model", paths.MODEL, "the train stage's output")
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output (its test folder is read)")
    add_path(parser, "--features", paths.TEXT_FEATURES, "the embed_text stage's output")
    add_path(parser, "--image-features", paths.IMAGE_FEATURES, "the embed_images stage's output")
    add_path(parser, "--out", paths.EVAL, "output folder")
    add_path(parser, "--main-model", paths.MODEL, "with --study: the main model (the main run of the study)")
    add_study_option(parser, "evaluate every run of study configuration NAME (models in MODEL/NAME/seed-S)")
    parser.add_argument(
        "--plan",
        choices=("study", "end_to_end"),
        help="evaluate every run of the study (MODEL/<configuration>/seed-S, the main run MAIN_MODEL) or of "
        "the end-to-end confirmation into OUT/runs.json and OUT/per_query.npz",
    )
    args = parser.parse_args(argv)
    params = params_from_args(args)
    if args.study is not None or args.plan is not None:
        evaluate_study(params, args)
    else:
        evaluate(params, args.model, args.prepared, args.features, args.image_features, args.out)


if __name__ == "__main__":
    run_stage(main)
