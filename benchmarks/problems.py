"""Structured random retrieval problems for the benchmarks: no dataset and no trained model needed.

Identities draw their named attributes from the synthetic benchmark's generator
(`acsa.data.synthetic.sample_attributes`, with its skewed colour priors, so that many identities share a
coarse look, as real pedestrians do). Each (attribute, value) pair has a random embedding; then

    global features   identity prototype (sum of its attribute embeddings + an identity-only part) + noise,
                      for images and captions alike, so that global R@K are meaningful;
    image tokens [R]  [mean of the others, head, upper, lower, feet, top window, bottom window]: each the
                      sum of the attribute embeddings of its body scale + an identity part + noise;
    phrases [P]       one per stated attribute (3..P per caption, the rest padding) + noise.

`structured=False` drops the attributes (independent identities): each caption's global top-k beyond its
own identity is then noise, the worst case for the re-rank's candidate overlap.

Layout like CUHK-PEDES' test split: images split evenly over identities, two captions per image (extra
captions go to the first images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from acsa.data.synthetic import ATTRIBUTE_KEYS, VOCABULARY, sample_attributes

CUHK_TEST = {"images": 3074, "captions": 6156, "ids": 1000}  # CUHK-PEDES test split
SCALES = ("head", "upper", "lower", "feet")
# image tokens after the mean: the four regions, then the two windows (top = head + upper, bottom = rest)
TOKEN_SCALES = ((0,), (1,), (2,), (3,), (0, 1), (2, 3))
GLOBAL_NOISE = 2.2  # norm of the noise added to a unit-norm identity prototype (global R@1 about 45%)
LOCAL_NOISE = 3.5
IDENTITY_PART = 0.5  # weight of the identity-only direction next to the attribute embeddings


@dataclass
class Problem:
    image_ids: Tensor  # [I] identity of each gallery image
    caption_ids: Tensor  # [T] identity of each query caption
    image_global: Tensor  # [I, d]
    text_global: Tensor  # [T, d]
    image_tokens: Tensor  # [I, R, d]
    phrase_tokens: Tensor  # [T, P, d]
    phrase_mask: Tensor  # [T, P] bool, real phrases first

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "captions": int(self.caption_ids.numel()),
            "images": int(self.image_ids.numel()),
            "ids": int(torch.unique(self.image_ids).numel()),
            "tokens": int(self.image_tokens.shape[1]),
            "phrases": int(self.phrase_tokens.shape[1]),
            "dim": int(self.image_tokens.shape[2]),
        }


def _attribute_table(num_ids: int, seed: int) -> np.ndarray:
    """[ids, keys] index of each identity's value in the flat (key, value) vocabulary, -1 when absent."""
    offsets, total = {}, 0
    for key in ATTRIBUTE_KEYS:
        offsets[key] = total
        total += len(VOCABULARY[key])
    table = np.full((num_ids, len(ATTRIBUTE_KEYS)), -1, dtype=np.int64)
    for ident in range(num_ids):
        attrs = sample_attributes(np.random.default_rng([seed, 7, ident]))
        for j, key in enumerate(ATTRIBUTE_KEYS):
            if attrs[key] is not None:
                table[ident, j] = offsets[key] + VOCABULARY[key].index(attrs[key])
    return table


