"""A hand-built study folder with known numbers, in the formats the pipeline writes (findings, study summary,
the study's runs, probes, convergence runs, reference points, the optional sweep and end-to-end
confirmation), for the ablation report's tests.

Import from a test module with `from fixtures_study import ...` (pytest puts tests/ on sys.path).

Configurations (seeds 0, 1, 2; the main model is `full` seed 0) and their test R@1 per seed and score kind:
  full           fused 60, 61, 62 (mean 61.0, std 1.0); global 50, 51, 52; local 55, 56, 57
  region_phrase  fused 55, 56, 56 (55.7)      image_phrase  fused 57, 58, 58 (57.7)
  reverse        fused 60, 61, 61.5 (60.8)    global_only   global 45, 46, 46 (45.7), train.lr 0.004
  global_fair    global 58, 59, 60.5 (59.2)   global_twin   fused 59, 60, 61 (60.0): a second global branch
Every other metric is R@1 plus an offset (R5 +20, R10 +30, mAP +5, mINP -5). Query subsets: all 400 test
queries, 40 that need fine evidence (each configuration scores lower there). Verdicts (Holm-adjusted, margin
±2), all queries / fine evidence:
  cross-scale      full vs region_phrase better / better; vs image_phrase better / inconclusive
                   -> holds on all queries only
  asymmetric       full vs reverse equivalent / better -> does not hold; holds only on fine evidence
  local alignment  full vs global_only better / better; vs global_fair inconclusive / better; vs global_twin
                   inconclusive / inconclusive; full's local score vs global_fair inconclusive / inconclusive
                   -> inconclusive on both
  fair_text_side (no claim): global_fair vs global_only better / inconclusive
Validation curves: 8 epochs, every run flattened but full seed 1 (+2.3). Convergence (12 epochs): full flat
(equivalent), global_twin still rising (better). Probes: the backbone carries head.gender, upper.colour and
carried.type, not head.hat; global_only loses carried.type. Sweep: every configuration's train.lr is its best
on validation but global_only's (0.004; 0.001 scored 47.0); full at 6, 8 and 12 epochs: 59.5, 61.0, 61.2.
End to end (seeds 0, 1): full > global_only > region_phrase against full > region_phrase > global_only.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from conftest import with_every_section

PARAMS = """
train: {seed: 0, lr: 0.002, epochs: 8, threads: 1}
study:
  main: full
  seeds: [0, 1, 2]
  configurations:
    full: {}
    region_phrase: {model.use_image_token: false}
    image_phrase: {model.use_regions: false, model.use_windows: false}
    reverse: {model.attention: phrase_queries}
    global_only: {model.use_local: false, train.lr: 0.004}
    global_fair: {model.use_local: false, model.global_text: sentence_and_phrases}
    global_twin: {model.use_local: false, model.global_text: sentence_and_phrases, model.twin_global: true}
  optional:
    small_swin: {image.backbone: swin_tiny_patch4_window7_224}
  findings:
    cross_scale_vs_region: {a: full, b: region_phrase, claim: cross-scale}
    cross_scale_vs_image: {a: full, b: image_phrase, claim: cross-scale}
    asymmetric_vs_reverse: {a: full, b: reverse, claim: asymmetric}
    local_vs_global_only: {a: full, b: global_only, claim: local alignment}
    local_vs_global_fair: {a: full, b: global_fair, claim: local alignment}
    local_vs_two_scores: {a: full, b: global_twin, claim: local alignment}
    local_score_alone: {a: full, a_score: local, b: global_fair, claim: local alignment}
    fair_text_side: {a: global_fair, b: global_only}
  metric: R1
  confidence: 0.95
  equivalence_margin: 2.0
  convergence: {configurations: [full, global_twin], epochs_factor: 1.5}
  sweep: {learning_rates: [0.001, 0.002, 0.004], seed: 0, main_epochs: [6, 12]}
  end_to_end:
    seeds: [0, 1]
    configurations: [full, region_phrase, global_only]
    overrides: {image.frozen: false, image.init: scratch, image.pretrained_path: null}
    learning_rates: {full: 0.002, region_phrase: 0.002, global_only: 0.004}
