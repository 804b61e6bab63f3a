"""The asymmetric cross-attention between image tokens and noun phrases (docs/method.md, section 3).

Image tokens query the phrases of a caption; only the image side asks, hence "asymmetric". For image i with
tokens r and caption t with real phrases p:

    Q = Linear(tokens)  V_img = Linear(tokens)  K = LN(Linear(phrases))  V_txt = LN(Linear(phrases))
    s[r, p] = LeakyReLU(cos(Q_r, K_p));   s[:, p] /= |s[:, p]|_2      (over the image tokens r)
    a[r, :] = softmax over real phrases of (lambda * s[r, :])
    c_r     = sum_p a[r, p] V_txt_p
    S(i, t) = mean_r cos(V_img_r, c_r)                                  (0 for a caption without phrases)

`AsymmetricCrossAttention.similarity` is that equation in plain tensor code, the reference. Training,
validation and evaluation score with the blocked kernel of acsa.kernels.local_similarity instead (same
values without materialising the [T, I, R, P] attention and [T, I, R, d] contexts); tests hold the two equal
in values and gradients. Axes: i images, r image tokens, t captions, p phrases, d embedding dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acsa.kernels.local_similarity import EPS, LocalSimilarityKernel, ProjectedImages, ProjectedPhrases


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

    def attention_weights(self, image_tokens: Tensor, phrase_tokens: Tensor, phrase_mask: Tensor) -> Tensor:
        """a [R, P] of one image (tokens [R, D]) attending over one caption's phrases ([P, D], mask [P])."""
        images = self.project_images(image_tokens[None])
        phrases = self.project_phrases(phrase_tokens[None], phrase_mask[None])
        logits = images.query[0] @ phrases.key[0].T  # [r, p]
        return self.attention(logits, phrases.mask[0][None, :])

    # ---- scoring at scale: projections once per gallery / query set, then the blocked kernel -------------

    @property
    def kernel(self) -> LocalSimilarityKernel:
        return LocalSimilarityKernel(self.attention_scale, self.leaky_slope)

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

    def score_pairwise(self, images: ProjectedImages, phrases: ProjectedPhrases, **blocks: int) -> Tensor:
        """S [T, I] from projected tokens (`LocalSimilarityKernel.score_pairwise`; `blocks`: block sizes)."""
        return self.kernel.score_pairwise(images, phrases, **blocks)

    def score_candidates(
        self, images: ProjectedImages, phrases: ProjectedPhrases, candidates: Tensor, **options: float
    ) -> Tensor:
        """S [T, k] of each caption's candidate images candidates [T, k]
        (`LocalSimilarityKernel.score_candidates`; `options`: text_chunk, dense_ratio)."""
        return self.kernel.score_candidates(images, phrases, candidates, **options)

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

    def rerank_local_similarity(
        self,
        image_tokens: Tensor,
        phrase_tokens: Tensor,
        phrase_mask: Tensor,
        candidates: Tensor,
        text_chunk: int = 128,
        dense_ratio: float = 4.0,
    ) -> Tensor:
        """S for each caption's candidate images (e.g. its global top-k): candidates [T, k] long -> [T, k]."""
        return self.score_candidates(
            self.project_images(image_tokens),
            self.project_phrases(phrase_tokens, phrase_mask),
            candidates,
            text_chunk=text_chunk,
            dense_ratio=dense_ratio,
        )
