"""Tables of the ablation report (notebooks/ablations.py), each built from the study's files as loaded by
acsa.reports.study_files: the configurations, per configuration mean ± std over seeds, the findings with their
intervals, reference points beside the models, score kinds, plateaus and every run. Numbers are formatted
here (one decimal, signed differences) so that the tables and the sentences (acsa.reports.sentences) print
them alike. No torch import."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from acsa.config.study import METRICS
from acsa.reports.study_files import KINDS, METRIC_NAMES, Reference, StudyData


def aligned(table: pd.DataFrame, left: tuple[str, ...]) -> Any:
    """The table for display, its text columns `left` (and their headers) aligned left; numbers stay
    right-aligned. An empty table is returned as it is."""
    columns = [c for c in left if c in table.columns]
    if table.empty or not columns:
        return table
    positions = [table.columns.get_loc(c) for c in columns]
    headers = [{"selector": f"th.col_heading.col{i}", "props": "text-align: left"} for i in positions]
    return table.style.set_properties(subset=columns, **{"text-align": "left"}).set_table_styles(headers)


def number(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def signed(x: float) -> str:
    """`+1.2`, `-0.4`; `0.0` for what rounds to zero (never `-0.0`)."""
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def interval(low: float, high: float) -> str:
    return f"[{signed(low)}, {signed(high)}]"


def seed_list(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def mean_std(entry: dict[str, Any]) -> str:
    """`40.1 ± 1.2`, or the value alone for one seed (no standard deviation)."""
    std = entry.get("std")
    return f"{entry['mean']:.1f}" if std is None else f"{entry['mean']:.1f} ± {std:.1f}"


def describe(overrides: dict[str, Any]) -> str:
    """`model.use_local=false, image.parts=channels`; `defaults` for none."""
    if not overrides:
        return "defaults"
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items())


def final_entry(data: StudyData, name: str, metric: str) -> dict[str, Any] | None:
    """The summary of configuration `name`'s final score on `metric`: {mean, std, runs}; None if absent."""
    entry = (data.summary or {}).get(name)
    if entry is None:
        return None
    return entry["kinds"].get(entry["final_kind"], {}).get(metric)


# ---- 1. what was compared ----------------------------------------------------------------------------------


def configurations_table(data: StudyData) -> pd.DataFrame:
    study = data.study
    used: dict[str, list[str]] = {}
    for finding in study.findings:
        for side in (finding.a, finding.b):
            used.setdefault(side, []).append(finding.name)
    rows = []
    for name in data.shown:
        role = "main model" if name == study.main else ""
        rows.append(
            {
                "configuration": name + (" (main)" if role else ""),
                "overrides": describe(data.overrides(name)),
                "seeds": seed_list(data.seeds(name)),
                "findings": ", ".join(used.get(name, [])) or "–",
            }
        )
    return pd.DataFrame(rows).set_index("configuration")


# ---- 2. results --------------------------------------------------------------------------------------------


def results_table(data: StudyData) -> pd.DataFrame:
    """Per configuration, its final score's mean ± std over seeds of every metric."""
    rows = []
    for name, entry in (data.summary or {}).items():
        kind = entry["final_kind"]
        row = {"configuration": name, "score": kind, "seeds": seed_list(entry["seeds"])}
        row.update({METRIC_NAMES[m]: mean_std(entry["kinds"][kind][m]) for m in METRICS})
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration") if rows else pd.DataFrame()