"""
SEEDS = (0, 1, 2)
OFFSETS = {"R1": 0.0, "R5": 20.0, "R10": 30.0, "mAP": 5.0, "mINP": -5.0}
R1 = {  # configuration -> score kind -> test R@1 per seed; the final kind: fused if present, else global
    "full": {"global": (50.0, 51.0, 52.0), "local": (55.0, 56.0, 57.0), "fused": (60.0, 61.0, 62.0)},
    "region_phrase": {"global": (50.0, 50.0, 51.0), "local": (50.0, 51.0, 51.0), "fused": (55.0, 56.0, 56.0)},
    "image_phrase": {"global": (49.0, 50.0, 50.0), "local": (44.0, 45.0, 45.0), "fused": (57.0, 58.0, 58.0)},
    "reverse": {"global": (50.0, 51.0, 51.0), "local": (55.0, 55.0, 56.0), "fused": (60.0, 61.0, 61.5)},
    "global_only": {"global": (45.0, 46.0, 46.0)},
    "global_fair": {"global": (58.0, 59.0, 60.5)},
    "global_twin": {"global": (57.0, 58.0, 59.0), "local": (57.0, 58.0, 58.0), "fused": (59.0, 60.0, 61.0)},
}
PARAMETERS = {"full": 900_000, "region_phrase": 900_000, "image_phrase": 550_000, "reverse": 900_000}
PARAMETERS |= {"global_only": 190_000, "global_fair": 350_000, "global_twin": 700_000}
QUERIES = {"all": 400, "fine_evidence": 40}
FINE = {"full": 40.0, "full/local": 30.0, "region_phrase": 30.0, "image_phrase": 37.5, "reverse": 30.0}
FINE |= {"global_only": 20.0, "global_fair": 25.0, "global_twin": 35.0}  # mean R@1 on fine evidence
FUSION_WEIGHTS = (0.0, 0.25, 1.0, 4.0)
CHOSEN_WEIGHT = {"full": 4.0}  # every other configuration with a second score: 1.0
GAINS = {("full", 1): 2.3}  # validation R@1 gained over the last quarter; every other run: 0.2
# finding -> (a, a_score, b, claim, adjusted half-width on all queries, verdict; on fine evidence)
DECLARED = {
    "cross_scale_vs_region": ("full", None, "region_phrase", "cross-scale", 3.0, "better", 6.0, "better"),
    "cross_scale_vs_image": ("full", None, "image_phrase", "cross-scale", 2.5, "better", 8.0, "inconclusive"),
    "asymmetric_vs_reverse": ("full", None, "reverse", "asymmetric", 1.2, "equivalent", 7.0, "better"),
    "local_vs_global_only": ("full", None, "global_only", "local alignment", 3.0, "better", 8.0, "better"),
    "local_vs_global_fair": (
        "full", None, "global_fair", "local alignment", 2.6, "inconclusive", 9.0, "better",
    ),
    "local_vs_two_scores": (
        "full", None, "global_twin", "local alignment", 2.5, "inconclusive", 9.0, "inconclusive",
    ),
    "local_score_alone": (
        "full", "local", "global_fair", "local alignment", 3.5, "inconclusive", 10.0, "inconclusive",
    ),
    "fair_text_side": ("global_fair", None, "global_only", None, 3.0, "better", 9.0, "inconclusive"),
}  # fmt: skip


def final_kind(configuration: str) -> str:
    return "fused" if "fused" in R1[configuration] else "global"


def mean_of(configuration: str, kind: str | None = None) -> float:
    return statistics.fmean(R1[configuration][kind or final_kind(configuration)])


def result(mean_a: float, mean_b: float, adjusted: float, verdict: str, subset: str) -> dict[str, Any]:
    """One finding on one query subset, as acsa.analysis.findings.study_findings writes it: the raw interval
    is 0.8 x the Holm-adjusted one."""
    d = mean_a - mean_b
    return {
        "queries": QUERIES[subset],
        "identities": QUERIES[subset] // 4,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "difference": d,
        "standard_error": adjusted / 3,
        "df": 4.0,
        "p_value": 0.01 if verdict == "better" else 0.4,
        "variance_parts": {"seeds_a": 1.0, "seeds_b": 1.0, "identities": 0.5, "residual_correction": 0.1},
        "ci_low": d - 0.8 * adjusted,
        "ci_high": d + 0.8 * adjusted,
        "confidence": 0.95,
        "p_holm": 0.04 if verdict == "better" else 1.0,
        "adjusted_confidence": 0.99,
        "adjusted_low": d - adjusted,
        "adjusted_high": d + adjusted,
        "verdict": verdict,
    }


def findings() -> dict[str, dict[str, Any]]:
    out = {}
    for name, (a, a_score, b, claim, half, verdict, fine_half, fine_verdict) in DECLARED.items():
        fine_a = FINE[f"{a}/{a_score}" if a_score else a]
        out[name] = {
            "name": name,
            "claim": claim,
            "a": a,
            "b": b,
            "a_score": a_score or final_kind(a),
            "b_score": final_kind(b),
            "metric": "R1",
            "seeds_a": list(SEEDS),
            "seeds_b": list(SEEDS),
            "interval": "t over seed means with test-identity variance (acsa.analysis.intervals)",
            "subsets": {
                "all": result(mean_of(a, a_score), mean_of(b), half, verdict, "all"),
                "fine_evidence": result(fine_a, FINE[b], fine_half, fine_verdict, "fine_evidence"),
            },
        }
    return out


def metrics_of(value: float) -> dict[str, float]:
    return {m: value + offset for m, offset in OFFSETS.items()}


def validation_curve(final: float, gain: float, epochs: int = 8) -> list[float]:
    """`epochs` epochs rising to `final`; the last quarter gains `gain`."""
    before = final - gain
    rising = [before * (e + 1) / (epochs - 2) for e in range(epochs - 2)]
    return rising + [before + gain / 2, final]


def plateau(name: str) -> list[dict[str, Any]]:
    gains = [(seed, GAINS.get((name, seed), 0.2)) for seed in SEEDS]
    return [{"seed": s, "epochs": 8, "gain_last_quarter": g, "flattened": g < 0.5} for s, g in gains]


def summary() -> dict[str, Any]:
    configurations = {}
    for name, kinds in R1.items():
        table = {
            kind: {
                m: {
                    "mean": statistics.fmean(v + OFFSETS[m] for v in per_seed),
                    "std": statistics.stdev(v + OFFSETS[m] for v in per_seed),
                    "runs": [v + OFFSETS[m] for v in per_seed],
                }
                for m in OFFSETS
            }
            for kind, per_seed in kinds.items()
        }
        final = table[final_kind(name)]["R1"]["mean"]
        shift = FINE.get(name, final) - final  # the fine-evidence queries: the findings' means
        fine = {
            kind: {
                m: {**v, "mean": v["mean"] + shift, "runs": [r + shift for r in v["runs"]]}
                for m, v in t.items()
            }
            for kind, t in table.items()
        }
        configurations[name] = {
            "seeds": list(SEEDS),
            "final_kind": final_kind(name),
            "kinds": table,
            "subsets": {"fine_evidence": fine},
            "trainable_parameters": PARAMETERS[name],
            "plateau": plateau(name),
        }
    pairs = {
        "full": ([61.0, 61.5], [62.0, 62.2], [60.0, 60.1]),
        "global_twin": ([58.0, 61.0], [59.0, 62.5], [60.0, 62.5]),
    }
    flat = "flat: a longer budget changes validation R@1 by less than the margin"
    checked = {
        "full": (0.27, -0.5, 1.0, "equivalent", flat),
        "global_twin": (3.0, 1.2, 4.8, "better", "still rising: a longer budget gains validation R@1"),
    }
    convergence = {"available": True, "epochs_factor": 1.5, "configurations": {}}
    for name, (gain, low, high, verdict, meaning) in checked.items():
        convergence["configurations"][name] = {
            "pairs": [
                {"seed": s, "epochs": [8, 12], "best": best}
                for s, best in zip(SEEDS, pairs[name], strict=True)
            ],
            "gain": gain,
            "ci_low": low,
            "ci_high": high,
            "verdict": verdict,
            "meaning": meaning,
        }
    return {
        "configurations": configurations,
        "subsets": dict(QUERIES),
        "equivalence_margin": 2.0,
        "confidence": 0.95,
        "convergence": convergence,
    }


def runs() -> list[dict[str, Any]]:
    """runs.json: one record per run (acsa.analysis.study_runs.run_record)."""
    records = []
    for name, kinds in R1.items():
        weight = CHOSEN_WEIGHT.get(name, 1.0) if "fused" in kinds else 0.0
        for i, seed in enumerate(SEEDS):
            final = kinds[final_kind(name)][i]
            curve = [{"weight": w, **metrics_of(final - (w - weight) ** 2)} for w in FUSION_WEIGHTS]
            test = {kind: metrics_of(values[i]) for kind, values in kinds.items()}
            records.append(
                {
                    "configuration": name,
                    "seed": seed,
                    "model": "models/main"
                    if (name, seed) == ("full", 0)
                    else f"models/study/{name}/seed-{seed}",
                    "config": {},
                    "best_epoch": 7,
                    "fusion_weight": weight,
                    "fusion_curve": curve if "fused" in kinds else [],
                    "validation_curve": validation_curve(final, GAINS.get((name, seed), 0.2)),
                    "trainable_parameters": PARAMETERS[name],
                    "threads": 1,
                    "val": test,
                    "test": test,
                }
            )
    return records


def longer_runs() -> list[dict[str, Any]]:
    """convergence.json: the convergence check's runs at 1.5 x the budget (12 epochs)."""
    return [
        {
            "configuration": name,
            "seed": seed,
            "overrides": ["train.epochs=12"],
            "best_epoch": 11,
            "chosen_on": "val",
            "validation_curve": validation_curve(R1[name][final_kind(name)][i] + 1.0, 0.2, epochs=12),
        }
        for name in ("full", "global_twin")
        for i, seed in enumerate(SEEDS)
    ]


