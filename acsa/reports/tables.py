"""Tables of the ablation report (notebooks/ablations.py): which variants exist, their metrics with seed
spread and the written findings (figures: acsa.reports.figures).

Everything here reads the stages' outputs and presents them; nothing is trained or scored:
  params.yaml `ablations`                     the variants and their overrides (the main model has none)
  EVAL_DIR/<variant>/metrics.json             test R1/R5/R10/mAP/mINP per score kind (evaluate stage)
  EVAL_DIR/<variant>/fusion_curve.json        validation R1/mAP per fusion weight (evaluate stage)
  LIVE_DIR/<variant>/plots/metrics/**.tsv     per-epoch training curves (DVCLive, train stage)

Variants that differ only in `train.seed` are repeats of one configuration (a "group"): the report gives their
mean and half-range. No torch import, so a notebook kernel starts fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from acsa.config import read_params_file
from acsa.reports.markup import markdown_code, markdown_text

MAIN = "main"
METRICS = ("R1", "R5", "R10", "mAP", "mINP")
KINDS = ("global", "local", "fused")
SEED_KEY = "train.seed"
GLOBAL_ONLY = {"model.use_local": False}  # the overrides that make a global-alignment-only model


@dataclass(frozen=True)
class Variant:
    """One trained model: the main one (no overrides) or a named ablation of params.yaml."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def config(self) -> dict[str, Any]:
        """The overrides that define the configuration, without the seed."""
        return {k: v for k, v in sorted(self.overrides.items()) if k != SEED_KEY}

    @property
    def group(self) -> str:
        return json.dumps(self.config, sort_keys=True)


def as_list(value: Any) -> list | None:
    """A notebook parameter that holds a list: a list, None, or text as papermill's `-p` passes it
    ("[a, b]" in YAML, or "a,b")."""
    if value is None or isinstance(value, list | tuple):
        return None if value is None else list(value)
    text = str(value).strip()
    if text.startswith("["):
        return list(yaml.safe_load(text))
    return [yaml.safe_load(item.strip()) for item in text.split(",") if item.strip()]


def declared_variants(params_file: str | Path, names: list[str] | str | None = None) -> list[Variant]:
    """The main model and every ablation of `params_file`, in file order; `names` picks (and orders) some."""
    names = as_list(names)
    raw = read_params_file(params_file)
    base_seed = int((raw.get("train") or {}).get("seed", 0))
    ablations = raw.get("ablations") or {}
    variants = [Variant(MAIN, {}, base_seed)]
    for name, overrides in ablations.items():
        overrides = dict(overrides or {})
        variants.append(Variant(name, overrides, int(overrides.get(SEED_KEY, base_seed))))
    if names is None:
        return variants
    by_name = {v.name: v for v in variants}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; {params_file} declares: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def describe(config: dict[str, Any]) -> str:
    """`model.use_local=false, image.parts=channels`; `defaults` for the main configuration."""
    if not config:
        return "defaults"
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in config.items())


def group_labels(variants: list[Variant]) -> dict[str, str]:
    """Group key -> label: the name of its first variant ("main" is shown as "full ACSA (main)")."""
    labels: dict[str, str] = {}
    for v in variants:
        labels.setdefault(v.group, "full ACSA (main)" if v.name == MAIN else v.name)
    return labels


# ---- metrics --------------------------------------------------------------------------------------------


