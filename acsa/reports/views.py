"""Helpers of the visualisation report (notebooks/visualisation.py): read the explain stage's outputs, pick
queries, and draw rankings, phrase attention over the image, the t-SNE map and attribute hit rates.

Inputs (the explain stage's outputs, docs/data.md): EXPLAIN_DIR/gallery.json, queries.json,
attention.safetensors, embedding.json, attribute_errors.json, free_queries.json, free_attention.safetensors;
the gallery images come from the prepared benchmark's image root (test/records.json). No torch import, so a
notebook kernel starts fast. The free-text queries are drawn by acsa.reports.search_views.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from acsa.reports.markup import markdown_text
from acsa.reports.notebook import as_list

MATCH, WRONG, OWN = "#2e9d4a", "#d62728", "#1f77b4"  # frame colours: correct, incorrect, the query's image


@dataclass
class Explained:
    gallery: dict[str, Any]
    queries: list[dict[str, Any]]
    attention: dict[str, np.ndarray] | None  # "top1" and "own": [Q, R, P]
    embedding: dict[str, Any]
    attribute_errors: dict[str, Any] | None
    image_root: Path
    free_queries: dict[str, Any] | None = None  # free_queries.json: queries through the search tool's API
    free_attention: np.ndarray | None = None  # free_attention.safetensors `maps`: [Q, K, R, P]

    def image(self, index: int) -> np.ndarray:
        """Gallery image `index` at the model's input size (token boxes are fractions of it)."""
        height, width = self.gallery["image_size"]
        with Image.open(self.image_root / self.gallery["image_paths"][index]) as image:
            shown = ImageOps.exif_transpose(image).convert("RGB")  # as the model saw it (acsa.data.images)
            return np.asarray(shown.resize((width, height), resample=Image.BICUBIC))


def load_explained(explain_dir: str | Path, prepared_dir: str | Path) -> Explained:
    explain_dir, prepared_dir = Path(explain_dir), Path(prepared_dir)

    def read(name: str) -> Any:
        path = explain_dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    gallery = read("gallery.json")
    if gallery is None:
        raise FileNotFoundError(
            f"{explain_dir}/gallery.json: not found (run the explain stage: dvc repro explain)"
        )
    from safetensors.numpy import load_file

    attention = free_attention = None
    if (explain_dir / "attention.safetensors").is_file():
        attention = load_file(str(explain_dir / "attention.safetensors"))
    if (explain_dir / "free_attention.safetensors").is_file():
        free_attention = load_file(str(explain_dir / "free_attention.safetensors"))["maps"]
    root = Path(json.loads((prepared_dir / "test" / "records.json").read_text())["image_root"])
    return Explained(
        gallery=gallery,
        queries=read("queries.json"),
        attention=attention,
        embedding=read("embedding.json"),
        attribute_errors=read("attribute_errors.json"),
        image_root=root if root.is_absolute() else prepared_dir / root,
        free_queries=read("free_queries.json"),
        free_attention=free_attention,
    )


# ---- which queries --------------------------------------------------------------------------------------


def pick_cases(queries: list[dict], n_success: int = 3, n_failure: int = 3) -> list[int]:
    """Successes: queries whose top-1 image matches, spread evenly over the test set; failures: the queries
    whose first match is ranked lowest (ties: the earlier query)."""
    hits = [q["query"] for q in queries if q["rank"] == 1]
    successes = (
        [hits[int(i)] for i in np.linspace(0, len(hits) - 1, min(n_success, len(hits)))] if hits else []
    )
    misses = sorted((q for q in queries if q["rank"] > 1), key=lambda q: (-q["rank"], q["query"]))
    return list(dict.fromkeys(successes)) + [q["query"] for q in misses[:n_failure]]


def chosen_cases(explained: Explained, queries, n_success: int, n_failure: int) -> list[int]:
    """The notebook's `queries` parameter (indices, "[3, 17]" or "3,17") checked against the test queries,
    or, when None, successes and failures picked by rank (`pick_cases`)."""
    wanted = as_list(queries)
    if wanted is None:
        return pick_cases(explained.queries, n_success, n_failure)
    outside = [q for q in wanted if not (isinstance(q, int) and 0 <= q < len(explained.queries))]
    if outside:
        raise ValueError(f"queries {outside}: the test split has queries 0..{len(explained.queries) - 1}")
    return wanted