def run_values(data: StudyData, kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Long table of every run's test value: configuration, seed, kind, final (bool), metric, value."""
    rows = []
    for name, entry in (data.summary or {}).items():
        for kind, table in entry["kinds"].items():
            if kinds is not None and kind not in kinds:
                continue
            for metric in METRICS:
                for seed, value in zip(entry["seeds"], table[metric]["runs"], strict=True):
                    rows.append(
                        {
                            "configuration": name,
                            "seed": seed,
                            "kind": kind,
                            "final": kind == entry["final_kind"],
                            "metric": metric,
                            "value": float(value),
                        }
                    )
    columns = ["configuration", "seed", "kind", "final", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


# ---- 3. findings -------------------------------------------------------------------------------------------


def findings_table(data: StudyData) -> pd.DataFrame:
    rows = []
    for name, r in (data.findings or {}).items():
        level = f"{100 * r.get('confidence', 0.95):g}%"
        rows.append(
            {
                "finding": name,
                "a vs b": f"{r['a']} vs {r['b']}",
                "metric": METRIC_NAMES.get(r["metric"], r["metric"]),
                "mean a": number(r["mean_a"]),
                "mean b": number(r["mean_b"]),
                "a − b": signed(r["difference"]),
                f"{level} interval": interval(r["ci_low"], r["ci_high"]),
                "seeds a / b": f"{seed_list(r['seeds_a'])} / {seed_list(r['seeds_b'])}",
                "verdict": r["verdict"],
            }
        )
    return pd.DataFrame(rows).set_index("finding") if rows else pd.DataFrame()


# ---- 4. reference points -----------------------------------------------------------------------------------


def ladder(data: StudyData, reference: Reference, metric: str) -> pd.DataFrame:
    """Rankers and configurations (mean of the final score) on one scale, best first: name, kind, value."""
    rows = [
        {"name": name, "kind": "reference", "value": reference.test[name][metric]}
        for name in reference.rankers
        if metric in reference.test[name]
    ]
    for name in data.summary or {}:
        entry = final_entry(data, name, metric)
        if entry is not None:
            rows.append({"name": name, "kind": "model", "value": float(entry["mean"])})
    table = pd.DataFrame(rows, columns=["name", "kind", "value"])
    return table.sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


def reference_table(data: StudyData, reference: Reference) -> pd.DataFrame:
    """Every ranker's test metrics and what it scores, with each configuration's mean final score, sorted by
    the page's metric."""
    rows = []
    for name, description in reference.rankers.items():
        rows.append(
            {
                "": name,
                "kind": "reference",
                "what it uses": description,
                **{METRIC_NAMES[m]: number(reference.test[name].get(m)) for m in METRICS},
                "_sort": reference.test[name].get(data.metric, float("nan")),
            }
        )
    for name in data.summary or {}:
        entries = {m: final_entry(data, name, m) for m in METRICS}
        rows.append(
            {
                "": name,
                "kind": "model",
                "what it uses": f"trained; {(data.summary or {})[name]['final_kind']} score, mean of "
                f"{len((data.summary or {})[name]['seeds'])} seed(s)",
                **{METRIC_NAMES[m]: number(e["mean"]) if e else "–" for m, e in entries.items()},
                "_sort": entries[data.metric]["mean"] if entries[data.metric] else float("nan"),
            }
        )
    table = pd.DataFrame(rows).sort_values("_sort", ascending=False, kind="stable")
    return table.drop(columns="_sort").set_index("")


# ---- 5. the global branch ----------------------------------------------------------------------------------


def score_kinds_table(data: StudyData, metric: str) -> pd.DataFrame:
    """Per configuration: mean ± std of the global, local and fused scores on `metric`; the final kind."""
    rows = []
    for name, entry in (data.summary or {}).items():
        row = {"configuration": name, "final score": entry["final_kind"]}
        for kind in KINDS:
            table = entry["kinds"].get(kind)
            row[kind] = mean_std(table[metric]) if table else "–"
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration") if rows else pd.DataFrame()


TEXT_REPRESENTATIONS = {
    "sentence": "sentence vector (the global branch's input)",
    "phrase_mean": "mean of its phrase vectors",
    "phrase_set": "its phrase vectors as a set (as the local branch)",
}


def text_features_table(text: dict[str, Any]) -> pd.DataFrame:
    """The text-feature diagnostic per caption representation (percent; AUC as a fraction)."""
    nn = text.get("nn_identity_R1") or {}
    auc = text.get("same_identity_auc") or {}
    probe = text.get("colour_probe") or {}
    rows = []
    for name in dict.fromkeys([*nn, *auc, *probe]):
        p = probe.get(name) or {}
        rows.append(
            {
                "caption as": TEXT_REPRESENTATIONS.get(name, name),
                "nearest caption same identity (%)": number(nn.get(name)),
                "same-identity AUC": "–" if auc.get(name) is None else f"{auc[name]:.3f}",
                "colour probe: right colour (%)": number(p.get("accuracy")) if p else "–",
                "colour probe: another item's colour (%)": number(p.get("other_colour")) if p else "–",
            }
        )
    return pd.DataFrame(rows).set_index("caption as") if rows else pd.DataFrame()


# ---- 6.-8. convergence, fusion weight, every run -----------------------------------------------------------


def plateau_table(data: StudyData) -> pd.DataFrame:
    """Per configuration and seed: validation R@1 gained over the last quarter of the epochs (least-squares
    line), `rising` when the run had not flattened."""
    rows = []
    for name, entry in (data.summary or {}).items():
        row: dict[str, Any] = {"configuration": name}
        for run in entry.get("plateau", []):
            gain, epochs = run.get("gain_last_quarter"), run.get("epochs")
            text = (
                "too few epochs"
                if gain is None
                else signed(gain) + ("" if run.get("flattened") else " rising")
            )
            row[f"seed {run['seed']}"] = f"{text} ({epochs} epoch{'s' * (epochs != 1)})"
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration").fillna("") if rows else pd.DataFrame()


def has_local(metrics: dict[str, Any]) -> bool:
    return "fused" in metrics.get("test", {})


def fusion_curve_table(data: StudyData) -> pd.DataFrame:
    """Long table: configuration, seed, weight, metric values, chosen (the weight validation picked)."""
    rows = []
    for (name, seed), curve in data.fusion_curves.items():
        metrics = data.metrics.get((name, seed), {})
        if not has_local(metrics):
            continue  # global only: every weight ranks alike
        for point in curve:
            chosen = abs(float(point["weight"]) - float(metrics.get("fusion_weight", float("nan")))) < 1e-9
            rows.append({"configuration": name, "seed": seed, **point, "chosen": chosen})
    return pd.DataFrame(rows, columns=["configuration", "seed", "weight", *METRICS, "chosen"])


def kept_epochs(data: StudyData) -> pd.DataFrame:
    """The epoch each run keeps (chosen on validation; 1-based): configuration, seed, epoch."""
    rows = [
        {"configuration": name, "seed": seed, "epoch": int(m["best_epoch"]) + 1}
        for (name, seed), m in data.metrics.items()
        if m.get("best_epoch") is not None and int(m["best_epoch"]) >= 0
    ]
    return pd.DataFrame(rows, columns=["configuration", "seed", "epoch"])


def runs_table(data: StudyData) -> pd.DataFrame:
    """One row per run: each metric as `global / local / fused` (the global score alone for a model without
    the local branch), the fusion weight and the epoch kept (both chosen on validation)."""
    rows = []
    for place in data.runs:
        metrics = data.metrics.get((place.configuration, place.seed))
        if metrics is None:
            continue
        kinds = [kind for kind in KINDS if kind in metrics["test"]]
        epoch = metrics.get("best_epoch")
        row: dict[str, Any] = {"configuration": place.configuration, "seed": place.seed}
        row["scores"] = " / ".join(kinds)
        for m in METRICS:
            row[METRIC_NAMES[m]] = " / ".join(number(metrics["test"][kind][m]) for kind in kinds)
        row["fusion weight"] = f"{metrics['fusion_weight']:g}" if has_local(metrics) else "–"
        row["epoch kept"] = "–" if epoch is None or epoch < 0 else int(epoch) + 1
        rows.append(row)
    return pd.DataFrame(rows).set_index(["configuration", "seed"]) if rows else pd.DataFrame()