def probe(accuracy: float, majority: float) -> dict[str, Any]:
    return {"accuracy": accuracy, "majority": majority, "classes": 3, "train": 200, "val": 100}


BACKBONE = {"head.gender": (90.0, 50.0), "upper.colour": (60.0, 20.0), "head.hat": (55.0, 50.0)}
BACKBONE |= {"carried.type": (70.0, 40.0)}


def probes() -> dict[str, Any]:
    """probes.json: the backbone carries every attribute but head.hat; global_only loses carried.type."""
    kept = {key: probe(accuracy, majority) for key, (accuracy, majority) in BACKBONE.items()}
    lost = {**kept, "carried.type": probe(42.0, 40.0)}
    return {
        "available": True,
        "fit_split": "train",
        "score_split": "val",
        "attributes": {"coarse": ["head.gender", "upper.colour"], "fine": ["head.hat", "carried.type"]},
        "backbone": kept,
        "configurations": {
            name: {
                "seed": 0,
                "global": lost if name == "global_only" else kept,
                "tokens": lost if name == "global_only" else kept,
            }
            for name in R1
        },
    }


def sweep() -> list[dict[str, Any]]:
    """sweep.json: every configuration at every learning rate (seed 0, 8 epochs), full at 6 and 12 epochs."""
    scores = {"full": (58.0, 61.0, 59.0), "global_only": (47.0, 45.0, 44.0)}
    records = []
    for name in R1:
        for lr, best in zip((0.001, 0.002, 0.004), scores.get(name, (55.0, 57.0, 54.0)), strict=True):
            records.append(
                {
                    "configuration": name,
                    "seed": 0,
                    "overrides": [f"train.lr={lr}"],
                    "best_val_selection_R1": best,
                }
            )
    for epochs, best in ((6, 59.5), (12, 61.2)):
        overrides = ["train.lr=0.002", f"train.epochs={epochs}"]
        records.append(
            {"configuration": "full", "seed": 0, "overrides": overrides, "best_val_selection_R1": best}
        )
    return records