def rank_table(queries: list[dict]) -> pd.DataFrame:
    """Share of test queries by the rank of their first match (fused and global score)."""
    bins = [(1, 1, "1"), (2, 5, "2-5"), (6, 10, "6-10"), (11, None, "> 10")]
    rows = []
    for lo, hi, label in bins:
        row = {"first match at rank": label}
        for key, name in (("rank", "fused (%)"), ("global_rank", "global only (%)")):
            n = sum(q[key] >= lo and (hi is None or q[key] <= hi) for q in queries)
            row[name] = round(100.0 * n / max(1, len(queries)), 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("first match at rank")


def code_span(text: object) -> str:
    """`text` (one line) as a Markdown code span, shown exactly as written: `<`, `&` and backslashes are not
    read inside one, and the fence is longer than any run of backticks in the text. Not the inline <code>
    element of markup.markdown_code: nbconvert's renderer with embedded images (the reports' HTML) re-parses
    each inline HTML tag on its own and empties the element, so a phrase reached the page as
    `<code></code>man`."""
    value = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value[:1] == "`" or value[-1:] == "`" else ""  # one space each side is stripped when read
    return f"{fence}{pad}{value}{pad}{fence}"


def case_markdown(explained: Explained, query: int) -> str:
    q = explained.queries[query]
    outcome = "success" if q["rank"] == 1 else "failure"
    phrases = " · ".join(code_span(p) for p in q["phrases"]) or "(none)"
    return (
        f"#### Query {query} — {outcome}: first match at rank {q['rank']} (global score alone: "
        f"{q['global_rank']}), identity {markdown_text(q['id'])}\n\n> {markdown_text(q['caption'])}\n\n"
        f"Noun phrases: {phrases}"
    )


# ---- drawing --------------------------------------------------------------------------------------------


def _frame(ax, colour: str, width: float = 4) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_ranking(explained: Explained, query: int) -> Figure:
    """The query's own image (blue), then the top-K gallery images framed green (match) or red (wrong)."""
    q = explained.queries[query]
    ids = explained.gallery["image_ids"]
    panels = [(q["image"], "query's image", OWN)] + [
        (index, f"#{k + 1} id {ids[index]}", MATCH if match else WRONG)
        for k, (index, match) in enumerate(zip(q["top"], q["top_match"], strict=True))
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.05 * len(panels), 2.2), squeeze=False)
    for ax, (index, title, colour) in zip(axes[0], panels, strict=True):
        ax.imshow(explained.image(index), interpolation="nearest")
        ax.set_title(title, fontsize=8, color=colour)
        _frame(ax, colour)
    fig.tight_layout(w_pad=0.3)
    return fig


def _heat(
    tokens: list[dict], values: np.ndarray, kinds: tuple[str, ...], size: tuple[int, int]
) -> np.ndarray:
    """Per-pixel attention of the tokens of `kinds`: [H, W], NaN where none pools, max where they overlap."""
    height, width = size
    heat = np.full((height, width), np.nan)
    for token, value in zip(tokens, values, strict=True):
        box = token["box"]
        if token["kind"] not in kinds or box is None:
            continue
        rows = slice(
            round(box["top"] * height), max(round(box["bottom"] * height), round(box["top"] * height) + 1)
        )
        cols = slice(
            round(box["left"] * width), max(round(box["right"] * width), round(box["left"] * width) + 1)
        )
        heat[rows, cols] = np.fmax(heat[rows, cols], value)
    return heat


def _overlay(heat: np.ndarray, vmax: float, cmap) -> np.ndarray:
    """RGBA of `heat`: colour and opacity grow with the weight, so low weights leave the picture visible."""
    scaled = np.clip(np.nan_to_num(heat, nan=0.0) / max(vmax, 1e-12), 0.0, 1.0)
    rgba = cmap(scaled)
    rgba[..., 3] = np.where(np.isnan(heat), 0.0, 0.75 * scaled)
    return rgba


def token_kinds(tokens: list[dict]) -> list[tuple[str, ...]]:
    """The kinds of token drawn together, a panel each: region stripes, then window cells (those present)."""
    return [
        kinds
        for kinds in (("region", "channel region"), ("window",))
        if any(t["kind"] in kinds for t in tokens)
    ] or [()]


