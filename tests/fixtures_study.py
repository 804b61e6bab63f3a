"""A hand-built study folder with known numbers, laid out as the pipeline writes it, for the report tests.

Import from a test module with `from fixtures_study import ...` (pytest puts tests/ on sys.path).

Configurations (seeds 0, 1, 2; the main model is `full` seed 0) and their final test R@1 per seed:
  full         fused 40, 41, 42 (mean 41.0, std 1.0); global 19, 20, 21; local 36, 37, 38
  global_only  global 30, 30.5, 31 (mean 30.5)
  global_fair  global 39.5, 40.5, 40.6 (mean 40.2)
  channels     fused 44, 44, 45 (mean 44.3)
Every other metric is R@1 plus an offset (R5 +20, R10 +30, mAP +5, mINP -5). The findings: full is better
than global_only, not detectably different from global_fair, worse than channels; global_fair is better than
global_only. Validation curves: every run flattened but full seed 1 (+2.3 over the last quarter of 8 epochs).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from conftest import with_every_section

PARAMS = """
train:
  seed: 0
study:
  main: full
  seeds: [0, 1, 2]
  configurations:
    full: {}
    global_only: {model.use_local: false}
    global_fair: {model.use_local: false, model.global_text: sentence_and_phrases}
    channels: {image.parts: channels}
  optional:
    small_swin: {image.backbone: swin_tiny_patch4_window7_224}
  findings:
    local_alignment: {a: full, b: global_only}
    local_alignment_fair: {a: full, b: global_fair}
    fair_text_side: {a: global_fair, b: global_only}
    stripes_vs_channels: {a: full, b: channels}
  metric: R1
