"""Encode a split once (its gallery and its queries), score every query against the gallery (global,
local, fused), choose the fusion weight on validation, and rank. Training's validation, the evaluate and
explain stages and the benchmarks all encode and score through here.

Axes: T text queries, I gallery images, k re-rank candidates per query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from acsa.config.sections import EvalConfig
from acsa.data.image_features import CachedImages
from acsa.data.image_tables import ImageTable, to_model_input
from acsa.data.prepared import Split
from acsa.model.features import BackboneOutputs, ImageFeatures, TextFeatures, cat_features, features_to
from acsa.runtime import autocast
from acsa.scoring.metrics import per_query_ranks, rank_metrics


@torch.no_grad()
def encode_images(
    model, images: ImageTable | CachedImages, batch_size: int, device: torch.device, num_workers: int = 0
):
    """Image features of every gallery image, float32 on `device`: from pixels, or from a frozen backbone's
    cached outputs (the heads only)."""
    if isinstance(images, CachedImages):
        return encode_cached_images(model, images, batch_size, device)
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts = []
    for batch in tqdm(loader, desc="encode images", leave=False):
        with autocast(device):
            features = model.encode_image(to_model_input(batch.to(device)))
        parts.append(features_to(features, "cpu"))
    return features_to(cat_features(parts), device)


@torch.no_grad()
def encode_cached_images(model, images: CachedImages, batch_size: int, device: torch.device):
    """Image features from cached backbone outputs (view 0 of every image), float32 on `device`."""
    parts = []
    for start in range(0, len(images), batch_size):
        rows = images.rows(torch.arange(start, min(start + batch_size, len(images))))
        outputs = BackboneOutputs(**{name: value.to(device) for name, value in rows.items()})
        with autocast(device):
            features = model.encode_image(outputs)
        parts.append(features_to(features, "cpu"))
    return features_to(cat_features(parts), device)


@torch.no_grad()
def encode_queries(model, text_source, batch_size: int, device: torch.device):
    """Text features of every query caption of a split (`text_source`: see acsa.data.text_features)."""
    parts = []
    for start in range(0, len(text_source), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(text_source)))
        with autocast(device):
            features = text_source.encode(model, rows, device)
        parts.append(features_to(features, "cpu"))
    return features_to(cat_features(parts), device)


def encode_split(
    model, split: Split, batch_size: int, device: torch.device, num_workers: int = 0
) -> tuple[ImageFeatures, TextFeatures]:
    """Features of a split's images (the gallery) and of its captions (the queries), float32 on `device`."""
    image_feats = encode_images(model, split.images, batch_size, device, num_workers)
    text_feats = encode_queries(model, split.text, batch_size, device)
    return image_feats, text_feats


@dataclass
class Scores:
    """Similarity of every query to every gallery image: global cosine and the local score.

    In re-rank mode `local` holds scores for `candidates` only (each query's global top-k) and
    `candidates` is [T, k]; in exact mode `local` is [T, I] and `candidates` is None.
    """

    global_: torch.Tensor  # [T, I]
    local: torch.Tensor | None  # [T, I] (exact) or [T, k] (rerank); None without the local branch
    candidates: torch.Tensor | None  # [T, k] or None

    def fused(self, weight: float) -> torch.Tensor:
        """S = global + weight * local ([T, I]); in re-rank mode the top-k are re-ordered by S, the rest keep
        their global order below them."""
        if self.local is None or weight == 0:
            return self.global_
        if self.candidates is None:
            return self.global_ + weight * self.local
        fused = self.global_.clone()
        # Candidates stay above every non-candidate: global and local are cosines in [-1, 1].
        offset = 2.0 + 2.0 * abs(weight) + 1.0
        reranked = self.global_.gather(1, self.candidates) + weight * self.local + offset
        return fused.scatter(1, self.candidates, reranked)

    def local_only(self) -> torch.Tensor | None:
        """The local score alone ([T, I]); in re-rank mode it orders the candidates only."""
        if self.local is None:
            return None
        if self.candidates is None:
            return self.local
        return self.global_.scatter(1, self.candidates, self.local + 3.0)


@torch.no_grad()
def score(model, text_feats, image_feats, local_mode: str, rerank_k: int, chunk_size: int) -> Scores:
    global_sim = model.global_similarity(text_feats, image_feats).float()
    if not model.has_second_score:
        return Scores(global_sim, None, None)
    if local_mode == "exact":
        local = model.local_similarity(text_feats, image_feats, chunk_size=chunk_size).float()
        return Scores(global_sim, local, None)
    k = min(rerank_k, global_sim.shape[1])
    candidates = global_sim.topk(k, dim=1).indices  # [T, k]
    local = model.local_similarity(text_feats, image_feats, candidates=candidates, chunk_size=chunk_size)
    return Scores(global_sim, local.float(), candidates)


def score_split(
    model,
    split: Split,
    cfg: EvalConfig,
    device: torch.device,
    num_workers: int = 0,
    local_mode: str | None = None,
) -> Scores:
    """Encode `split` and score its queries against its gallery (`local_mode`: default cfg.local_mode)."""
    image_feats, text_feats = encode_split(model, split, cfg.batch_size, device, num_workers)
    return score(model, text_feats, image_feats, local_mode or cfg.local_mode, cfg.rerank_k, cfg.chunk_size)


def choose_fusion_weight(
    scores: Scores,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    weights: list[float],
    split: str = "val",
) -> tuple[float, list[dict]]:
    """Pick the weight with the best R1 (then mAP) on these scores — call it on the validation split only
    (`split` names it when a score is not finite)."""
    curve = []
    for weight in weights:
        name = f"{split} fused scores (fusion weight {weight:g})"
        metrics = rank_metrics(scores.fused(weight), query_ids, gallery_ids, name=name)
        curve.append({"weight": weight, **metrics})
    best = max(curve, key=lambda row: (row["R1"], row["mAP"], -abs(row["weight"])))
    return float(best["weight"]), curve


def metrics_by_kind(
    scores: Scores, query_ids, gallery_ids, weight: float, split: str
) -> dict[str, dict[str, float]]:
    """R@K/mAP/mINP of the global, local and fused scores of `split` (named when a score is not finite)."""
    kinds = {"global": scores.global_}
    local = scores.local_only()
    if local is not None:
        kinds |= {"local": local, "fused": scores.fused(weight)}
    return {
        kind: rank_metrics(similarity, query_ids, gallery_ids, name=f"{split} {kind} scores")
        for kind, similarity in kinds.items()
    }


def rankings(
    scores: Scores, weight: float, query_ids, gallery_ids, top: int = 10, split: str = "test"
) -> list[dict]:
    """Per query: top gallery indices and 1-based rank of the first match, fused and global."""
    fused = per_query_ranks(
        scores.fused(weight), query_ids, gallery_ids, top=top, name=f"{split} fused scores"
    )
    global_ = per_query_ranks(scores.global_, query_ids, gallery_ids, top=top, name=f"{split} global scores")
    return [
        {
            "query": q,
            "top": fused.top_indices[q].tolist(),
            "first_match_rank": int(fused.first_match_rank[q]),
            "global_top": global_.top_indices[q].tolist(),
            "global_first_match_rank": int(global_.first_match_rank[q]),
        }
        for q in range(len(query_ids))
    ]