def end_to_end() -> dict[str, Any]:
    """end_to_end/findings.json (acsa.analysis.protocols.protocol_agreement)."""
    two_stage = {
        "full": 61.0,
        "region_phrase": mean_of("region_phrase"),
        "global_only": mean_of("global_only"),
    }
    theirs = {"full": 50.0, "region_phrase": 40.0, "global_only": 42.0}
    return {
        "seeds": [0, 1],
        "findings": {},
        "agreement": {
            "findings": {
                "cross_scale_vs_region": {
                    "two_stage": {"difference": 61.0 - mean_of("region_phrase"), "verdict": "better"},
                    "end_to_end": {"difference": 10.0, "verdict": "inconclusive"},
                    "same_direction": True,
                    "same_verdict": False,
                },
                "local_vs_global_only": {
                    "two_stage": {"difference": 61.0 - mean_of("global_only"), "verdict": "better"},
                    "end_to_end": {"difference": 8.0, "verdict": "better"},
                    "same_direction": True,
                    "same_verdict": True,
                },
            },
            "ranking": {
                "two_stage": ["full", "region_phrase", "global_only"],
                "end_to_end": ["full", "global_only", "region_phrase"],
                "means_two_stage": two_stage,
                "means_end_to_end": theirs,
                "kendall_tau": 1 / 3,
            },
        },
    }


