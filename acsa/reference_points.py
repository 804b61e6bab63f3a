"""Stage `reference_points`: the synthetic benchmark's attribute records -> reference rankers to read beside
the models, and a diagnostic of what the frozen text features can tell.

Inputs:  PREPARED (the val and test records; benchmark/attributes.json, written by the prepare stage on the
         synthetic benchmark), FEATURES (the embed_text stage's frozen features of train and val).
Outputs: OUT (default reports/reference_points), written atomically:
  OUT/metrics.json  a DVC metrics file, metrics in percent:
    {"available": true, "dataset", "draws", "seed",
     "rankers": {name: {"keys": [attribute keys scored], "description"}},
     "test": {name: {"R1", "R5", "R10", "mAP", "mINP"}}, "val": {...},
     "draw_std": {"test": {name: {...}}, "val": {...}},
     "text_features": {"split": "val", "fit_split": "train", "captions", "nn_identity_R1": {representation:
       ...}, "same_identity_auc": {...}, "colour_probe": {representation: {"accuracy", "other_colour",
       "captions", "by_key"}}}}
    On a public benchmark, which has no attribute records: {"available": false, "dataset", "reason"}. On the
    synthetic benchmark a missing attributes.json is an error.
  OUT/query_subsets.json  which test queries need fine evidence (the findings are also read on them): per
    query, the probability that `coarse` and `attribute_oracle` rank a match first; `coarse_solved` (coarse
    does, at least half of the time) and `fine_evidence` (coarse does not, the oracle does); counts.
    {"available": false, ...} on a public benchmark.

Rankers (acsa/analysis/reference_points.py): random, and attribute oracles that score an image by the
caption's stated attributes its identity agrees with minus those it contradicts, over every attribute
(`attribute_oracle`) or a level of them (`colour_pair`, `coarse`, `fine`); each figure is the mean over
--draws random orderings of tied images. The test figures are read beside the final evaluation and choose
nothing; the validation figures are there for documents that quote validation. The text diagnostic
(acsa/analysis/text_binding.py) reads the train and val captions only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from acsa import paths
from acsa.analysis.attributes import caption_records, stated_values
from acsa.analysis.reference_points import RANKERS, query_subsets, reference_points
from acsa.analysis.text_binding import text_feature_diagnostic
from acsa.cli import add_path, run_stage, stage_parser
from acsa.data.prepared import Prepared, load_prepared
from acsa.data.text_features import TextBank
from acsa.errors import DataError
from acsa.storage.files import atomic_output_dir, read_json, write_json

log = logging.getLogger(__name__)
SPLITS = ("test", "val")
TEXT_SPLIT, FIT_SPLIT = "val", "train"


def _text_features(prepared: Prepared, features: Path, attributes: dict[str, Any]) -> dict[str, Any] | None:
    if not (prepared.has(TEXT_SPLIT) and prepared.has(FIT_SPLIT)):
        return None
    banks, mentions = {}, {}
    for name in (FIT_SPLIT, TEXT_SPLIT):
        records = prepared.split(name)
        tokens = prepared.folder(name) / paths.TOKENS_FILE
        banks[name] = TextBank.load(paths.features_file(features, name), tokens, records, name)
        mentions[name] = [stated_values(r["caption"]) for r in caption_records(records, attributes)]
    eval_ids = torch.tensor(prepared.split(TEXT_SPLIT)["caption_ids"])
    diagnostic = text_feature_diagnostic(
        banks[FIT_SPLIT], mentions[FIT_SPLIT], banks[TEXT_SPLIT], mentions[TEXT_SPLIT], eval_ids
    )
    return {"split": TEXT_SPLIT, "fit_split": FIT_SPLIT, **diagnostic}


def _log_results(results: dict[str, Any]) -> None:
    for split in SPLITS:
        for name, metrics in results.get(split, {}).items():
            figures = "  ".join(f"{key} {value:5.1f}" for key, value in metrics.items())
            log.info("%-4s %-16s %s", split, name, figures)
    text = results.get("text_features")
    if text:
        for name, value in text["nn_identity_R1"].items():
            log.info("text %-11s nearest-neighbour identity R1 %5.1f", name, value)
        for name, probe in text["colour_probe"].items():
            log.info(
                "text %-11s colour probe: right colour %5.1f, another stated colour %5.1f (%d captions)",
                name,
                probe["accuracy"] or 0.0,
                probe["other_colour"] or 0.0,
                probe["captions"],
            )


def compute_reference_points(
    prepared_dir: Path, features: Path, draws: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The contents of metrics.json and query_subsets.json (see the module doc)."""
    prepared = load_prepared(prepared_dir)
    dataset = prepared.dataset("test")
    if dataset != "synthetic":
        missing = {
            "available": False,
            "dataset": dataset,
            "reason": "reference points need the synthetic benchmark's attribute records (attributes.json)",
        }
        return missing, missing
    attributes_file = prepared.attributes_file("test")
    if not attributes_file.is_file():
        raise DataError(
            f"{attributes_file}: not found; the synthetic benchmark's attribute records are needed "
            "(rerun the prepare stage: dvc repro prepare)"
        )
    attributes = read_json(attributes_file)
    results: dict[str, Any] = {
        "available": True,
        "dataset": dataset,
        "draws": draws,
        "seed": seed,
        "rankers": {
            name: {"keys": list(keys), "description": text} for name, (keys, text) in RANKERS.items()
        },
    }
    spread = {}
    for split in SPLITS:
        if prepared.has(split):
            points = reference_points(prepared.split(split), attributes, draws, seed)
            results[split], spread[split] = points["metrics"], points["draw_std"]
    results["draw_std"] = spread
    results["text_features"] = _text_features(prepared, features, attributes)
    subsets = {"available": True, "split": "test", **query_subsets(prepared.split("test"), attributes)}
    return results, subsets


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--features", paths.TEXT_FEATURES, "the embed_text stage's output (train and val)")
    add_path(parser, "--out", paths.REFERENCE_POINTS, "output folder")
    parser.add_argument("--draws", type=int, default=20, help="random tie-breakings averaged (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tie-breaking draws (default: 0)")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"--draws must be >= 1, got {args.draws}")
    results, subsets = compute_reference_points(args.prepared, args.features, args.draws, args.seed)
    with atomic_output_dir(args.out) as work:
        write_json(work / "metrics.json", results)
        write_json(work / paths.QUERY_SUBSETS.name, subsets, indent=None)
    _log_results(results)
    log.info("reference points -> %s", args.out / "metrics.json")


if __name__ == "__main__":
    run_stage(main)
