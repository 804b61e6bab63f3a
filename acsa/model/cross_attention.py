"""The asymmetric cross-attention between image tokens and noun phrases (docs/method.md, section 3).

Image tokens query the phrases of a caption; only the image side asks, hence "asymmetric". For image i with
tokens r and caption t with real phrases p:

    Q = Linear(tokens)  V_img = Linear(tokens)  K = LN(Linear(phrases))  V_txt = LN(Linear(phrases))
    s[r, p] = LeakyReLU(cos(Q_r, K_p));   s[:, p] /= |s[:, p]|_2      (over the image tokens r)
    a[r, :] = softmax over real phrases of (lambda * s[r, :])
    c_r     = sum_p a[r, p] V_txt_p
    S(i, t) = mean_r cos(V_img_r, c_r)                                  (0 for a caption without phrases)

The reverse direction (`model.attention: phrase_queries`, or `both` in training as the released code does)
lets each real phrase query the image tokens, with the same projections:

    s'[p, r] = LeakyReLU(cos(K_p, Q_r));   s'[:, r] /= |s'[:, r]|_2          (over the real phrases p)
    a'[p, :] = softmax over image tokens of (lambda * s'[p, :])
    c'_p     = sum_r a'[p, r] V_img_r
    S_rev(i, t) = mean over real phrases of cos(V_txt_p, c'_p)             (0 for a caption without phrases)

`AsymmetricCrossAttention.similarity` and `.reverse_similarity` are those equations in plain tensor code, the
references. Training, validation and evaluation score with the blocked kernels of acsa.kernels
(local_similarity, reverse_similarity) instead (same values without materialising the [T, I, R, P] attention
and the [T, I, R or P, d] contexts); tests hold each kernel equal to its reference in values and gradients.
Axes: i images, r image tokens, t captions, p phrases, d embedding dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acsa.kernels.local_similarity import EPS, LocalSimilarityKernel, ProjectedImages, ProjectedPhrases
from acsa.kernels.reverse_similarity import ReverseSimilarityKernel


def _l2norm(x: Tensor, dim: int) -> Tensor:
    return x / (x.norm(dim=dim, keepdim=True) + EPS)


class AsymmetricCrossAttention(nn.Module):
    """The projections of the cross-attention and the local score S(i, t) of every (caption, image) pair.

    `mask_padding=False` reproduces the released code, in which padded phrase slots are attended to.
    """

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

    def real_phrases(self, phrase_mask: Tensor) -> Tensor:
        """The phrases attended to: the real ones, or every slot when padding is attended to (as the
        released code does)."""
        return phrase_mask.bool() if self.mask_padding else torch.ones_like(phrase_mask, dtype=torch.bool)

    # ---- the equation as the paper writes it (the reference) ---------------------------------------------

    def attention(self, cos_qk: Tensor, mask: Tensor) -> Tensor:
        """a [..., R, P] from cosines cos(Q_r, K_p) [..., R, P] (r on axis -2); mask broadcastable to them."""
        s = F.leaky_relu(cos_qk, self.leaky_slope)
        s = _l2norm(s, -2)  # over image tokens r, per phrase
        s = (self.attention_scale * s).masked_fill(~mask, torch.finfo(s.dtype).min)
        # x mask: a caption with no real phrase gets no context (its softmax over nothing would be uniform)
        return torch.softmax(s, dim=-1) * mask

    def similarity(self, image_tokens: Tensor, phrase_tokens: Tensor, phrase_mask: Tensor) -> Tensor:
        """S [T, I] of captions (phrase_tokens [T, P, D], phrase_mask [T, P]) and images (image_tokens
        [I, R, D]), as the module docstring writes it. Memory grows with T x I x R x P x d: for tests and
        small inputs; scoring at scale uses the kernel (`pairwise_local_similarity`)."""
        q = _l2norm(self.query(image_tokens), -1)  # [I, R, d]  unit Q: Q . K = cos(Q, K)
        v_img = self.image_value(image_tokens)  # [I, R, d]
        k = _l2norm(self.key(phrase_tokens), -1)  # [T, P, d]  unit K
        v_txt = self.text_value(phrase_tokens)  # [T, P, d]
        mask = self.real_phrases(phrase_mask)[:, None, None, :]  # [T, 1, 1, P]
        a = self.attention(torch.einsum("ird,tpd->tirp", q, k), mask)  # [T, I, R, P]
        context = torch.einsum("tirp,tpd->tird", a, v_txt)  # [T, I, R, d]  c_r = sum_p a[r, p] V_txt_p
        return F.cosine_similarity(v_img, context, dim=-1, eps=EPS).mean(dim=-1)  # [T, I]  mean over r

    forward = similarity

    def reverse_attention(self, cos_kq: Tensor, real: Tensor) -> Tensor:
        """a' [..., P, R] from cosines cos(K_p, Q_r) [..., P, R] (p on axis -2); real [..., P, 1] marks the
        phrases that count (padded ones are left out of the normalisation over p)."""
        s = F.leaky_relu(cos_kq, self.leaky_slope) * real
        s = _l2norm(s, -2)  # over the real phrases p, per image token r
        return torch.softmax(self.attention_scale * s, dim=-1)  # over the image tokens r

    def reverse_similarity(self, image_tokens: Tensor, phrase_tokens: Tensor, phrase_mask: Tensor) -> Tensor:
        """S_rev [T, I] of captions (phrase_tokens [T, P, D], phrase_mask [T, P]) and images (image_tokens
        [I, R, D]), as the module docstring writes it: the reference of the reverse kernel. Memory grows
        with T x I x P x d: for tests and small inputs (at scale: the kernel, `reverse=True` below)."""
        q = _l2norm(self.query(image_tokens), -1)  # [I, R, d]
        v_img = self.image_value(image_tokens)  # [I, R, d]
        k = _l2norm(self.key(phrase_tokens), -1)  # [T, P, d]
        v_txt = self.text_value(phrase_tokens)  # [T, P, d]
        real = self.real_phrases(phrase_mask)  # [T, P]
        cos_kq = torch.einsum("tpd,ird->tipr", k, q)  # [T, I, P, R]
        a = self.reverse_attention(cos_kq, real[:, None, :, None])  # [T, I, P, R]
        context = torch.einsum("tipr,ird->tipd", a, v_img)  # [T, I, P, d]  c'_p = sum_r a'[p, r] V_img_r
        cosine = F.cosine_similarity(v_txt[:, None], context, dim=-1, eps=EPS)  # [T, I, P]
        weight = real.to(cosine.dtype)
        weight = weight / weight.sum(dim=-1, keepdim=True).clamp_min(1)  # [T, P]  mean over the real phrases
        return (cosine * weight[:, None]).sum(dim=-1)  # [T, I]

    def attention_weights(
        self, image_tokens: Tensor, phrase_tokens: Tensor, phrase_mask: Tensor, reverse: bool = False
    ) -> Tensor:
        """a [R, P] of one image (tokens [R, D]) attending over one caption's phrases ([P, D], mask [P]);
        with `reverse`, a'[p, r] of the phrases attending over the image tokens, transposed to [R, P] (each
        real phrase's column sums to 1 over the tokens; padded phrases' columns are 0)."""
        images = self.project_images(image_tokens[None])
        phrases = self.project_phrases(phrase_tokens[None], phrase_mask[None])
        logits = images.query[0] @ phrases.key[0].T  # [r, p]
        if reverse:
            real = phrases.mask[0][:, None]  # [p, 1]
            return (self.reverse_attention(logits.T, real) * real).T
        return self.attention(logits, phrases.mask[0][None, :])

    # ---- scoring at scale: projections once per gallery / query set, then the blocked kernel -------------

    @property
    def kernel(self) -> LocalSimilarityKernel:
        return LocalSimilarityKernel(self.attention_scale, self.leaky_slope)

    @property
    def reverse_kernel(self) -> ReverseSimilarityKernel:
        return ReverseSimilarityKernel(self.attention_scale, self.leaky_slope)

    def project_images(self, image_tokens: Tensor) -> ProjectedImages:
        """[I, R, D] image tokens -> normalised queries and image values."""
        value = self.image_value(image_tokens)
        return ProjectedImages(
            query=_l2norm(self.query(image_tokens), -1), value=value, value_norm=value.norm(dim=-1)
        )

    def project_phrases(self, phrase_tokens: Tensor, phrase_mask: Tensor) -> ProjectedPhrases:
        """[T, P, D] phrase tokens + [T, P] mask -> normalised keys and text values."""
        mask = self.real_phrases(phrase_mask)
        return ProjectedPhrases(
            key=_l2norm(self.key(phrase_tokens), -1), value=self.text_value(phrase_tokens), mask=mask
        )

    def score_pairwise(
        self, images: ProjectedImages, phrases: ProjectedPhrases, reverse: bool = False, **blocks: int
    ) -> Tensor:
        """S [T, I] from projected tokens (`LocalSimilarityKernel.score_pairwise`; `blocks`: block sizes);
        S_rev with `reverse` (`ReverseSimilarityKernel.score_pairwise`)."""
        if reverse:
            return self.reverse_kernel.score_pairwise(images, phrases, **blocks)
        return self.kernel.score_pairwise(images, phrases, **blocks)

    def score_candidates(
        self,
        images: ProjectedImages,
        phrases: ProjectedPhrases,
        candidates: Tensor,
        reverse: bool = False,
        **options: float,
    ) -> Tensor:
        """S [T, k] of each caption's candidate images candidates [T, k]
        (`LocalSimilarityKernel.score_candidates`; `options`: text_chunk, dense_ratio); S_rev with `reverse`
        (`ReverseSimilarityKernel.score_candidates`, which takes text_chunk only)."""
        if reverse:
            options.pop("dense_ratio", None)
            return self.reverse_kernel.score_candidates(images, phrases, candidates, **options)
        return self.kernel.score_candidates(images, phrases, candidates, **options)

    def pairwise_local_similarity(
        self,
        image_tokens: Tensor,
        phrase_tokens: Tensor,
        phrase_mask: Tensor,
        text_chunk: int = 128,
        image_chunk: int = 512,
        reverse: bool = False,
    ) -> Tensor:
        """image_tokens [I, R, D], phrase_tokens [T, P, D], phrase_mask [T, P] -> S [T texts, I images]
        (S_rev with `reverse`)."""
        return self.score_pairwise(
            self.project_images(image_tokens),
            self.project_phrases(phrase_tokens, phrase_mask),
            reverse,
            text_chunk=text_chunk,
            image_chunk=image_chunk,
        )

    def rerank_local_similarity(
        self,
        image_tokens: Tensor,
        phrase_tokens: Tensor,
        phrase_mask: Tensor,
        candidates: Tensor,
        text_chunk: int = 128,
        dense_ratio: float = 4.0,
        reverse: bool = False,
    ) -> Tensor:
        """S for each caption's candidate images (e.g. its global top-k): candidates [T, k] long -> [T, k]
        (S_rev with `reverse`)."""
        return self.score_candidates(
            self.project_images(image_tokens),
            self.project_phrases(phrase_tokens, phrase_mask),
            candidates,
            reverse,
            text_chunk=text_chunk,
            dense_ratio=dense_ratio,
        )
