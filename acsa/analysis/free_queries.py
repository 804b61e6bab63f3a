"""Queries in a user's own words, through the search tool: what the explain stage runs for the visualisation
report's "Your own words" section (params.yaml `explain.free_queries`).

The queries go through acsa.search.api, the API behind `acsa search` and `acsa serve`, unchanged: the test
gallery is indexed with the model (`build_index` on the prepared split, into a temporary folder the caller
gives and that is removed afterwards), and each query is searched with its attention maps. So the report
shows what a user of the tool would get for the same words, with the same model and images.

Axes: Q free queries, K results kept per query, R image tokens, P phrases (the model's `data.num_phrases`,
real ones first, zeros after).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from acsa.errors import ConfigError, SearchError
from acsa.search.api import SearchIndex, build_index
from acsa.search.query import DEFAULT_CANDIDATES, check_query, check_top_k

log = logging.getLogger(__name__)

INDEX_FOLDER = ".search-index"  # inside the caller's folder; removed before the call returns


def check_free_queries(queries: list[str], top_k: int, origin: str) -> None:
    """Refuse, before any work, what the search tool would refuse: one line naming the params key."""
    try:
        check_top_k(top_k)
    except SearchError as err:
        raise ConfigError(f"{origin}: explain.free_top_k: {err}") from None
    for i, text in enumerate(queries):
        try:
            check_query(text)
        except SearchError as err:
            raise ConfigError(f"{origin}: explain.free_queries[{i}]: {err}") from None


def search_free_queries(
    model_dir: Path,
    prepared_dir: Path,
    split: str,
    queries: list[str],
    top_k: int,
    work: Path,
    image_paths: list[str],
    image_ids: list[int],
    origin: str = "params",
) -> tuple[dict, np.ndarray | None]:
    """Index the split's images with the model under `work`, search each query, remove the index.

    Returns the record written to free_queries.json (docs/data.md) and the attention a[r, p] of each result's
    tokens over its query's phrases, float32 [Q, K, R, P] (None for a model without the local branch, or
    without queries); a result's `image` is its row in `image_paths` (the split's gallery, in order)."""
    row_of = {path: row for row, path in enumerate(image_paths)}
    folder = Path(work) / INDEX_FOLDER
    try:
        built = build_index(model_dir, folder, prepared=prepared_dir, split=split, progress=False)
        if built.skipped:
            log.warning(
                "free queries: %d %s images not indexed (%s)", len(built.skipped), split, built.skipped[0]
            )
        index = SearchIndex.open(folder)
        model = index.model
        records = []
        maps = None
        if model.uses_local and queries:
            num_tokens = len(index.token_layout)
            maps = np.zeros((len(queries), top_k, num_tokens, model.params.data.num_phrases), np.float32)
        for q, text in enumerate(queries):
            try:
                response = index.search(text, top_k=top_k, attention=True)
            except SearchError as err:  # e.g. no noun phrase: known only once the extractor has run
                raise ConfigError(f"{origin}: explain.free_queries[{q}]: {err}") from None
            results = []
            for k, result in enumerate(response.results):
                row = row_of[result.key]
                results.append(
                    {
                        "rank": k + 1,
                        "image": row,
                        "path": result.key,
                        "id": image_ids[row],
                        "global": result.global_,
                        "local": result.local,
                        "fused": result.fused,
                    }
                )
                if maps is not None and result.attention is not None:
                    attention = np.asarray(result.attention, dtype=np.float32)  # [P_real, R]
                    maps[q, k, :, : attention.shape[0]] = attention.T
            records.append({"query": response.query, "phrases": response.phrases, "results": results})
        summary = {
            "api": "acsa.search.api.SearchIndex.search",
            "split": split,
            "images": len(index),
            "global_search": index.global_search.kind,
            "candidates": DEFAULT_CANDIDATES,
            "fusion_weight": index.fusion_weight,
            "fusion_weight_chosen_on": index.manifest.get("fusion_weight_source"),  # "val": by training
            "top_k": top_k,
            "queries": records,
        }
        del index, model  # its shard files are open until then
        return summary, maps
    finally:
        shutil.rmtree(folder, ignore_errors=True)