def draw_token_map(
    ax, picture: np.ndarray, tokens: list[dict], values: np.ndarray, kinds: tuple[str, ...], vmax: float, cmap
) -> None:
    """`picture` [H, W, 3] with the weights `values` [R] of the tokens of `kinds` over the parts they pool,
    each token's weight written on it."""
    size = picture.shape[:2]
    ax.imshow(picture, interpolation="nearest")
    ax.imshow(_overlay(_heat(tokens, values, kinds, size), vmax, cmap), interpolation="nearest")
    for t, token in enumerate(tokens):
        if token["kind"] in kinds and token["box"] is not None:
            box = token["box"]
            y = (box["top"] + box["bottom"]) / 2 * size[0]
            x = (box["left"] + box["right"]) / 2 * size[1]
            ax.text(
                x,
                y,
                f"{values[t]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.75, "lw": 0},
            )
    ax.set_xticks([])
    ax.set_yticks([])


def draw_attention(explained: Explained, query: int, image: int, maps: np.ndarray, label: str) -> Figure:
    """For each phrase (a column): how much each image token attends to it, a[r, p], drawn over the part of
    the image the token pools — region tokens as horizontal stripes (top row), window tokens as grid cells
    (bottom row); the pooled token's weight is in the column title. One colour scale for the whole figure;
    the first column is the image itself. For a model scored with phrase_queries the maps are the phrase's
    attention over the tokens, a'[p, r] (each column sums to 1 over the tokens)."""
    q = explained.queries[query]
    phrases = q["phrases"]
    tokens = explained.gallery["tokens"]
    rows = token_kinds(tokens)
    picture = explained.image(image)
    vmax = float(maps[:, : len(phrases)].max()) if phrases else 1.0
    cmap = plt.get_cmap("plasma")
    fig, axes = plt.subplots(
        len(rows),
        len(phrases) + 1,
        figsize=(1.3 * (len(phrases) + 1) + 1.0, 2.3 * len(rows) + 0.7),
        squeeze=False,
        layout="constrained",
    )
    pooled = [i for i, t in enumerate(tokens) if t["kind"] == "pooled"]
    for r, kinds in enumerate(rows):
        axes[r, 0].imshow(picture, interpolation="nearest")
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        axes[r, 0].set_ylabel("regions" if "region" in kinds else "windows" if kinds else "", fontsize=9)
    axes[0, 0].set_title("image", fontsize=8)
    for p, phrase in enumerate(phrases):
        title = "\n".join(textwrap.wrap(phrase, 15)[:2])
        if pooled:
            title += f"\n{tokens[pooled[0]]['name']} token: {maps[pooled[0], p]:.2f}"
        for r, kinds in enumerate(rows):
            ax = axes[r, p + 1]
            draw_token_map(ax, picture, tokens, maps[:, p], kinds, vmax, cmap)
            if r == 0:
                ax.set_title(title, fontsize=8)
    if phrases:
        mappable = plt.cm.ScalarMappable(norm=plt.Normalize(0, vmax), cmap=cmap)
        reverse = explained.gallery.get("attention_direction") == "phrase_queries"
        label_text = "a'[phrase, token]" if reverse else "a[token, phrase]"
        fig.colorbar(mappable, ax=axes, shrink=0.8, label=label_text)
    fig.suptitle(label, fontsize=10, x=0.01, ha="left")
    return fig


def attention_views(explained: Explained, query: int) -> list[tuple[int, np.ndarray, str]]:
    """(gallery image, a [R, P], label) to draw for a query: its top-1 image and, when that one is wrong,
    the query's own image too."""
    if explained.attention is None:
        return []
    q = explained.queries[query]
    top1 = q["top"][0]
    verdict = "correct" if q["top_match"][0] else "wrong"
    top1_id = explained.gallery["image_ids"][top1]
    views = [(top1, explained.attention["top1"][query], f"top-1 image ({verdict}, id {top1_id})")]
    if not q["top_match"][0]:
        views.append((q["image"], explained.attention["own"][query], f"the query's own image (id {q['id']})"))
    return views


