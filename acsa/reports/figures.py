"""Figures of the ablation report: metric bars with every seed shown, score kinds, fusion-weight and training
curves. Each function takes a table from `acsa.reports.tables` and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from acsa.reports.tables import NAMES

CURVE_TITLES = {
    "train/loss": "training loss (sum of terms)",
    "val/selection_R1": "validation R@1 (model selection)",
    "val/global/R1": "validation R@1, global score",
}


def setup() -> None:
    """One look for every report figure; PNG output so the HTML embeds images (no JavaScript)."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 96, "savefig.dpi": 96, "axes.titlesize": "medium"})


def show(fig: Figure) -> None:
    """Display a figure once in a notebook (as PNG) and free it."""
    from IPython.display import display

    display(fig)
    plt.close(fig)


def variant_colours(names: list[str]) -> dict[str, tuple]:
    """One colour per variant, the same in every figure of a report."""
    return dict(zip(names, sns.color_palette("tab10", max(10, len(names))), strict=False))


def metric_bars(results: pd.DataFrame, metrics: tuple[str, ...] = ("R1", "R5", "mAP")) -> Figure:
    """Bars: mean over seeds of each variant group's final score; dots: each seed; whiskers: min-max."""
    final = results[results["final"]]
    order = list(dict.fromkeys(final["group"]))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(order) + 1.6), sharey=True
    )
    for ax, metric in zip(axes, metrics, strict=True):
        sns.barplot(
            data=final,
            y="group",
            x=metric,
            order=order,
            errorbar=("pi", 100),
            color="#8fb3d9",
            ax=ax,
            capsize=0.2,
            err_kws={"linewidth": 1.2},
        )
        sns.stripplot(data=final, y="group", x=metric, order=order, color="#1f3b5c", size=5, ax=ax)
        ax.set_title(f"test {NAMES[metric]} (%)")
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.tight_layout()
    return fig


def score_kinds(results: pd.DataFrame, metric: str = "R1") -> Figure:
    """Each model's global, local (re-rank of the global top-k) and fused scores."""
    order = list(dict.fromkeys(results["variant"]))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(order) + 1.4))
    sns.barplot(data=results, y="variant", x=metric, hue="kind", order=order, ax=ax, palette="Set2")
    ax.set_title(f"test {NAMES[metric]} (%) by score")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.legend(title="score", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def fusion_curves(curves: pd.DataFrame, metric: str = "R1", colours: dict | None = None) -> Figure:
    """Validation metric against the fusion weight; the chosen weight is circled."""
    fig, ax = plt.subplots(figsize=(8.5, 4))
    if curves.empty:
        ax.text(0.5, 0.5, "no variant with a local branch", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    colours = colours or variant_colours(list(dict.fromkeys(curves["variant"])))
    sns.lineplot(data=curves, x="weight", y=metric, hue="variant", marker="o", ax=ax, palette=colours)
    chosen = curves[curves["chosen"]]
    ax.scatter(
        chosen["weight"],
        chosen[metric],
        s=160,
        facecolors="none",
        edgecolors="black",
        zorder=5,
        label="chosen",
    )
    ax.set_xscale("symlog", linthresh=0.25)
    weights = sorted(curves["weight"].unique())
    ax.set_xticks(weights, [f"{w:g}" for w in weights])
    ax.minorticks_off()
    ax.set_xlabel("fusion weight w (S = global + w · local)")
    ax.set_ylabel(f"validation {NAMES[metric]} (%)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # off the curves
    fig.tight_layout()
    return fig


def training_curves(curves: pd.DataFrame, colours: dict | None = None) -> Figure:
    """One panel per logged metric, one line per variant, per epoch."""
    metrics = list(dict.fromkeys(curves["metric"]))
    colours = colours or variant_colours(list(dict.fromkeys(curves["variant"])))
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        part = curves[curves["metric"] == metric]
        sns.lineplot(
            data=part, x="step", y="value", hue="variant", marker="o", ax=ax, palette=colours, legend=False
        )
        ax.set_title(CURVE_TITLES.get(metric, metric))
        ax.set_xlabel("epoch")
        ax.set_ylabel("")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = [name for name in colours if name in set(curves["variant"])]
    handles = [Line2D([], [], color=colours[name], marker="o", label=name) for name in shown]
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.legend(handles=handles, loc="center right", fontsize="small", frameon=False)
    return fig
