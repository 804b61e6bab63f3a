"""Reference points for text-to-image retrieval on the synthetic benchmark: rankers built from its own
attribute records (attributes.json, docs/data.md), scored with the same rank metrics as the models, so that a
model's R@1 can be read against what exact attribute matching reaches.

On a retrieval split (queries = captions, gallery = images, a match = an image of the query's identity) each
ranker gives integer scores [Q, G]:
- `random`: every score equal, so the random tie-breaking below makes a uniformly random ranking;
- attribute oracles, one per level of RANKERS: score(q, g) = the number of the level's attributes that
  caption q states and image g's identity has, minus the number it states and the identity contradicts
  (an absent attribute contradicts a stated one: "a cap" against no hat). `attribute_oracle` uses every
  attribute; `coarse` only gender, garment types and colours; `fine` only the rest (hair, hat, glasses,
  pattern, inner colour, shoes, carried object); `colour_pair` only the top and bottom colours.

What a caption states is its `mentions` record: the canonical value of each attribute it mentions (the text
may use a synonym; a noisy caption's wrong value is what it states, so the oracles see caption noise as a
reader would). The view a caption may mention ("seen from behind") does not count: it describes the shot,
not the identity, and every image of the identity is a match whatever its view. The oracles compare with the
identity record, so they also know attributes that the gallery image hides (occlusion, view): an upper
reference for exact attribute matching, not a model of what an image shows.

Ties: the scores are small integers, every image of an identity scores the same and many identities agree
with what a caption says, so ties decide much of the ranking. `rank_metrics` would order tied images by
gallery position; `tie_broken` orders them at random instead, and `reference_metrics` averages the metrics
over seeded draws.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import Tensor

from acsa.analysis.attributes import caption_records, flat_identity, stated_values
from acsa.scoring.metrics import rank_metrics

COARSE_KEYS = ("head.gender", "upper.type", "upper.colour", "lower.type", "lower.colour")
FINE_KEYS = (
    "head.hair_colour",
    "head.hair_length",
    "head.hat",
    "head.hat_colour",
    "head.glasses",
    "upper.pattern",
    "upper.pattern_colour",
    "upper.inner_colour",
    "feet.type",
    "feet.colour",
    "carried.type",
    "carried.colour",
)
# The rankers, in the order reports list them: name -> (attribute keys the score counts, what it is).
RANKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "random": ((), "a uniformly random ranking"),
    "colour_pair": (("upper.colour", "lower.colour"), "top and bottom colours only"),
    "coarse": (COARSE_KEYS, "gender, garment types and colours"),
    "fine": (
        FINE_KEYS,
        "everything but the coarse attributes: hair, hat, glasses, pattern, inner colour, "
        "shoes, carried object",
    ),
    "attribute_oracle": (COARSE_KEYS + FINE_KEYS, "every stated attribute, matched exactly"),
}
METRICS = ("R1", "R5", "R10", "mAP", "mINP")


def split_attributes(
    split: dict[str, Any], attributes: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(per query the values its caption states, per gallery image its identity's flat attributes) of an
    evaluation split record (records.json)."""
    mentions = [stated_values(record["caption"]) for record in caption_records(split, attributes)]
    identities = [flat_identity(attributes[path]["identity"]) for path in split["image_paths"]]
    return mentions, identities


def attribute_scores(
    mentions: list[dict[str, str]], identities: list[dict[str, Any]], keys: tuple[str, ...]
) -> Tensor:
    """[Q, G] int64: per (caption, image) the stated attributes among `keys` that the image's identity agrees
    with, minus those it contradicts (an attribute the caption does not state counts 0)."""
    scores = torch.zeros(len(mentions), len(identities), dtype=torch.int64)
    for key in keys:
        gallery_values = [identity.get(key) for identity in identities]
        stated = [mention.get(key) for mention in mentions]
        codes = {value: code for code, value in enumerate(dict.fromkeys([None, *gallery_values, *stated]))}
        gallery = torch.tensor([codes[value] for value in gallery_values])  # [G]; None (absent) has code 0
        query = torch.tensor(
            [codes[value] if value is not None else -1 for value in stated]
        )  # [Q]; -1 unstated
        agree = query[:, None] == gallery[None, :]  # [Q, G]
        scores += (query >= 0)[:, None] * (2 * agree.long() - 1)
    return scores