def draw_embedding(embedding: dict[str, Any]) -> Figure:
    """t-SNE map: colour = identity, circle = image, cross = caption."""
    points = pd.DataFrame(embedding["points"])
    ids = embedding["ids"]
    palette = plt.get_cmap("tab20" if len(ids) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(8, 6.5))
    for n, pid in enumerate(ids):
        colour = palette(n % palette.N)
        for kind, marker, size in (("image", "o", 60), ("text", "x", 35)):
            part = points[(points["id"] == pid) & (points["kind"] == kind)]
            ax.scatter(
                part["x"],
                part["y"],
                c=[colour],
                marker=marker,
                s=size,
                label=f"id {pid}" if kind == "image" else None,
                edgecolors="none" if marker == "o" else None,
            )
    ax.scatter([], [], c="black", marker="o", label="image")
    ax.scatter([], [], c="black", marker="x", label="caption")
    ax.legend(fontsize="x-small", ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f"t-SNE of global features, {len(ids)} test identities (perplexity {embedding['perplexity']:.0f})"
    )
    fig.tight_layout()
    return fig


# ---- attributes -----------------------------------------------------------------------------------------


def attribute_table(errors: dict[str, Any], min_stated: int = 1) -> pd.DataFrame:
    table = pd.DataFrame(errors["attributes"])
    table = table[table["stated"] >= min_stated].set_index("attribute")
    table.columns = [
        "queries stating it",
        "R@1 when stated (%)",
        "R@1 misses stating it",
        "top-1 contradicts it (% of those misses)",
        "top-1 differs on it (% of all misses)",
    ]
    return table.sort_values("R@1 when stated (%)").round(1)


def attribute_findings(errors: dict[str, Any], top: int = 3, min_misses: int = 5) -> str:
    """Which stated attributes the wrong top-1 images contradict most often (computed, for the report)."""
    rows = [a for a in errors["attributes"] if a["misses_stating"] >= min_misses]
    if not rows or not errors["misses"]:
        return f"Too few R@1 misses (at least {min_misses} stating an attribute) to tell which are confused."
    worst = sorted(rows, key=lambda a: -a["top1_differs_when_stated"])[:top]
    kept = sorted(rows, key=lambda a: a["top1_differs_when_stated"])[:top]

    def listed(attributes: list[dict]) -> str:
        return ", ".join(
            f"{code_span(a['attribute'])} ({a['top1_differs_when_stated']:.0f}%)" for a in attributes
        )

    noise = errors["by_caption_noise"]
    text = (
        f"R@1 is {errors['R1']:.1f}% over {errors['queries']} test queries ({errors['misses']} misses). "
        f"In the misses, the top-1 image most often contradicts the caption on {listed(worst)}: the model "
        f"ranks first a person who differs on what the caption states. It least often differs on "
        f"{listed(kept)}: those are matched even when the ranking fails (attributes stated in at least "
        f"{min_misses} misses)."
    )
    if noise["noisy"]["queries"]:
        text += (
            f" Captions with one deliberately wrong attribute ({noise['noisy']['queries']} queries) reach "
            f"R@1 {noise['noisy']['R1']:.1f}% against {noise['clean']['R1']:.1f}% for clean ones."
        )
    return text


def draw_attribute_hits(errors: dict[str, Any], min_stated: int = 1) -> Figure:
    """Left: R@1 of the queries stating each attribute; right: in R@1 misses stating it, how often the top-1
    image's identity differs on it. `n` beside each bar: how many queries the percentage is over."""
    table = pd.DataFrame(errors["attributes"])
    table = table[table["stated"] >= min_stated].sort_values("R1_when_stated").set_index("attribute")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * len(table) + 1.5), sharey=True)
    panels = (
        (axes[0], "R1_when_stated", "stated", "R@1 (%) of queries stating the attribute", "#4c72b0"),
        (
            axes[1],
            "top1_differs_when_stated",
            "misses_stating",
            "R@1 misses: top-1 contradicts it (%)",
            "#c44e52",
        ),
    )
    for ax, column, count, title, colour in panels:
        values = table[column].fillna(0)
        ax.barh(table.index, values, color=colour)
        for y, (value, n) in enumerate(zip(values, table[count], strict=True)):
            ax.text(min(value, 100) + 1, y, f"n={n}", va="center", fontsize=7, color="#444444")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 112)
    axes[0].axvline(errors["R1"], color="black", lw=1, ls="--", label=f"all queries ({errors['R1']:.1f})")
    axes[0].legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig
