"""The visualisation report's "Your own words" section: queries written as a user would type them, which the
explain stage ran through the search tool's API (EXPLAIN_DIR/free_queries.json and
free_attention.safetensors, docs/data.md; loaded by acsa.reports.views.load_explained).

Queries and phrases are text from outside the code (params.yaml, and any query a user puts there): every
string from the data reaches the page through `html.escape`, as text of HTML elements (never Markdown, whose
punctuation would be read as markup), and reaches a figure with matplotlib's math delimiter escaped.
"""

from __future__ import annotations

import html
import textwrap
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from acsa.reports.views import Explained, draw_token_map, token_kinds


def _text(value: Any) -> str:
    """Data as HTML text: markup characters become entities."""
    return html.escape(str(value))


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _plain(text: str) -> str:
    """Data as matplotlib text: a `$` would start mathtext."""
    return text.replace("$", r"\$")


def setup_html(free: dict[str, Any]) -> str:
    """How the queries were run: the index, the global stage, the fusion."""
    weight, chosen_on = free["fusion_weight"], free.get("fusion_weight_chosen_on")
    source = "chosen on validation by training" if chosen_on == "val" else f"from: {chosen_on}"
    return (
        f"<p>Searched with <code>{_text(free['api'])}</code> in an index of the {_text(free['images'])} "
        f"{_text(free['split'])} images built with the main model; global search: "
        f"{_text(free['global_search'])}. The {_text(free['candidates'])} images with the highest global "
        f"score are candidates; the local branch scores each of them and they are ranked by fused = global + "
        f"{_text(f'{weight:g}')} × local (the weight {_text(source)}). Top {_text(free['top_k'])} per "
        "query.</p>"
    )


def query_html(record: dict[str, Any], number: int) -> str:
    """A query's heading, the noun phrases the tool extracted, and its results with their scores."""
    phrases = " · ".join(f"<code>{_text(p)}</code>" for p in record["phrases"]) or "(none)"
    rows = "".join(
        f"<tr><td>{_text(r['rank'])}</td><td><code>{_text(r['path'])}</code></td><td>{_text(r['id'])}</td>"
        f"<td>{_text(_score(r['global']))}</td><td>{_text(_score(r['local']))}</td>"
        f"<td>{_text(_score(r['fused']))}</td></tr>"
        for r in record["results"]
    )
    return (
        f"<h4>Query {number + 1}: “{_text(record['query'])}”</h4>"
        f"<p>Noun phrases the tool extracted: {phrases}</p>"
        "<table><thead><tr><th>rank</th><th>image</th><th>identity</th><th>global</th><th>local</th>"
        f"<th>fused</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def draw_results(explained: Explained, record: dict[str, Any], maps: np.ndarray | None) -> Figure:
    """One row per result, best first: the image with its rank, identity and scores, then for each phrase
    a[token, phrase] over the region stripes and over the window cells (as views.draw_attention draws them;
    one colour scale for the figure). `maps` [K, R, P] of this query, None for a model without attention."""
    results = record["results"]
    phrases = record["phrases"] if maps is not None else []
    tokens = explained.gallery["tokens"]
    kinds = token_kinds(tokens)
    pooled = [i for i, t in enumerate(tokens) if t["kind"] == "pooled"]
    columns = 1 + len(phrases) * len(kinds)
    fig, axes = plt.subplots(
        max(1, len(results)),
        columns,
        figsize=(1.05 * columns + (1.0 if phrases else 0.6), 2.05 * max(1, len(results)) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    vmax = float(maps[: len(results), :, : len(phrases)].max()) if phrases and results else 1.0
    cmap = plt.get_cmap("plasma")
    for k, result in enumerate(results):
        picture = explained.image(result["image"])
        ax = axes[k, 0]
        ax.imshow(picture, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"#{result['rank']} id {_plain(str(result['id']))}", fontsize=8)
        scores = [f"{kind} {_score(result[kind])}" for kind in ("fused", "global", "local")]
        ax.set_xlabel("\n".join(scores), fontsize=7)
        for p, phrase in enumerate(phrases):
            for c, kind in enumerate(kinds):
                ax = axes[k, 1 + p * len(kinds) + c]
                draw_token_map(ax, picture, tokens, maps[k, :, p], kind, vmax, cmap)
                if c == 0 and pooled:
                    ax.set_xlabel(f"{tokens[pooled[0]]['name']}: {maps[k, pooled[0], p]:.2f}", fontsize=7)
                if k == 0:
                    name = "\n".join(textwrap.wrap(_plain(phrase), 14)[:2])
                    where = "regions" if "region" in kind else "windows" if kind else ""
                    ax.set_title(f"{name}\n({where})", fontsize=8)
    if not results:
        axes[0, 0].set_axis_off()
    axes[0, 0].set_title("result", fontsize=8)
    if phrases and results:
        mappable = plt.cm.ScalarMappable(norm=plt.Normalize(0, vmax), cmap=cmap)
        reverse = explained.gallery.get("attention_direction") == "phrase_queries"
        label = "a'[phrase, token]" if reverse else "a[token, phrase]"
        fig.colorbar(mappable, ax=axes, shrink=0.6, label=label)
    return fig
