"""Text -> image retrieval metrics (method.md §5; IRRA's `rank` is the reference protocol).

Every query is a caption, the gallery every test image once; a match is a gallery image of the query's
identity. Per query the gallery is sorted by similarity, descending; ties keep gallery order (stable sort),
so results are deterministic. Queries are processed in chunks: memory beyond the similarity matrix itself is
O(chunk x G), whatever the number of queries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def _ranked_matches(
    similarity: Tensor, query_ids: Tensor, gallery_ids: Tensor, chunk_size: int
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (first query, order [q, G] gallery indices best first, matches [q, G] bool in that order)."""
    if similarity.dim() != 2 or similarity.shape != (len(query_ids), len(gallery_ids)):
        raise ValueError(
            f"similarity of shape {tuple(similarity.shape)} does not match "
            f"{len(query_ids)} queries x {len(gallery_ids)} gallery images"
        )
    query_ids = torch.as_tensor(query_ids, device=similarity.device)
    gallery_ids = torch.as_tensor(gallery_ids, device=similarity.device)
    for start in range(0, similarity.shape[0], chunk_size):
        block = similarity[start : start + chunk_size]
        order = torch.sort(block, dim=1, descending=True, stable=True).indices  # [q, G]
        matches = gallery_ids[order] == query_ids[start : start + chunk_size, None]  # [q, G]
        missing = (~matches.any(dim=1)).nonzero()
        if len(missing):
            query = start + int(missing[0, 0])
            raise ValueError(f"query {query} (identity {int(query_ids[query])}) has no match in the gallery")
        yield start, order, matches


def rank_metrics(
    similarity: Tensor,
    query_ids: Tensor | Sequence[int],
    gallery_ids: Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 256,
) -> dict[str, float]:
    """R@K for each K, mAP and mINP in percent from similarity [Q, G] (higher = more similar).

    R@K: share of queries with a match in the top K. AP: mean over a query's matches of the precision at the
    rank of each match. INP: number of matches / rank of the last match.
    """
    if similarity.shape[0] == 0:
        raise ValueError("rank_metrics: no queries")
    hits = {k: 0.0 for k in ks}
    ap_sum = inp_sum = 0.0
    for _, _, matches in _ranked_matches(similarity, query_ids, gallery_ids, chunk_size):
        matches = matches.double()  # [q, G]
        ranks = torch.arange(1, matches.shape[1] + 1, device=matches.device, dtype=matches.dtype)
        found = matches.cumsum(dim=1)  # [q, G] matches within the top n
        num_matches = found[:, -1]
        for k in ks:
            hits[k] += float((found[:, min(k, matches.shape[1]) - 1] > 0).sum())
        ap_sum += float(((found / ranks) * matches).sum(dim=1).div(num_matches).sum())
        last_rank = (matches * ranks).amax(dim=1)
        inp_sum += float((num_matches / last_rank).sum())
    num_queries = similarity.shape[0]
    metrics = {f"R{k}": 100.0 * hits[k] / num_queries for k in ks}
    metrics["mAP"] = 100.0 * ap_sum / num_queries
    metrics["mINP"] = 100.0 * inp_sum / num_queries
    return metrics


@dataclass
class QueryRanks:
    top_indices: Tensor  # [Q, top] gallery indices, best first
    first_match_rank: Tensor  # [Q] 1-based rank of the best-ranked match (1 = top hit)


def per_query_ranks(
    similarity: Tensor,
    query_ids: Tensor | Sequence[int],
    gallery_ids: Tensor | Sequence[int],
    top: int = 10,
    chunk_size: int = 256,
) -> QueryRanks:
    """Each query's top-`top` gallery images and the rank of its first match (for reports and galleries)."""
    tops, firsts = [], []
    for _, order, matches in _ranked_matches(similarity, query_ids, gallery_ids, chunk_size):
        tops.append(order[:, :top])
        firsts.append(matches.int().argmax(dim=1) + 1)  # argmax returns the first maximum
    return QueryRanks(top_indices=torch.cat(tops), first_match_rank=torch.cat(firsts))
