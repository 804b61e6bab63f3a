"""Tables of the ablation report (notebooks/ablations.py), each built from the study's files as loaded by
acsa.reports.study_files: the configurations, per configuration mean ± std over seeds, reference points beside
the models, score kinds, the text-feature diagnostic, plateaus, validation and fusion curves and every run.
Numbers are written by acsa.reports.numbers, as the sentences write them. The claims table is in
acsa.reports.claims, the diagnostics' in acsa.reports.diagnostics and the training checks' in
acsa.reports.training_checks. No torch import."""

from __future__ import annotations

from typing import Any

import pandas as pd

from acsa.config.study import METRICS
from acsa.reports.numbers import count, describe, mean_std, number, plural, rate, seed_list, signed
from acsa.reports.study_files import KINDS, METRIC_NAMES, Reference, StudyData

TWIN_KEY = "model.twin_global"  # a global-only model whose second score is a second global branch


def aligned(table: pd.DataFrame, left: tuple[str, ...] = ()) -> Any:
    """The table for display: its cells and headers escaped as HTML (names and values come from files), its
    text columns `left` (and their headers) aligned left; numbers stay right-aligned."""
    if table.empty:
        return table
    styler = table.style.format(escape="html").format_index(escape="html", axis=0)
    styler = styler.format_index(escape="html", axis=1)
    columns = [c for c in left if c in table.columns]
    if not columns:
        return styler
    positions = [table.columns.get_loc(c) for c in columns]
    headers = [{"selector": f"th.col_heading.col{i}", "props": "text-align: left"} for i in positions]
    return styler.set_properties(subset=columns, **{"text-align": "left"}).set_table_styles(headers)


def final_entry(data: StudyData, name: str, metric: str) -> dict[str, Any] | None:
    """The summary of configuration `name`'s final score on `metric`: {mean, std, runs}; None if absent."""
    entry = (data.summary or {}).get(name)
    if entry is None:
        return None
    return entry["kinds"].get(entry["final_kind"], {}).get(metric)


def trainable_parameters(data: StudyData, name: str) -> int | None:
    """What configuration `name` trains: the summary's count, else its first run's; None if neither has it."""
    recorded = (data.summary or {}).get(name, {}).get("trainable_parameters")
    if recorded is None:
        recorded = next(
            (r.get("trainable_parameters") for r in data.runs if r["configuration"] == name), None
        )
    return None if recorded is None else int(recorded)


def second_score(data: StudyData, name: str) -> str:
    """What configuration `name`'s second score (the `local` kind) is: local alignment, a second global
    branch (the fusion control) or none."""
    model = data.settings[name].model
    if model.use_local:
        return "local alignment"
    return "second global branch" if getattr(model, "twin_global", False) else "–"


# ---- configurations and results ----------------------------------------------------------------------------


def configurations_table(data: StudyData) -> pd.DataFrame:
    """Per configuration: its overrides, the learning rate and budget it trains with (params.yaml after its
    overrides), its second score, trainable parameters, seeds and the findings that name it."""
    used: dict[str, list[str]] = {}
    for finding in data.study.findings:
        for side in dict.fromkeys((finding.a, finding.b)):
            used.setdefault(side, []).append(finding.name)
    rows = []
    for name in data.shown:
        train = data.settings[name].train
        rows.append(
            {
                "configuration": name + (" (main)" if name == data.study.main else ""),
                "overrides": describe(data.overrides(name)),
                "learning rate": rate(train.lr),
                "epochs": train.epochs,
                "second score": second_score(data, name),
                "trainable parameters": count(trainable_parameters(data, name)),
                "seeds": seed_list(data.seeds(name)) or "–",
                "findings": ", ".join(used.get(name, [])) or "–",
            }
        )
    return pd.DataFrame(rows).set_index("configuration")


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
                    final = kind == entry["final_kind"]
                    rows.append(
                        {"configuration": name, "seed": seed, "kind": kind, "final": final, "metric": metric,
                         "value": float(value)}
                    )  # fmt: skip
    return pd.DataFrame(rows, columns=["configuration", "seed", "kind", "final", "metric", "value"])


def score_kinds_table(data: StudyData, metric: str) -> pd.DataFrame:
    """Per configuration: mean ± std of the global, local and fused scores on `metric`; the final kind and
    what the second score is."""
    rows = []
    for name, entry in (data.summary or {}).items():
        row = {
            "configuration": name,
            "final score": entry["final_kind"],
            "second score": second_score(data, name),
        }
        for kind in KINDS:
            table = entry["kinds"].get(kind)
            row[kind] = mean_std(table[metric]) if table else "–"
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration") if rows else pd.DataFrame()


# ---- reference points --------------------------------------------------------------------------------------


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
    for name, summary in (data.summary or {}).items():
        entries = {m: final_entry(data, name, m) for m in METRICS}
        rows.append(
            {
                "": name,
                "kind": "model",
                "what it uses": f"trained; {summary['final_kind']} score, mean of {len(summary['seeds'])} "
                "seed(s)",
                **{METRIC_NAMES[m]: number(e["mean"]) if e else "–" for m, e in entries.items()},
                "_sort": entries[data.metric]["mean"] if entries[data.metric] else float("nan"),
            }
        )
    table = pd.DataFrame(rows).sort_values("_sort", ascending=False, kind="stable")
    return table.drop(columns="_sort").set_index("")


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


# ---- curves and every run ----------------------------------------------------------------------------------


def validation_curves(data: StudyData) -> pd.DataFrame:
    """Every run's validation R@1 of its final score per epoch (1-based), the kept epoch marked, and the
    longer-budget runs of the convergence check: configuration, seed, budget (study | longer), epoch, value,
    chosen."""
    rows = []
    sources = [("study", run) for run in data.runs]
    sources += [("longer", run) for run in data.longer_runs or [] if run.get("configuration") in data.shown]
    for budget, run in sources:
        kept = run.get("best_epoch") if budget == "study" else None
        for epoch, value in enumerate(run["validation_curve"], start=1):
            rows.append(
                {"configuration": run["configuration"], "seed": run["seed"], "budget": budget, "epoch": epoch,
                 "value": float(value), "chosen": kept is not None and epoch == kept + 1}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["configuration", "seed", "budget", "epoch", "value", "chosen"])


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
            row[f"seed {run['seed']}"] = f"{text} ({plural(epochs, 'epoch')})"
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration").fillna("") if rows else pd.DataFrame()


def has_second_score(run: dict[str, Any]) -> bool:
    return "fused" in run["test"]


def fusion_curve_table(data: StudyData) -> pd.DataFrame:
    """Long table: configuration, seed, weight, metric values, chosen (the weight validation picked)."""
    rows = []
    for run in data.runs:
        if not has_second_score(run):
            continue  # global only: every weight ranks alike
        for point in run.get("fusion_curve") or []:
            chosen = abs(float(point["weight"]) - float(run["fusion_weight"])) < 1e-9
            rows.append(
                {"configuration": run["configuration"], "seed": run["seed"], **point, "chosen": chosen}
            )
    return pd.DataFrame(rows, columns=["configuration", "seed", "weight", *METRICS, "chosen"])


def runs_table(data: StudyData) -> pd.DataFrame:
    """One row per run: each metric as `global / local / fused` (the global score alone for a model without a
    second score), the fusion weight and the epoch kept (both chosen on validation), the thread count."""
    rows = []
    for run in data.runs:
        kinds = [kind for kind in KINDS if kind in run["test"]]
        epoch = run.get("best_epoch")
        row: dict[str, Any] = {"configuration": run["configuration"], "seed": run["seed"]}
        row["scores"] = " / ".join(kinds)
        for m in METRICS:
            row[METRIC_NAMES[m]] = " / ".join(number(run["test"][kind][m]) for kind in kinds)
        row["fusion weight"] = f"{run['fusion_weight']:g}" if has_second_score(run) else "–"
        row["epoch kept"] = "–" if epoch is None or epoch < 0 else int(epoch) + 1
        row["threads"] = run.get("threads", "–")
        rows.append(row)
    return pd.DataFrame(rows).set_index(["configuration", "seed"]) if rows else pd.DataFrame()
