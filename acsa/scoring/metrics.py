"""Text -> image retrieval metrics (docs/method.md, section 6; IRRA's `rank` is the reference protocol).

Every query is a caption, the gallery every test image once; a match is a gallery image of the query's
identity. Per query the gallery is ordered by similarity, descending; exact ties keep gallery order (as a
stable sort would), so results are deterministic and do not depend on how a sort breaks ties. This is a
choice, documented in docs/method.md (section 6): IRRA's `rank` sorts with `torch.argsort`, which is not
stable, and the released code takes `topk`, whose order among equal scores is unspecified, so their R@K on
exactly tied scores depends on the implementation (up to 12 points apart on heavily tied random scores).
`rank_metrics` needs only the ranks of the matches, counted without sorting (two passes over each row per
match instead of a sort: faster at CUHK-PEDES size, where it runs once per fusion weight; BENCHMARKS.md);
`per_query_ranks` sorts, for the top indices. Queries are processed in chunks: memory beyond the similarity
matrix itself is O(chunk x G), whatever the number of queries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from acsa.errors import NonFiniteError


def _check_shapes(similarity: Tensor, query_ids, gallery_ids) -> None:
    if similarity.dim() != 2 or similarity.shape != (len(query_ids), len(gallery_ids)):
        raise ValueError(
            f"similarity of shape {tuple(similarity.shape)} does not match "
            f"{len(query_ids)} queries x {len(gallery_ids)} gallery images"
        )


def _check_every_query_matches(matches: Tensor, start: int, query_ids: Tensor) -> None:
    missing = (~matches.any(dim=1)).nonzero()
    if len(missing):
        query = start + int(missing[0, 0])
        raise ValueError(f"query {query} (identity {int(query_ids[query])}) has no match in the gallery")


def _check_finite(similarity: Tensor, name: str) -> None:
    """Refuse NaN and infinite scores: every comparison with NaN is false, so ranks counted by comparison
    would put every match first (R1 100, mAP and mINP above 100)."""
    finite = torch.isfinite(similarity)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        query, image = (int(i) for i in bad[0])
        raise NonFiniteError(
            f"{name}: {len(bad)} of {similarity.numel()} are not finite (first: query {query}, gallery image "
            f"{image})"
        )


def _query_chunks(
    similarity: Tensor, query_ids, gallery_ids, chunk_size: int, name: str
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (first query, block [q, G] of similarities, matches [q, G] bool in gallery order), after checking
    the shapes, that every score is finite (`name` says whose in the error) and that every query has a
    match."""
    _check_shapes(similarity, query_ids, gallery_ids)
    _check_finite(similarity, name)
    query_ids = torch.as_tensor(query_ids, device=similarity.device)
    gallery_ids = torch.as_tensor(gallery_ids, device=similarity.device)
    for start in range(0, similarity.shape[0], chunk_size):
        matches = gallery_ids[None, :] == query_ids[start : start + chunk_size, None]  # [q, G]
        _check_every_query_matches(matches, start, query_ids)
        yield start, similarity[start : start + chunk_size], matches