def tie_broken(scores: Tensor, generator: torch.Generator) -> Tensor:
    """[Q, G] float64: integer `scores` with each row's ties put in a random order (a random permutation of
    0..G-1 per row, below the integer step), so the gallery order never decides."""
    num_gallery = scores.shape[1]
    order = torch.rand(scores.shape, generator=generator, dtype=torch.float64).argsort(dim=1)  # [Q, G]
    return scores.double() * num_gallery + order.double()


def reference_metrics(
    scores: Tensor, query_ids: Tensor, gallery_ids: Tensor, draws: int, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(mean, standard deviation) over `draws` random tie-breakings of R1/R5/R10/mAP/mINP in percent."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    generator = torch.Generator().manual_seed(seed)
    runs = [rank_metrics(tie_broken(scores, generator), query_ids, gallery_ids) for _ in range(draws)]
    mean = {name: statistics.fmean(run[name] for run in runs) for name in METRICS}
    spread = {name: statistics.pstdev(run[name] for run in runs) for name in METRICS}
    return mean, spread


def reference_points(
    split: dict[str, Any], attributes: dict[str, dict[str, Any]], draws: int, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Every ranker of RANKERS on an evaluation split: {"metrics": {ranker: {R1, ...}}, "draw_std": {ranker:
    {R1, ...}}}, the mean and standard deviation over the tie-breaking draws (every ranker sees the same
    draws)."""
    mentions, identities = split_attributes(split, attributes)
    query_ids = torch.tensor(split["caption_ids"])
    gallery_ids = torch.tensor(split["image_ids"])
    metrics, spread = {}, {}
    for name, (keys, _) in RANKERS.items():
        scores = attribute_scores(mentions, identities, keys)
        metrics[name], spread[name] = reference_metrics(scores, query_ids, gallery_ids, draws, seed)
    return {"metrics": metrics, "draw_std": spread}


def top1_probability(scores: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """[Q] float64: the probability that the ranker puts a match first when its tied images come in a
    random order, exactly: the share of matches among the images with the row's top score."""
    top = scores == scores.max(dim=1, keepdim=True).values  # [Q, G]
    matches = query_ids[:, None] == gallery_ids[None, :]
    return (top & matches).sum(dim=1).double() / top.sum(dim=1).double()


def query_subsets(split: dict[str, Any], attributes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Which queries of an evaluation split need fine evidence: per query, the probability that `coarse`
    (gender, garment types and colours) and `attribute_oracle` (every stated attribute) rank a match first;
    `coarse_solved` where coarse does so at least half of the time, `fine_evidence` where coarse does not
    but the oracle does (what only the finer attributes decide)."""
    mentions, identities = split_attributes(split, attributes)
    query_ids = torch.tensor(split["caption_ids"])
    gallery_ids = torch.tensor(split["image_ids"])
    coarse = top1_probability(
        attribute_scores(mentions, identities, RANKERS["coarse"][0]), query_ids, gallery_ids
    )
    oracle = top1_probability(
        attribute_scores(mentions, identities, RANKERS["attribute_oracle"][0]), query_ids, gallery_ids
    )
    coarse_solved = coarse >= 0.5
    fine_evidence = ~coarse_solved & (oracle >= 0.5)
    return {
        "query_ids": query_ids.tolist(),
        "coarse_top1": [round(float(p), 6) for p in coarse],
        "oracle_top1": [round(float(p), 6) for p in oracle],
        "coarse_solved": coarse_solved.tolist(),
        "fine_evidence": fine_evidence.tolist(),
        "counts": {
            "queries": len(query_ids),
            "coarse_solved": int(coarse_solved.sum()),
            "fine_evidence": int(fine_evidence.sum()),
            "neither": int((~coarse_solved & ~fine_evidence).sum()),
        },
    }