REFERENCE = {
    "available": True,
    "dataset": "synthetic",
    "draws": 20,
    "seed": 0,
    "rankers": {
        "random": {"keys": [], "description": "a uniformly random ranking"},
        "colour_pair": {"keys": ["upper.colour"], "description": "top and bottom colours only"},
        "coarse": {"keys": [], "description": "gender, garment types and colours"},
        "attribute_oracle": {"keys": [], "description": "every stated attribute, matched exactly"},
    },
    "test": {
        name: metrics_of(value)
        for name, value in (
            ("random", 0.7),
            ("colour_pair", 35.0),
            ("coarse", 58.5),
            ("attribute_oracle", 94.0),
        )
    },
    "val": {},
    "draw_std": {"test": {}, "val": {}},
    "text_features": {
        "split": "val",
        "fit_split": "train",
        "captions": 800,
        "nn_identity_R1": {"sentence": 20.0, "phrase_mean": 30.0, "phrase_set": 55.0},
        "same_identity_auc": {"sentence": 0.71, "phrase_mean": 0.78, "phrase_set": 0.9},
        "colour_probe": {
            "sentence": {"accuracy": 40.0, "other_colour": 35.0, "captions": 500, "by_key": {}},
            "phrase_mean": {"accuracy": 80.0, "other_colour": 10.0, "captions": 500, "by_key": {}},
        },
    },
}
QUERY_SUBSETS = {
    "available": True,
    "split": "test",
    "counts": {"queries": 400, "coarse_solved": 340, "fine_evidence": 40, "neither": 20},
}


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def write_fake_study(root: Path, reference: bool = True, optional: bool = True) -> dict[str, str]:
    """The study's files under `root` (the optional pipeline's too, with `optional`); returns the report
    notebook's parameters pointing at them."""
    reports = root / "reports"
    (root / "params.yaml").write_text(with_every_section(PARAMS))
    files = {
        "findings_file": (reports / "findings.json", findings()),
        "summary_file": (reports / "study_summary.json", summary()),
        "runs_file": (reports / "study" / "runs.json", runs()),
        "probes_file": (reports / "probes.json", probes()),
        "convergence_file": (reports / "convergence.json", longer_runs()),
        "subsets_file": (reports / "reference_points" / "query_subsets.json", QUERY_SUBSETS),
        "reference_file": (reports / "reference_points" / "metrics.json", REFERENCE),
        "sweep_file": (reports / "sweep.json", sweep()),
        "end_to_end_file": (reports / "end_to_end" / "findings.json", end_to_end()),
    }
    skipped = ({"reference_file"} if not reference else set()) | (
        {"sweep_file", "end_to_end_file"} if not optional else set()
    )
    for key, (path, value) in files.items():
        if key not in skipped:
            write_json(path, value)
    return {"params_file": str(root / "params.yaml"), **{key: str(path) for key, (path, _) in files.items()}}