def _ranked_matches(
    similarity: Tensor, query_ids: Tensor, gallery_ids: Tensor, chunk_size: int, name: str
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (first query, order [q, G] gallery indices best first, matches [q, G] bool in that order)."""
    for start, block, matches in _query_chunks(similarity, query_ids, gallery_ids, chunk_size, name):
        order = torch.sort(block, dim=1, descending=True, stable=True).indices  # [q, G]
        yield start, order, matches.gather(1, order)


_COUNTED_MATCHES = 16  # up to this many matches per query, count ranks; beyond, a sort is cheaper


def _match_ranks(block: Tensor, matches: Tensor) -> Tensor:
    """1-based ranks [q, M] of each query's matches in the stable descending order, ascending (padding:
    +inf). block: similarities [q, G]; matches: [q, G] bool; M = the most matches of a query.

    With few matches per query (CUHK-PEDES: ~3) the gallery is not sorted: the rank of match j (score s_j,
    gallery index g_j) is 1 + #{g: s_g > s_j} + #{g < g_j: s_g = s_j}, two comparison passes over [q, G]
    per match (the tie term only where another image has exactly s_j). With many, each row is sorted.
    """
    num_columns = block.shape[1]
    most = int(matches.sum(dim=1).max())
    gallery = torch.arange(num_columns, device=block.device)
    if most > _COUNTED_MATCHES:
        order = torch.sort(block, dim=1, descending=True, stable=True).indices
        in_order = matches.gather(1, order)  # [q, G]
        ranks = torch.where(in_order, gallery + 1, num_columns + 1).topk(most, dim=1, largest=False).values
        return torch.where(ranks <= num_columns, ranks.double(), float("inf"))
    # the first `most` match positions of each row, in gallery order (padding: masked below)
    position = torch.where(matches, gallery, num_columns).topk(most, dim=1, largest=False).values
    real = position < num_columns  # [q, M]
    position = position.clamp(max=num_columns - 1)
    score = block.gather(1, position)  # [q, M]
    above = torch.stack([(block > score[:, j, None]).sum(dim=1) for j in range(most)], dim=1)  # [q, M]
    at_least = torch.stack([(block >= score[:, j, None]).sum(dim=1) for j in range(most)], dim=1)
    ranks = (above + 1).double()
    tied = (at_least > above + 1) & real  # another gallery image has exactly this score: rarely
    for j in range(most):  # stable order: equal scores at lower gallery indices go first
        rows = tied[:, j].nonzero()[:, 0]
        if len(rows):
            same = (block[rows] == score[rows, j, None]) & (gallery < position[rows, j, None])
            ranks[rows, j] += same.sum(dim=1).double()
    return torch.where(real, ranks, float("inf")).sort(dim=1).values


def per_query_metrics(
    similarity: Tensor,
    query_ids: Tensor | Sequence[int],
    gallery_ids: Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 256,
    name: str = "scores",
) -> dict[str, Tensor]:
    """Each query's share of the metrics, in percent ([Q] float64 per metric, on the CPU): R@K 100 if a
    match is in the top K, else 0; its average precision (the mean over its matches of the precision at each
    match's rank); its INP (number of matches / rank of the last match). Computed from the ranks of the
    matches alone (see `_match_ranks`), equal to sorting each row stably. A NaN or infinite score raises
    NonFiniteError naming `name` (e.g. "test fused scores"). The findings' bootstrap resamples these."""
    if similarity.shape[0] == 0:
        raise ValueError(f"{name}: no queries")
    parts: dict[str, list[Tensor]] = {metric: [] for metric in [*(f"R{k}" for k in ks), "mAP", "mINP"]}
    for _, block, matches in _query_chunks(similarity, query_ids, gallery_ids, chunk_size, name):
        ranks = _match_ranks(block, matches)  # [q, M] ascending, +inf padding
        real = torch.isfinite(ranks)
        num_matches = real.sum(dim=1).double()
        for k in ks:
            parts[f"R{k}"].append(100.0 * (ranks[:, 0] <= k).double())
        order = torch.arange(1, ranks.shape[1] + 1, device=ranks.device, dtype=ranks.dtype)  # i-th match
        precision = torch.where(real, order / ranks, 0.0)
        parts["mAP"].append(100.0 * precision.sum(dim=1) / num_matches)
        last_rank = torch.where(real, ranks, 0.0).amax(dim=1)
        parts["mINP"].append(100.0 * num_matches / last_rank)
    return {metric: torch.cat(values).cpu() for metric, values in parts.items()}


def rank_metrics(
    similarity: Tensor,
    query_ids: Tensor | Sequence[int],
    gallery_ids: Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 256,
    name: str = "scores",
) -> dict[str, float]:
    """R@K for each K, mAP and mINP in percent from similarity [Q, G] (higher = more similar): the means over
    queries of `per_query_metrics`. Every metric lies in [0, 100]."""
    per_query = per_query_metrics(similarity, query_ids, gallery_ids, ks, chunk_size, name)
    metrics = {metric: float(values.mean()) for metric, values in per_query.items()}
    outside = {key: value for key, value in metrics.items() if not 0.0 <= value <= 100.0}
    if outside:  # ranks are >= 1 and a match's rank >= its place among the matches: a bug if this fails
        raise AssertionError(f"{name}: metrics outside [0, 100]: {outside}")
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
    name: str = "scores",
) -> QueryRanks:
    """Each query's top-`top` gallery images and the rank of its first match (for reports and galleries);
    non-finite scores raise NonFiniteError naming `name`."""
    tops, firsts = [], []
    for _, order, matches in _ranked_matches(similarity, query_ids, gallery_ids, chunk_size, name):
        tops.append(order[:, :top])
        firsts.append(matches.int().argmax(dim=1) + 1)  # argmax returns the first maximum
    return QueryRanks(top_indices=torch.cat(tops), first_match_rank=torch.cat(firsts))