def _noise(shape: tuple[int, ...], scale: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise of expected norm `scale` along the last axis."""
    return torch.randn(shape, generator=generator) * (scale / shape[-1] ** 0.5)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def make_problem(
    num_images: int = CUHK_TEST["images"],
    num_captions: int = CUHK_TEST["captions"],
    num_ids: int = CUHK_TEST["ids"],
    tokens: int = 7,
    phrases: int = 10,
    dim: int = 768,
    seed: int = 0,
    structured: bool = True,
    caption_subset: Tensor | None = None,
) -> Problem:
    """A deterministic problem for a seed (features float32 on the CPU). `caption_subset` (indices into the
    num_captions captions) builds only those captions: their features differ from the full problem's (other
    random draws), their images and identities do not."""
    if num_ids > num_images or tokens < 1 or phrases < 1:
        raise ValueError("need ids <= images, tokens >= 1, phrases >= 1")
    g = torch.Generator().manual_seed(seed)
    image_ids = torch.arange(num_images) * num_ids // num_images  # images split evenly over identities
    captions = torch.arange(num_captions)
    caption_image = captions % num_images if num_captions > 2 * num_images else captions // 2
    if caption_subset is not None:
        caption_image = caption_image[caption_subset]
        num_captions = caption_image.numel()
    caption_ids = image_ids[caption_image]

    table = torch.from_numpy(_attribute_table(num_ids, seed))  # [ids, keys]
    vocab = sum(len(v) for v in VOCABULARY.values())
    scale_of_key = torch.tensor(
        [SCALES.index(k.split(".")[0]) if k.split(".")[0] in SCALES else 1 for k in ATTRIBUTE_KEYS]
    )  # carried objects count as upper body
    present = table >= 0
    if not structured:
        present = torch.zeros_like(present)
    global_vocab = _noise((vocab + 1, dim), 1.0, g)
    local_vocab = _noise((vocab + 1, dim), 1.0, g)
    safe = torch.where(present, table, vocab)  # index `vocab` is a dummy row, weighted 0 below
    weights = present.float()[..., None]
    identity_global = _noise((num_ids, dim), 1.0, g)
    prototype = _unit((global_vocab[safe] * weights).sum(1) + IDENTITY_PART * identity_global)  # [ids, d]
    image_global = prototype[image_ids] + _noise((num_images, dim), GLOBAL_NOISE, g)
    text_global = prototype[caption_ids] + _noise((num_captions, dim), GLOBAL_NOISE, g)

    # per identity and body scale: sum of that scale's attribute embeddings + an identity part
    identity_local = _noise((num_ids, len(SCALES), dim), 1.0, g)
    by_scale = torch.zeros(num_ids, len(SCALES), dim)
    for s in range(len(SCALES)):
        mask = (weights[..., 0] * (scale_of_key == s).float())[..., None]  # [ids, keys, 1]
        by_scale[:, s] = (local_vocab[safe] * mask).sum(1)
    by_scale = by_scale + IDENTITY_PART * identity_local
    parts = [by_scale[:, list(scales)].sum(1) for scales in TOKEN_SCALES]  # each [ids, d]
    num_parts = max(tokens - 1, 1)
    token_protos = torch.stack([parts[j % len(parts)] for j in range(num_parts)], dim=1)  # [ids, R-1, d]
    image_tokens = token_protos[image_ids] + _noise((num_images, num_parts, dim), LOCAL_NOISE, g)
    if tokens > 1:
        image_tokens = torch.cat([image_tokens.mean(dim=1, keepdim=True), image_tokens], dim=1)

    # phrases: 3..P stated attributes of the caption's identity (or random vocabulary when unstructured)
    low = min(3, phrases)
    lengths = torch.randint(low, phrases + 1, (num_captions,), generator=g)
    phrase_mask = torch.arange(phrases)[None] < lengths[:, None]
    keys = torch.rand(num_captions, table.shape[1], generator=g)
    keys = torch.where(present[caption_ids], keys, keys - 2.0)  # present attributes first
    picked = keys.argsort(dim=1, descending=True)[:, :phrases] % table.shape[1]  # [T, P] key index
    if picked.shape[1] < phrases:
        picked = picked.repeat(1, phrases // picked.shape[1] + 1)[:, :phrases]
    vocab_index = safe[caption_ids[:, None], picked]  # [T, P]
    phrase_tokens = (
        local_vocab[vocab_index] + IDENTITY_PART * identity_local[caption_ids[:, None], scale_of_key[picked]]
    )
    phrase_tokens = phrase_tokens + _noise((num_captions, phrases, dim), LOCAL_NOISE, g)
    phrase_tokens = phrase_tokens * phrase_mask[..., None]
    return Problem(
        image_ids, caption_ids, image_global, text_global, image_tokens, phrase_tokens, phrase_mask
    )


def tied_cross_attention(dim: int, seed: int = 0, implementation: str = "current"):
    """A randomly initialised cross-attention whose key and text-value projections copy the query and
    image-value ones: cos(Q, K) and V_img . V_txt then follow token-phrase similarity, so the local score
    carries the problem's identity signal (with independent random projections it would be noise).
    `implementation`: current (acsa.model.cross_attention) or a file defining AsymmetricCrossAttention."""
    from benchmarks.common import cross_attention_module

    torch.manual_seed(seed)
    module = cross_attention_module(implementation).AsymmetricCrossAttention(dim).eval()
    with torch.no_grad():
        module.key[0].load_state_dict(module.query.state_dict())
        module.text_value[0].load_state_dict(module.image_value.state_dict())
    return module