def load_results(variants: list[Variant], eval_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per (variant, score kind) with R1..mINP; `final` marks the model's own score (fused when it has
    a local branch, else global). Returns the table and the variants whose metrics.json is missing."""
    labels = group_labels(variants)
    rows, missing = [], []
    for v in variants:
        path = Path(eval_dir) / v.name / "metrics.json"
        if not path.is_file():
            missing.append(v.name)
            continue
        metrics = json.loads(path.read_text())
        test = metrics["test"]
        final = "fused" if "fused" in test else "global"
        for kind in KINDS:
            if kind in test:
                rows.append(
                    {
                        "variant": v.name,
                        "group": labels[v.group],
                        "config": describe(v.config),
                        "seed": v.seed,
                        "kind": kind,
                        "final": kind == final,
                        "fusion_weight": metrics.get("fusion_weight") if final == "fused" else None,
                        **{m: float(test[kind][m]) for m in METRICS},
                    }
                )
    if not rows:
        raise FileNotFoundError(
            f"{eval_dir}: no metrics.json for any of {', '.join(v.name for v in variants)} "
            "(run the evaluate stages first: dvc repro)"
        )
    columns = ["variant", "group", "config", "seed", "kind", "final", "fusion_weight", *METRICS]
    return pd.DataFrame(rows, columns=columns), missing


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per group (final score): seeds, and mean and half-range (max - min) / 2 of every metric."""
    final = results[results["final"]]
    rows = []
    for group, part in final.groupby("group", sort=False):
        row = {"group": group, "config": part["config"].iloc[0], "seeds": sorted(part["seed"].tolist())}
        row["n_seeds"] = len(part)
        for m in METRICS:
            row[f"{m}_mean"] = part[m].mean()
            row[f"{m}_half_range"] = (part[m].max() - part[m].min()) / 2
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as text: `mean ± half-range` for groups with several seeds, the value for one seed."""
    table = pd.DataFrame(
        {"variant": summary["group"], "overrides": summary["config"], "seeds": summary["seeds"].map(_seeds)}
    )
    for m in METRICS:
        table[m] = [
            f"{mean:.1f} ± {half:.1f}" if n > 1 else f"{mean:.1f}"
            for mean, half, n in zip(
                summary[f"{m}_mean"], summary[f"{m}_half_range"], summary["n_seeds"], strict=True
            )
        ]
    return table.set_index("variant")


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def seed_noise(summary: pd.DataFrame, metric: str = "R1") -> float | None:
    """The largest seed range (max - min) of `metric` over groups trained with several seeds; None if none."""
    repeated = summary[summary["n_seeds"] > 1]
    if repeated.empty:
        return None
    return float(2 * repeated[f"{metric}_half_range"].max())


# ---- findings ----------------------------------------------------------------------------------------------

NAMES = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "mAP": "mAP", "mINP": "mINP"}


def _signed(x: float) -> str:
    return f"{x:+.1f}"


def _group_of(summary: pd.DataFrame, variants: list[Variant], config: dict[str, Any]) -> pd.Series | None:
    labels = group_labels(variants)
    key = json.dumps(dict(sorted(config.items())), sort_keys=True)
    if key not in labels:
        return None
    rows = summary[summary["group"] == labels[key]]
    return None if rows.empty else rows.iloc[0]


def _spread(row: pd.Series, metric: str) -> str:
    if row["n_seeds"] < 2:
        return "1 seed"
    return f"± {row[f'{metric}_half_range']:.1f} over seeds {_seeds(row['seeds'])}"


def _verdict(delta: float, noise: float | None) -> str:
    if noise is None:
        return "no repeated seeds to compare it with"
    if abs(delta) > noise:
        return f"beyond the seed spread ({noise:.1f})"
    return f"within the seed spread ({noise:.1f}): not distinguishable from noise"


def findings(
    results: pd.DataFrame, variants: list[Variant], metric: str = "R1", second: str = "mAP"
) -> list[str]:
    """The report's written findings (Markdown paragraphs), every number computed from `results`.

    Rules: a group's number is its mean over seeds; a difference is "beyond noise" when it exceeds the
    largest seed range (max - min) seen in any repeated configuration.
    """
    if results.empty:
        return ["No metrics found: run `dvc repro` first."]
    summary = seed_summary(results)
    name, noise = NAMES[metric], seed_noise(summary, metric)
    full = _group_of(summary, variants, {})
    paragraphs = []
    if noise is None:
        paragraphs.append(
            f"**Seed spread.** No configuration was trained with more than one seed, so differences "
            f"cannot be compared with seed noise (add e.g. `full_seed1: {{{SEED_KEY}: 1}}` to `ablations`)."
        )
    else:
        repeated = summary[summary["n_seeds"] > 1]
        spreads = "; ".join(
            f"{markdown_text(row['group'])}: {row[f'{metric}_mean']:.1f} {_spread(row, metric)}"
            for _, row in repeated.iterrows()
        )
        paragraphs.append(
            f"**Seed spread.** {name} (mean ± half-range) — {spreads}. A difference is called beyond noise "
            f"when it exceeds {noise:.1f} points, the largest seed range (max − min) of a repeated "
            "configuration."
        )
    if full is None:
        paragraphs.append("**Full ACSA.** The main model's metrics are missing: nothing to compare with.")
        return paragraphs

    base = _group_of(summary, variants, GLOBAL_ONLY)
    if base is not None:
        delta = full[f"{metric}_mean"] - base[f"{metric}_mean"]
        delta2 = full[f"{second}_mean"] - base[f"{second}_mean"]
        numbers = (
            f"full ACSA {name} {full[f'{metric}_mean']:.1f} ({_spread(full, metric)}) vs "
            f"global-only {base[f'{metric}_mean']:.1f} ({_spread(base, metric)}): {_signed(delta)} points, "
            f"{_verdict(delta, noise)}; {NAMES[second]} {_signed(delta2)}"
        )
        if delta <= 0:
            head = "Local alignment does not beat global-only alignment"
        elif noise is not None and delta <= noise:
            head = "Local alignment does not beat global-only alignment beyond noise"
        else:
            head = "Local alignment helps"
        paragraphs.append(f"**{head}.** The cross-attention branch (model.use_local): {numbers}.")
    else:
        paragraphs.append(
            "**Local alignment.** No global-only variant (`model.use_local: false`) was evaluated: the "
            "cross-attention branch cannot be compared with global alignment alone."
        )

    own = results[(results["group"] == full["group"]) & results["kind"].isin(["global", "fused"])]
    by_kind = own.groupby("kind")[metric].mean()
    if {"global", "fused"} <= set(by_kind.index):
        weights = sorted({float(w) for w in own["fusion_weight"].dropna()})
        gain = by_kind["fused"] - by_kind["global"]
        paragraphs.append(
            f"**The local score at test time.** On the full models themselves, {name} is "
            f"{by_kind['global']:.1f} with the global score alone and {by_kind['fused']:.1f} with the local "
            f"score fused in (weight chosen on validation: {', '.join(f'{w:g}' for w in weights)}): "
            f"{_signed(gain)} points."
        )

    lines = []
    for _, row in summary.iterrows():
        if row["group"] in (full["group"], None if base is None else base["group"]):
            continue
        delta = row[f"{metric}_mean"] - full[f"{metric}_mean"]
        delta2 = row[f"{second}_mean"] - full[f"{second}_mean"]
        lines.append(
            f"- {markdown_code(row['group'])} ({markdown_text(row['config'])}): "
            f"{name} {row[f'{metric}_mean']:.1f} "
            f"({_spread(row, metric)}), "
            f"{_signed(delta)} vs full ACSA, {_verdict(delta, noise)}; {NAMES[second]} {_signed(delta2)}."
        )
    if lines:
        paragraphs.append("**Components** (each variant against full ACSA):\n\n" + "\n".join(lines))
    return paragraphs


# ---- curves ------------------------------------------------------------------------------------------------


def load_fusion_curves(variants: list[Variant], eval_dir: str | Path) -> pd.DataFrame:
    """Validation metrics per fusion weight, for the variants with a local branch; `chosen` marks the weight
    the evaluate stage picked."""
    rows = []
    for v in variants:
        folder = Path(eval_dir) / v.name
        if not (folder / "fusion_curve.json").is_file() or not (folder / "metrics.json").is_file():
            continue
        metrics = json.loads((folder / "metrics.json").read_text())
        if metrics.get("local_mode", "none") == "none":
            continue  # global only: every weight gives the same ranking
        for point in json.loads((folder / "fusion_curve.json").read_text()):
            rows.append(
                {
                    "variant": v.name,
                    **point,
                    "chosen": math.isclose(point["weight"], metrics["fusion_weight"]),
                }
            )
    return pd.DataFrame(rows, columns=["variant", "weight", *METRICS, "chosen"])


def load_training_curves(
    variants: list[Variant], live_dir: str | Path, metrics: tuple[str, ...]
) -> pd.DataFrame:
    """Per-epoch DVCLive curves: variant, metric (e.g. `train/loss`), step, value."""
    frames = []
    for v in variants:
        for metric in metrics:
            path = Path(live_dir) / v.name / "plots" / "metrics" / f"{metric}.tsv"
            if not path.is_file():
                continue
            tsv = pd.read_csv(path, sep="\t")
            value = [c for c in tsv.columns if c not in ("step", "timestamp")][0]
            frames.append(
                pd.DataFrame({"variant": v.name, "metric": metric, "step": tsv["step"], "value": tsv[value]})
            )
    if not frames:
        return pd.DataFrame(columns=["variant", "metric", "step", "value"])
    return pd.concat(frames, ignore_index=True)
