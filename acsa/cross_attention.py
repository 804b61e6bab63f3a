"""Asymmetric cross-attention between image tokens and noun phrases, and the batched local score (§3).

For image i with tokens r and caption t with phrases p (method.md §3):
    Q = Linear(tokens)  V_img = Linear(tokens)  K = LN(Linear(phrases))  V_txt = LN(Linear(phrases))
    s[r,p] = LeakyReLU(cos(Q_r, K_p));  s[:,p] /= |s[:,p]|_2 (over r)
    a[r,:] = softmax over real phrases of (lambda * s[r,:])
    c_r = sum_p a[r,p] V_txt_p;  S(i,t) = mean_r cos(V_img_r, c_r)

Exact batched form, without ever building c_r for every (image, caption) pair:
    V_img_r . c_r = sum_p a[r,p] (V_img_r . V_txt_p)     -> one product [I*R, d] @ [d, T*P]
    |c_r|^2       = sum_{p,q} a[r,p] a[r,q] G_t[p,q]     -> G_t = V_txt V_txt^T, a P x P Gram per caption
and the attention logits need only Q.K products ([I*R, d] @ [d, T*P]). Work is chunked over captions and
images, so memory is bounded by the chunk sizes, never by T x I x R x P.

Axis legend: i images, r image tokens, t captions, p and q phrases, k candidate images per caption,
d projection dim. Padded phrases (mask False) are excluded from the softmax when `mask_padding`; the released
code attends to them (`mask_padding=False`). A caption without any real phrase scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-8


@dataclass
class ProjectedImages:
    query: Tensor  # [I, R, d] L2-normalised Q
    value: Tensor  # [I, R, d] V_img
    value_norm: Tensor  # [I, R] |V_img|

    def __getitem__(self, rows: slice | Tensor) -> ProjectedImages:
        return ProjectedImages(self.query[rows], self.value[rows], self.value_norm[rows])


@dataclass
class ProjectedPhrases:
    key: Tensor  # [T, P, d] L2-normalised K
    value: Tensor  # [T, P, d] V_txt
    mask: Tensor  # [T, P] bool, True = real phrase (all True when padding is attended to)

    def __getitem__(self, rows: slice) -> ProjectedPhrases:
        return ProjectedPhrases(self.key[rows], self.value[rows], self.mask[rows])


def _l2norm(x: Tensor, dim: int) -> Tensor:
    return x / (x.norm(dim=dim, keepdim=True) + EPS)


class AsymmetricCrossAttention(nn.Module):
    """Image tokens query noun phrases; scores every (caption, image) pair exactly or a candidate list."""

    def __init__(
        self,
        dim: int,
        attention_scale: float = 20.0,
        leaky_slope: float = 0.1,
        mask_padding: bool = True,
    ) -> None:
        super().__init__()
        self.attention_scale = attention_scale
        self.leaky_slope = leaky_slope
        self.mask_padding = mask_padding
        self.query = nn.Linear(dim, dim)
        self.image_value = nn.Linear(dim, dim)
        self.key = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.text_value = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))

    # projections: once per gallery / query set, then any number of scorings

    def project_images(self, image_tokens: Tensor) -> ProjectedImages:
        """[I, R, D] image tokens -> normalised queries and image values."""
        value = self.image_value(image_tokens)
        return ProjectedImages(
            query=_l2norm(self.query(image_tokens), -1), value=value, value_norm=value.norm(dim=-1)
        )

    def project_phrases(self, phrase_tokens: Tensor, phrase_mask: Tensor) -> ProjectedPhrases:
        """[T, P, D] phrase tokens + [T, P] mask -> normalised keys and text values."""
        mask = phrase_mask.bool() if self.mask_padding else torch.ones_like(phrase_mask, dtype=torch.bool)
        return ProjectedPhrases(
            key=_l2norm(self.key(phrase_tokens), -1), value=self.text_value(phrase_tokens), mask=mask
        )

    # scores on projected tokens

    def _attention(self, logits: Tensor, mask: Tensor) -> Tensor:
        """logits [..., R, P] cosines Q.K (r on axis -2), mask broadcastable to them -> a [..., R, P]."""
        s = F.leaky_relu(logits, self.leaky_slope)
        s = _l2norm(s, -2)  # over image tokens r, per phrase
        s = (self.attention_scale * s).masked_fill(~mask, torch.finfo(s.dtype).min)
        # x mask: a caption with no real phrase gets no context (its softmax over nothing would be uniform)
        return torch.softmax(s, dim=-1) * mask

    def _score_block(self, images: ProjectedImages, phrases: ProjectedPhrases) -> Tensor:
        """Every pair of a block of images [i] and captions [t]: S [t, i]."""
        # [i, r, d] x [t, p, d] -> [i, t, r, p]: one (i*r, d) @ (d, t*p) product each
        logits = torch.einsum("ird,tpd->itrp", images.query, phrases.key)
        attn = self._attention(logits, phrases.mask[None, :, None, :])
        dots = torch.einsum("ird,tpd->itrp", images.value, phrases.value)
        gram = phrases.value @ phrases.value.transpose(1, 2)  # [t, p, q]
        attn_gram = torch.einsum("itrp,tpq->itrq", attn, gram)
        return self._cosine_mean(attn, dots, attn_gram, images.value_norm[:, None]).T

    def score_pairwise(
        self,
        images: ProjectedImages,
        phrases: ProjectedPhrases,
        text_chunk: int = 128,
        image_chunk: int = 512,
    ) -> Tensor:
        """S(i, t) for every caption and image: [T, I]."""
        num_texts, num_images = phrases.key.shape[0], images.query.shape[0]
        out = images.query.new_empty(num_texts, num_images)
        for t0 in range(0, num_texts, text_chunk):
            text_block = phrases[t0 : t0 + text_chunk]
            for i0 in range(0, num_images, image_chunk):
                block = self._score_block(images[i0 : i0 + image_chunk], text_block)
                out[t0 : t0 + text_chunk, i0 : i0 + image_chunk] = block
        return out

    def score_candidates(
        self,
        images: ProjectedImages,
        phrases: ProjectedPhrases,
        candidates: Tensor,
        text_chunk: int = 128,
        dense_ratio: float = 8.0,
    ) -> Tensor:
        """S(candidates[t, j], t) for each caption's candidate images: [T, k].

        Per chunk of captions, when the union of their candidates is small (at most `dense_ratio` x k
        images) every pair of captions x union is scored with the blocked products and the candidates picked
        out; otherwise each caption's candidates are gathered ([t, k, r, d] copies: few FLOPs per byte moved,
        so ~10x slower per pair on a CPU, but only t x k pairs).
        """
        out = images.query.new_empty(candidates.shape)
        for t0 in range(0, candidates.shape[0], text_chunk):
            index = candidates[t0 : t0 + text_chunk]  # [t, k]
            text_block = phrases[t0 : t0 + text_chunk]
            union, position = torch.unique(index, return_inverse=True)  # position [t, k] into union
            if union.numel() <= dense_ratio * index.shape[1]:
                block = self._score_block(images[union], text_block)  # [t, union]
                out[t0 : t0 + text_chunk] = block.gather(1, position)
                continue
            query, i_value = images.query[index], images.value[index]  # [t, k, r, d]
            logits = torch.einsum("tkrd,tpd->tkrp", query, text_block.key)
            attn = self._attention(logits, text_block.mask[:, None, None, :])
            dots = torch.einsum("tkrd,tpd->tkrp", i_value, text_block.value)
            gram = text_block.value @ text_block.value.transpose(1, 2)  # [t, p, q]
            attn_gram = torch.einsum("tkrp,tpq->tkrq", attn, gram)
            out[t0 : t0 + text_chunk] = self._cosine_mean(attn, dots, attn_gram, images.value_norm[index])
        return out

    @staticmethod
    def _cosine_mean(attn: Tensor, dots: Tensor, attn_gram: Tensor, value_norm: Tensor) -> Tensor:
        """mean_r cos(V_img_r, c_r) for a block of pairs [a, b].

        attn, dots (V_img_r . V_txt_p), attn_gram (sum_p a[r,p] G[p,q]): [a, b, R, P];
        value_norm |V_img_r|: [a|1, b|1, R].
        """
        numerator = (attn * dots).sum(-1)  # [a, b, r] V_img_r . c_r
        context_sq = (attn_gram * attn).sum(-1)  # [a, b, r] |c_r|^2
        context_norm = context_sq.clamp_min(EPS * EPS).sqrt()  # |c_r|; clamp: Gram rounding, empty captions
        return (numerator / (value_norm * context_norm + EPS)).mean(-1)

    # convenience entry points on unprojected tokens

    def pairwise_local_similarity(
        self,
        image_tokens: Tensor,
        phrase_tokens: Tensor,
        phrase_mask: Tensor,
        text_chunk: int = 128,
        image_chunk: int = 512,
    ) -> Tensor:
        """image_tokens [I, R, D], phrase_tokens [T, P, D], phrase_mask [T, P] -> S [T texts, I images]."""
        return self.score_pairwise(
            self.project_images(image_tokens),
            self.project_phrases(phrase_tokens, phrase_mask),
            text_chunk=text_chunk,
            image_chunk=image_chunk,
        )

    forward = pairwise_local_similarity

    def rerank_local_similarity(
        self,
        image_tokens: Tensor,
        phrase_tokens: Tensor,
        phrase_mask: Tensor,
        candidates: Tensor,
        text_chunk: int = 128,
        dense_ratio: float = 8.0,
    ) -> Tensor:
        """S for each caption's candidate images (e.g. its global top-k): candidates [T, k] long -> [T, k]."""
        return self.score_candidates(
            self.project_images(image_tokens),
            self.project_phrases(phrase_tokens, phrase_mask),
            candidates,
            text_chunk=text_chunk,
            dense_ratio=dense_ratio,
        )

    def attention_weights(self, image_tokens: Tensor, phrase_tokens: Tensor, phrase_mask: Tensor) -> Tensor:
        """a [R, P] of one image (tokens [R, D]) attending over one caption's phrases ([P, D], mask [P])."""
        images = self.project_images(image_tokens[None])
        phrases = self.project_phrases(phrase_tokens[None], phrase_mask[None])
        logits = images.query[0] @ phrases.key[0].T  # [r, p]
        return self._attention(logits, phrases.mask[0][None, :])
