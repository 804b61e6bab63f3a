"""Figures of the ablation report (notebooks/ablations.py), drawn from the report's tables: bars with every
run as a dot, the models among the reference rankers, score kinds, each configuration on the two query
subsets, the attribute probes, validation curves per configuration (with the longer-budget runs), the
learning-rate sweep and fusion-weight curves. Each returns a matplotlib Figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from acsa.reports.study_files import METRIC_NAMES

BAR, DOT = "#8fb3d9", "#1f3b5c"


def seed_colours(seeds: list[int]) -> dict[int, tuple]:
    """One colour per seed, the same in every panel."""
    return dict(zip(sorted(seeds), sns.color_palette("tab10", max(10, len(seeds))), strict=False))


def _empty(message: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def run_bars(values: pd.DataFrame, metrics: tuple[str, ...] = ("R1", "R5", "mAP")) -> Figure:
    """Bars: each configuration's mean over seeds (final score); dots: every run.
    `values`: configuration, seed, final, metric, value (tables.run_values)."""
    final = values[values["final"]]
    if final.empty:
        return _empty("no results")
    order = list(dict.fromkeys(final["configuration"]))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.2 * len(metrics), 0.42 * len(order) + 1.5), sharey=True, squeeze=False
    )
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = final[final["metric"] == metric]
        sns.barplot(data=part, y="configuration", x="value", order=order, errorbar=None, color=BAR, ax=ax)
        sns.stripplot(
            data=part, y="configuration", x="value", order=order, color=DOT, size=5, jitter=0.15, ax=ax
        )
        ax.set_title(f"test {METRIC_NAMES[metric]} (%)")
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.tight_layout()
    return fig


def reference_ladder(values: pd.DataFrame, rankers: pd.DataFrame, metric: str) -> Figure:
    """Every run's final score (dots; bar = mean) with the reference rankers as labelled vertical lines.
    `values` as run_bars; `rankers`: name, value."""
    final = values[(values["final"]) & (values["metric"] == metric)]
    order = list(dict.fromkeys(final["configuration"]))
    fig, ax = plt.subplots(figsize=(10, 0.42 * max(1, len(order)) + 1.9))
    if not final.empty:
        sns.barplot(data=final, y="configuration", x="value", order=order, errorbar=None, color=BAR, ax=ax)
        sns.stripplot(data=final, y="configuration", x="value", order=order, color=DOT, size=5, ax=ax)
    ranked = rankers.sort_values("value").reset_index(drop=True)
    for i, row in ranked.iterrows():
        ax.axvline(row["value"], color="#b5433a", linestyle="--", linewidth=1)
        ax.annotate(
            f"{row['name']} {row['value']:.1f}",
            xy=(row["value"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2 + 11 * (i % 2)),  # alternate heights so that close lines keep readable labels
            textcoords="offset points",
            rotation=0,
            fontsize="x-small",
            color="#b5433a",
        )
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"test {METRIC_NAMES[metric]} (%)")
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


def score_kinds(values: pd.DataFrame, metric: str) -> Figure:
    """Per configuration, the mean of its global, local and fused scores (bars) and every run (dots)."""
    part = values[values["metric"] == metric]
    if part.empty:
        return _empty("no results")
    order = list(dict.fromkeys(part["configuration"]))
    kinds = [k for k in ("global", "local", "fused") if k in set(part["kind"])]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(order) + 1.5))
    sns.barplot(
        data=part, y="configuration", x="value", hue="kind", order=order, hue_order=kinds, errorbar=None,
        palette="Set2", ax=ax,
    )  # fmt: skip
    sns.stripplot(
        data=part, y="configuration", x="value", hue="kind", order=order, hue_order=kinds, dodge=True,
        palette="dark:#333333", size=3.5, legend=False, ax=ax,
    )  # fmt: skip
    ax.set_title(f"test {METRIC_NAMES[metric]} (%) by score")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.legend(title="score", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def _panels(names: list[str], columns: int = 4) -> tuple[Figure, list]:
    rows = math.ceil(len(names) / columns)
    cols = min(columns, len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows + 0.4), sharey=True, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(names) :]:
        ax.set_axis_off()
    return fig, flat[: len(names)]


def _seed_panels(table: pd.DataFrame, x: str, y: str, marked: str) -> tuple[Figure, list]:
    """One panel per configuration of `table` (configuration, seed, x, y, chosen[, budget]), a line per seed
    (dashed for the `longer` budget), the chosen points circled; a legend of the seeds and of `marked` (what
    a circle means) below."""
    names = list(dict.fromkeys(table["configuration"]))
    colours = seed_colours(list(set(table["seed"])))
    if "budget" not in table.columns:
        table = table.assign(budget="study")
    fig, axes = _panels(names)
    for ax, name in zip(axes, names, strict=True):
        for (seed, budget), part in table[table["configuration"] == name].groupby(["seed", "budget"]):
            part = part.sort_values(x)
            style = "--" if budget == "longer" else "-"
            ax.plot(part[x], part[y], style, marker="o", markersize=3, color=colours[seed])
            chosen = part[part["chosen"]]
            ax.scatter(
                chosen[x], chosen[y], s=90, facecolors="none", edgecolors="black", zorder=5, clip_on=False
            )
        ax.set_title(name)
    handles = [plt.Line2D([], [], color=c, marker="o", label=f"seed {s}") for s, c in colours.items()]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="black",
                              markersize=9, label=marked))  # fmt: skip
    if (table["budget"] == "longer").any():
        handles.append(plt.Line2D([], [], color="grey", linestyle="--", label="longer budget"))
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, fontsize="small"
    )
    return fig, axes


def validation_curves(curves: pd.DataFrame) -> Figure:
    """One panel per configuration: validation R@1 per epoch, a line per seed, the kept epoch circled, the
    convergence check's longer runs dashed. `curves`: tables.validation_curves."""
    if curves.empty:
        return _empty("no validation curves")
    fig, axes = _seed_panels(curves, "epoch", "value", "epoch kept")
    last = int(curves["epoch"].max())
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes[0].set_ylabel("validation R@1 (%)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def fusion_curves(curves: pd.DataFrame, metric: str = "R1") -> Figure:
    """One panel per configuration with a local branch: validation `metric` against the fusion weight, a line
    per seed, the chosen weight circled. `curves`: tables.fusion_curve_table."""
    if curves.empty:
        return _empty("no configuration with a local branch")
    weights = sorted(curves["weight"].unique())  # evenly spaced: the candidates span 0 to 8 and beyond
    curves = curves.assign(position=curves["weight"].map({w: i for i, w in enumerate(weights)}))
    fig, axes = _seed_panels(curves, "position", metric, "chosen")
    for ax in axes:
        ax.set_xticks(range(len(weights)), [f"{w:g}" for w in weights], fontsize="small")
        ax.set_xlim(-0.4, len(weights) - 0.6)
        ax.set_xlabel("fusion weight w (candidates)")
    axes[0].set_ylabel(f"validation {METRIC_NAMES[metric]} (%)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def subset_dots(means: dict[tuple[str, str], dict[str, float]], metric: str) -> Figure:
    """Per configuration and score kind, its mean on all queries and on the fine-evidence queries, joined by
    a line. `means`: diagnostics.subset_means."""
    rows = [
        (f"{name} ({kind})", m) for (name, kind), m in means.items() if "all" in m and "fine_evidence" in m
    ]
    if not rows:
        return _empty("no results on the fine-evidence queries")
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.3))
    for y, (_, m) in enumerate(rows):
        ax.plot([m["all"], m["fine_evidence"]], [y, y], color="#bbbbbb", zorder=1)
    ax.scatter([m["all"] for _, m in rows], range(len(rows)), color=DOT, label="all queries", zorder=2)
    ax.scatter([m["fine_evidence"] for _, m in rows], range(len(rows)), color="#b5433a",
               label="fine-evidence queries", zorder=2)  # fmt: skip
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"test {METRIC_NAMES[metric]} (%), mean over seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def probe_margins(margins: pd.DataFrame) -> Figure:
    """Heat map of each representation's probe accuracy minus the attribute's majority share (points).
    `margins`: diagnostics.probe_margins (representations x attributes; NaN: not probed)."""
    if margins.empty:
        return _empty("no probes")
    fig, ax = plt.subplots(figsize=(0.6 * margins.shape[1] + 3.5, 0.32 * margins.shape[0] + 1.9))
    sns.heatmap(
        margins, cmap="RdBu", center=0, annot=True, fmt=".0f", annot_kws={"fontsize": "x-small"},
        cbar_kws={"label": "accuracy − majority (points)"}, ax=ax,
    )  # fmt: skip
    ax.set_xlabel("")
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


def sweep_lines(results: dict[str, dict[float, float]], chosen: dict[str, float]) -> Figure:
    """Validation R@1 against the learning rate, a line per configuration, params.yaml's rate circled.
    `results`: training_checks.grid_results; `chosen`: configuration -> its train.lr."""
    if not results:
        return _empty("no learning-rate sweep")
    fig, ax = plt.subplots(figsize=(8, 4))
    palette = sns.color_palette("tab10", max(10, len(results)))
    for colour, (name, points) in zip(palette, results.items(), strict=False):
        rates = sorted(points)
        ax.plot(rates, [points[r] for r in rates], marker="o", color=colour, label=name)
        if chosen.get(name) in points:
            ax.scatter([chosen[name]], [points[chosen[name]]], s=110, facecolors="none", edgecolors="black")
    rates = sorted({r for p in results.values() for r in p})
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("learning rate (circled: params.yaml's)")
    ax.set_ylabel("best validation R@1 (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