"""
SEEDS = (0, 1, 2)
OFFSETS = {"R1": 0.0, "R5": 20.0, "R10": 30.0, "mAP": 5.0, "mINP": -5.0}
# configuration -> kind -> R@1 per seed (the first kind listed last is the final score)
R1 = {
    "full": {"global": (19.0, 20.0, 21.0), "local": (36.0, 37.0, 38.0), "fused": (40.0, 41.0, 42.0)},
    "global_only": {"global": (30.0, 30.5, 31.0)},
    "global_fair": {"global": (39.5, 40.5, 40.6)},
    "channels": {"global": (25.0, 25.0, 26.0), "local": (30.0, 31.0, 31.0), "fused": (44.0, 44.0, 45.0)},
}
FUSION_WEIGHTS = (0.0, 0.25, 1.0, 4.0)
CHOSEN_WEIGHT = {"full": 4.0, "channels": 1.0}
GAINS = {("full", 1): 2.3}  # validation R@1 gained over the last quarter; every other run: 0.2


def final_kind(configuration: str) -> str:
    return "fused" if "fused" in R1[configuration] else "global"


def finding(name: str, a: str, b: str, diff: float, low: float, high: float, verdict: str) -> dict[str, Any]:
    mean_a, mean_b = (statistics.fmean(R1[c][final_kind(c)]) for c in (a, b))
    return {
        "name": name,
        "a": a,
        "b": b,
        "metric": "R1",
        "seeds_a": list(SEEDS),
        "seeds_b": list(SEEDS),
        "mean_a": mean_a,
        "mean_b": mean_b,
        "difference": diff,
        "ci_low": low,
        "ci_high": high,
        "confidence": 0.95,
        "resampled": "seeds of a, seeds of b, test identities (paired)",
        "verdict": verdict,
    }


FINDINGS = {
    "local_alignment": finding("local_alignment", "full", "global_only", 10.5, 8.1, 12.9, "better"),
    "local_alignment_fair": finding(
        "local_alignment_fair", "full", "global_fair", 0.8, -1.1, 2.6, "no detectable difference"
    ),
    "fair_text_side": finding("fair_text_side", "global_fair", "global_only", 9.7, 7.5, 11.8, "better"),
    "stripes_vs_channels": finding("stripes_vs_channels", "full", "channels", -3.3, -5.0, -1.4, "worse"),
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
        "fine": {"keys": [], "description": "everything but the coarse attributes"},
        "attribute_oracle": {"keys": [], "description": "every stated attribute, matched exactly"},
    },
    "test": {
        name: {m: value + OFFSETS[m] for m in OFFSETS}
        for name, value in (
            ("random", 0.7),
            ("colour_pair", 35.0),
            ("coarse", 71.0),
            ("fine", 60.0),
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


def metrics_of(value: float) -> dict[str, float]:
    return {m: value + offset for m, offset in OFFSETS.items()}


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def validation_curve(final: float, gain: float, epochs: int = 8) -> list[float]:
    """8 epochs rising to `final`; the last quarter (2 epochs) gains `gain` over the epoch before it."""
    before = final - gain
    return [before * (e + 1) / (epochs - 2) for e in range(epochs - 2)] + [before + gain / 2, final]


def summary() -> dict[str, Any]:
    out = {}
    for name, kinds in R1.items():
        table = {}
        for kind, per_seed in kinds.items():
            table[kind] = {
                m: {
                    "mean": statistics.fmean(v + OFFSETS[m] for v in per_seed),
                    "std": statistics.stdev(v + OFFSETS[m] for v in per_seed),
                    "runs": [v + OFFSETS[m] for v in per_seed],
                }
                for m in OFFSETS
            }
        plateau = []
        for seed in SEEDS:
            gain = GAINS.get((name, seed), 0.2)
            plateau.append({"seed": seed, "epochs": 8, "gain_last_quarter": gain, "flattened": gain < 0.5})
        out[name] = {"seeds": list(SEEDS), "final_kind": final_kind(name), "kinds": table, "plateau": plateau}
    return out


def write_fake_study(root: Path, reference: bool = True) -> dict[str, str]:
    """The study's files under `root`; returns the report notebook's parameters pointing at them."""
    (root / "params.yaml").write_text(with_every_section(PARAMS))
    write_json(root / "reports" / "findings.json", FINDINGS)
    write_json(root / "reports" / "study_summary.json", summary())
    for name, kinds in R1.items():
        for i, seed in enumerate(SEEDS):
            run = Path("main") if (name, seed) == ("full", 0) else Path("study") / name / f"seed-{seed}"
            eval_dir = root / "reports" / "eval" / "main" if run == Path("main") else root / "reports" / run
            local = "fused" in kinds
            weight = CHOSEN_WEIGHT.get(name, 0.0)
            write_json(
                eval_dir / "metrics.json",
                {
                    "test": {kind: metrics_of(values[i]) for kind, values in kinds.items()},
                    "fusion_weight": weight,
                    "fusion_weight_chosen_on": "val",
                    "best_epoch": 7,
                    "local_mode": "exact" if local else "none",
                },
            )
            curve = [{"weight": w, **metrics_of(40.0 - (w - weight) ** 2)} for w in FUSION_WEIGHTS]
            write_json(eval_dir / "fusion_curve.json", curve if local else [])
            final = kinds[final_kind(name)][i]
            values = validation_curve(final, GAINS.get((name, seed), 0.2))
            tsv = root / "dvclive" / run / "plots" / "metrics" / "val" / "selection_R1.tsv"
            tsv.parent.mkdir(parents=True, exist_ok=True)
            tsv.write_text("step\tselection_R1\n" + "".join(f"{e}\t{v}\n" for e, v in enumerate(values)))
    if reference:
        write_json(root / "reports" / "reference_points" / "metrics.json", REFERENCE)
    return {
        "params_file": str(root / "params.yaml"),
        "findings_file": str(root / "reports" / "findings.json"),
        "summary_file": str(root / "reports" / "study_summary.json"),
        "eval_main": str(root / "reports" / "eval" / "main"),
        "study_eval": str(root / "reports" / "study"),
        "live_dir": str(root / "dvclive"),
        "reference_file": str(root / "reports" / "reference_points" / "metrics.json"),
    }
