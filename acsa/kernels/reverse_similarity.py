"""The blocked kernel of the reverse local score S_rev(i, t), in which each phrase attends over the image
tokens (`model.attention: phrase_queries` or `both`), for every (caption, image) pair or for each caption's
candidate images, without forming the contexts c'_p of every pair.

The score is `AsymmetricCrossAttention.reverse_similarity` of acsa.model.cross_attention (the reference,
plain tensor code, which tests hold this kernel equal to in values and gradients). For image i with tokens r
and caption t with real phrases p:

    s'[p, r] = LeakyReLU(K_p . Q_r)  (unit K, Q);   s'[:, r] /= |s'[:, r]|_2     (over the real phrases p)
    a'[p, :] = softmax over image tokens of (lambda * s'[p, :])
    c'_p     = sum_r a'[p, r] V_img_r
    S_rev    = mean over real phrases of cos(V_txt_p, c'_p)                    (0 without real phrases)

Exact batched form, as for the forward score (acsa.kernels.local_similarity):
    V_txt_p . c'_p = sum_r a'[p,r] (V_txt_p . V_img_r)     -> one product [T*P, d] @ [d, R*I]
    |c'_p|^2       = sum_{r,r'} a'[p,r] a'[p,r'] G_i[r,r']  -> G_i = V_img V_img^T, an R x R Gram per image
and the logits need the same K.Q product as the forward score. The softmax over r is left unnormalised (its
normaliser cancels in the cosine). Blocks are laid out [t, p, r, i] like the forward kernel's; the quadratic
form in e = exp(lambda s' - max_r) takes R (R + 1) / 2 elementwise multiply-adds per (caption, phrase,
image), against 4 R d FLOPs of products (under 1% of them at R = 7, d = 256, but memory passes: about a
fifth of a block's time on a CPU). Without gradients the block's tensors are overwritten in place, as in
the forward kernel.

Axis legend: i images, r and q image tokens, t captions, p phrases, k candidate images per caption,
d projection dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from acsa.kernels.local_similarity import (
    EPS,
    ProjectedImages,
    ProjectedPhrases,
    block_budget,
    score_in_blocks,
)


def image_gram(images: ProjectedImages) -> Tensor:
    """G [I, R, R]: G_i = V_img V_img^T of every image."""
    return images.value @ images.value.transpose(1, 2)


class ReverseSimilarityKernel:
    """S_rev(i, t) from projected tokens, for every pair (`score_pairwise`) or for candidate lists
    (`score_candidates`). `attention_scale` is lambda of the softmax over image tokens, `leaky_slope` the
    LeakyReLU's."""

    def __init__(self, attention_scale: float, leaky_slope: float) -> None:
        self.attention_scale = attention_scale
        self.leaky_slope = leaky_slope

    def _scores(self, phrases: ProjectedPhrases, logits: Tensor, dots: Tensor, gram: Tensor) -> Tensor:
        """S_rev [t, n] of a block: logits K.Q and dots V_txt . V_img [t, p, R*n] (columns ordered (r, n);
        both overwritten when no gradient is needed), gram [t or 1, R (q), R (r), n]: G[q, r] per image."""
        inplace = not (torch.is_grad_enabled() and (logits.requires_grad or dots.requires_grad))
        num_texts, num_phrases = phrases.key.shape[:2]
        num_tokens = gram.shape[-2]
        real = phrases.mask.to(logits.dtype)[:, :, None, None]  # [t, p, 1, 1]
        s = F.leaky_relu(logits, self.leaky_slope, inplace=inplace)
        s = s.view(num_texts, num_phrases, num_tokens, -1)  # [t, p, r, n]
        s = s.mul_(real) if inplace else s * real  # padded phrases: 0, outside the norm over p
        # lambda / |s[:, r]| over the real phrases: [t, 1, r, n]; the floor inside the root keeps its
        # gradient finite for a caption without real phrases (s = 0)
        norm_sq = (s * s).sum(dim=1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
        scale = self.attention_scale / (norm_sq.sqrt() + EPS)
        z = s.mul_(scale) if inplace else s * scale  # lambda s'[p, r]
        # e = exp(z - max_r z): the softmax over r unnormalised (its normaliser z_p = sum_r e cancels); the
        # largest e of each (t, p, n) is 1, so everything stays finite
        shift = z.amax(dim=2, keepdim=True).detach()
        e = z.sub_(shift).exp_() if inplace else (z - shift).exp()
        dots = dots.view_as(e)
        numerator = (dots.mul_(e) if inplace else dots * e).sum(dim=2)  # [t, p, n]: z_p (V_txt_p . c'_p)
        context_sq = self._quadratic_form(e, gram)  # [t, p, n]: z_p^2 |c'_p|^2
        text_sq = phrases.value.square().sum(dim=-1, keepdim=True)  # [t, p, 1]: |V_txt_p|^2
        # z_p cancels; the floor keeps rsqrt's derivative finite (z_p >= 1: it acts on degenerate values only)
        cosine = numerator * (context_sq * text_sq).clamp_min(EPS * EPS).rsqrt()  # [t, p, n]
        weight = real[..., 0] / real.sum(dim=1).clamp_min(1.0)  # [t, p, 1]: mean over the real phrases
        return (cosine * weight).sum(dim=1)  # [t, n]

    @staticmethod
    def _quadratic_form(e: Tensor, gram: Tensor) -> Tensor:
        """sum_{q, r} e[:, :, q] G[q, r] e[:, :, r] for e [t, p, R, n] and a symmetric gram [t or 1, R, R, n]
        -> [t, p, n]: R (R + 1) / 2 elementwise multiply-adds over [t, p, n] (accumulators are updated in
        place; autograd keeps what it needs)."""
        num_tokens = e.shape[2]
        out = torch.zeros_like(e[:, :, 0])
        for q in range(num_tokens):
            inner = e[:, :, q] * gram[:, None, q, q]  # G[q, q] e_q + 2 sum_{r > q} G[q, r] e_r
            for r in range(q + 1, num_tokens):
                inner.addcmul_(e[:, :, r], gram[:, None, q, r], value=2.0)
            out.addcmul_(e[:, :, q], inner)
        return out

    def score_pairwise(
        self,
        images: ProjectedImages,
        phrases: ProjectedPhrases,
        text_chunk: int = 128,
        image_chunk: int = 512,
    ) -> Tensor:
        """S_rev for every caption and image: [T, I], in blocks of at most `text_chunk` captions x
        `image_chunk` images (smaller when that makes for cache-sized blocks)."""
        gram = image_gram(images).permute(1, 2, 0)  # [q, r, I]

        def block(texts: slice, rows: slice, query_t: Tensor, value_t: Tensor) -> Tensor:
            text = phrases[texts]
            logits = torch.matmul(text.key, query_t)  # [t, p, R*n]
            dots = torch.matmul(text.value, value_t)
            return self._scores(text, logits, dots, gram[None, :, :, rows])  # gram [1, q, r, n]

        num_texts, num_phrases = phrases.key.shape[:2]
        return score_in_blocks(images, num_texts, num_phrases, block, text_chunk, image_chunk)

    def score_candidates(
        self, images: ProjectedImages, phrases: ProjectedPhrases, candidates: Tensor, text_chunk: int = 128
    ) -> Tensor:
        """S_rev(candidates[t, j], t) for each caption's candidate images: [T, k]. Each chunk of captions
        gathers its candidates' tokens ([t, d, R*k]) for batched products; the chunk is bounded by the
        block budget."""
        num_texts, k = candidates.shape
        out = images.query.new_empty(num_texts, k)
        if num_texts == 0 or k == 0:
            return out
        num_tokens, dim = images.query.shape[1:]
        max_texts, max_elements = block_budget(images.query.device)
        chunk = max(1, min(text_chunk, max_texts, max_elements // (num_tokens * k * dim)))
        gram = image_gram(images)  # [I, q, r]
        flat_query = images.query.reshape(-1, dim)  # [(I R), d]
        flat_value = images.value.reshape(-1, dim)
        tokens = torch.arange(num_tokens, device=candidates.device)[:, None]  # [r, 1]
        for t0 in range(0, num_texts, chunk):
            index = candidates[t0 : t0 + chunk]  # [t, k]
            rows = (index[:, None, :] * num_tokens + tokens).reshape(-1)  # [t*R*k] ordered (t, r, k)
            shape = (index.shape[0], -1, dim)  # [t, R*k, d]
            query_t = flat_query.index_select(0, rows).view(shape).transpose(1, 2)  # [t, d, R*k]
            value_t = flat_value.index_select(0, rows).view(shape).transpose(1, 2)
            text = phrases[t0 : t0 + chunk]
            logits = torch.bmm(text.key, query_t)  # [t, p, R*k]
            dots = torch.bmm(text.value, value_t)
            chunk_gram = gram[index].permute(0, 2, 3, 1)  # [t, q, r, k]
            out[t0 : t0 + chunk] = self._scores(text, logits, dots, chunk_gram)
        return out
