"""Can the frozen text features say which colour goes with which garment? A diagnostic for why the local
score (phrases) beats the global score (one sentence vector) on the synthetic benchmark.

Each caption has, from the embed_text stage (no training), a mean-pooled sentence vector and one vector per
noun phrase ("white t-shirt", "blue jeans"), each standardised per dimension with the training split's
statistics, as the model does (`TextBank.statistics`). Three representations of a caption are compared:
- `sentence`: the sentence vector, what the global branch's text side is an affine map of;
- `phrase_mean`: the mean of its phrase vectors, also one vector, but each colour was encoded inside its
  garment's phrase;
- `phrase_set`: its phrase vectors as a set; two captions' similarity is the symmetric best-match mean
  (for each phrase the cosine of its most similar phrase of the other caption, averaged over both sides),
  as the local branch matches phrases to image parts.

Measured on an evaluation split's captions (text only, no image):
- `nn_identity_R1`: the share of captions whose most similar other caption describes the same identity
  (tied neighbours count by the share of them that match);
- `same_identity_auc`: the probability that two captions of one identity are more similar than two of
  different identities;
- `colour_probe` (one-vector representations): for every colour attribute, a ridge-regression linear probe
  (one-hot targets, fitted on the training split's captions that state it) predicts the stated colour of a
  caption of the evaluation split that also states another, different colour (so the set of colour words
  alone does not answer it). `accuracy`: the right colour; `other_colour`: one of the caption's other
  colours, that is, a colour bound to the wrong item. A linear map is the capacity the global branch has.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor

from acsa.analysis.reference_points import COARSE_KEYS, FINE_KEYS
from acsa.data.text_features import TextBank

COLOUR_KEYS = tuple(key for key in COARSE_KEYS + FINE_KEYS if key.endswith("colour"))
RIDGE = 1.0  # ridge penalty of the probe, on standardised features


def _standardised(bank: TextBank, statistics: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """(sentence [N, H], phrases [N, P, H] zero at padding), standardised with `statistics`."""
    sentence_mean, sentence_std, phrase_mean, phrase_std = (s.double() for s in statistics)
    mask = bank.phrase_index >= 0  # [N, P]
    phrases = (bank.phrases.double()[bank.phrase_index.clamp(min=0)] - phrase_mean) / phrase_std  # [N, P, H]
    return (bank.sentence.double() - sentence_mean) / sentence_std, phrases * mask.unsqueeze(-1)


def _phrase_mean(phrases: Tensor, mask: Tensor) -> Tensor:
    """[N, H] mean of each caption's phrase vectors (zero for a caption without phrases)."""
    return phrases.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)


def cosine_matrix(vectors: Tensor) -> Tensor:
    """[N, N] cosine similarity of the rows of `vectors` [N, H]."""
    unit = F.normalize(vectors, dim=-1)
    return unit @ unit.T


def phrase_set_similarity(phrases: Tensor, mask: Tensor, chunk_size: int = 64) -> Tensor:
    """[N, N] symmetric best-match similarity of the captions' phrase sets (phrases [N, P, H], mask [N, P]):
    0.5 * (mean over i's phrases of the best cosine among j's + the same from j's side). A caption without
    phrases scores -1 with every other."""
    unit = F.normalize(phrases, dim=-1)  # [N, P, H]
    num = unit.shape[0]
    counts = mask.sum(dim=1).double()  # [N]
    rows = []
    for start in range(0, num, chunk_size):
        block = torch.einsum("iph,jqh->ijpq", unit[start : start + chunk_size], unit)  # [c, N, P, P]
        valid = mask[start : start + chunk_size, None, :, None] & mask[None, :, None, :]  # [c, N, P, P]
        block = block.masked_fill(~valid, -2.0)
        best_of_i = block.amax(dim=3).clamp(min=-1.0)  # [c, N, P]: each phrase of i, its best phrase of j
        best_of_j = block.amax(dim=2).clamp(min=-1.0)  # [c, N, P]: each phrase of j, its best phrase of i
        own = mask[start : start + chunk_size, None, :]  # [c, 1, P]
        forward = (best_of_i * own).sum(dim=2) / counts[start : start + chunk_size, None].clamp(min=1)
        backward = (best_of_j * mask[None, :, :]).sum(dim=2) / counts[None, :].clamp(min=1)
        rows.append(0.5 * (forward + backward))
    similarity = torch.cat(rows)  # [N, N]
    empty = counts == 0
    return similarity.masked_fill(empty[:, None] | empty[None, :], -1.0)


def nearest_neighbour_accuracy(similarity: Tensor, ids: Tensor) -> float:
    """Percent of rows whose most similar other row has the same id; tied neighbours count by the share of
    them that match, so the row order never decides."""
    others = similarity.clone().fill_diagonal_(float("-inf"))
    best = others.max(dim=1, keepdim=True).values  # [N, 1]
    tied = others >= best - 1e-9  # [N, N]
    same = ids[:, None] == ids[None, :]
    return 100.0 * float(((tied & same).sum(dim=1).double() / tied.sum(dim=1)).mean())


def same_identity_auc(similarity: Tensor, ids: Tensor) -> float | None:
    """P(a same-identity pair of rows is more similar than a different-identity pair), ties counted half."""
    upper = torch.triu(torch.ones_like(similarity, dtype=torch.bool), diagonal=1)
    same = (ids[:, None] == ids[None, :])[upper]
    if same.all() or not same.any():
        return None
    return float(roc_auc_score(same.numpy(), similarity[upper].numpy()))


def _ridge_probe(features: Tensor, labels: list[str]) -> tuple[Tensor, list[str]]:
    """Weights [H + 1, C] of a ridge regression onto one-hot `labels` (with a bias), and the classes."""
    classes = sorted(set(labels))
    targets = torch.zeros(len(labels), len(classes), dtype=torch.float64)
    targets[torch.arange(len(labels)), torch.tensor([classes.index(label) for label in labels])] = 1.0
    inputs = F.pad(features, (0, 1), value=1.0)  # [N, H + 1]
    gram = inputs.T @ inputs + RIDGE * torch.eye(inputs.shape[1], dtype=inputs.dtype)
    return torch.linalg.solve(gram, inputs.T @ targets), classes


def colour_probe(
    train_features: Tensor,
    train_mentions: list[dict[str, str]],
    eval_features: Tensor,
    eval_mentions: list[dict[str, str]],
) -> dict[str, Any]:
    """Per colour attribute and over all: probe `accuracy` and `other_colour` in percent, and the number of
    evaluation `captions` (see the module doc); keys without training or evaluation captions are left out."""
    by_key, right, wrong_item, total = {}, 0, 0, 0
    for key in COLOUR_KEYS:
        fit_rows = [row for row, stated in enumerate(train_mentions) if key in stated]
        others = [
            {stated[k] for k in COLOUR_KEYS if k != key and k in stated} - {stated[key]}
            if key in stated
            else set()
            for stated in eval_mentions
        ]
        rows = [row for row, other in enumerate(others) if other]
        if not fit_rows or not rows:
            continue
        weights, classes = _ridge_probe(train_features[fit_rows], [train_mentions[r][key] for r in fit_rows])
        predicted = (F.pad(eval_features[rows], (0, 1), value=1.0) @ weights).argmax(dim=1).tolist()
        hits = sum(classes[p] == eval_mentions[row][key] for p, row in zip(predicted, rows, strict=True))
        swaps = sum(classes[p] in others[row] for p, row in zip(predicted, rows, strict=True))
        by_key[key] = {
            "accuracy": 100.0 * hits / len(rows),
            "other_colour": 100.0 * swaps / len(rows),
            "captions": len(rows),
        }
        right, wrong_item, total = right + hits, wrong_item + swaps, total + len(rows)
    if total == 0:
        return {"accuracy": None, "other_colour": None, "captions": 0, "by_key": {}}
    overall = {
        "accuracy": 100.0 * right / total,
        "other_colour": 100.0 * wrong_item / total,
        "captions": total,
    }
    return {**overall, "by_key": by_key}


def text_feature_diagnostic(
    train: TextBank,
    train_mentions: list[dict[str, str]],
    evaluation: TextBank,
    eval_mentions: list[dict[str, str]],
    eval_ids: Tensor,
) -> dict[str, Any]:
    """The measures of the module doc for the captions of `evaluation` (ids [N] their identities), the probe
    fitted on `train`; both standardised with the training split's statistics."""
    statistics = train.statistics()
    train_sentence, train_phrases = _standardised(train, statistics)
    eval_sentence, eval_phrases = _standardised(evaluation, statistics)
    train_mask, eval_mask = train.phrase_index >= 0, evaluation.phrase_index >= 0
    vectors = {
        "sentence": (train_sentence, eval_sentence),
        "phrase_mean": (_phrase_mean(train_phrases, train_mask), _phrase_mean(eval_phrases, eval_mask)),
    }
    similarity = {name: cosine_matrix(pair[1]) for name, pair in vectors.items()}
    similarity["phrase_set"] = phrase_set_similarity(eval_phrases, eval_mask)
    return {
        "captions": len(eval_ids),
        "nn_identity_R1": {name: nearest_neighbour_accuracy(s, eval_ids) for name, s in similarity.items()},
        "same_identity_auc": {name: same_identity_auc(s, eval_ids) for name, s in similarity.items()},
        "colour_probe": {
            name: colour_probe(fit, train_mentions, held_out, eval_mentions)
            for name, (fit, held_out) in vectors.items()
        },
    }
