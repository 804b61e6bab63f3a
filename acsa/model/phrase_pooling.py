"""Attention pooling of a caption's phrase features into one vector, for the global text feature of
`model.global_text: sentence_and_phrases` (docs/method.md, section 2: why a fair control).

Additive attention (Bahdanau-style) over the real phrases p of a caption, x_p its projected phrase feature:

    score_p = w . tanh(U x_p)
    alpha   = softmax over the real phrases of score
    pooled  = sum_p alpha_p x_p                      (0 for a caption without real phrases)

Axes: b captions, p phrase slots, d embedding dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PhraseAttentionPool(nn.Module):
    """U [d, d] (with a bias) and w [d]: the trainable part; the phrase features come projected."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(dim, dim)  # U
        self.score = nn.Linear(dim, 1, bias=False)  # w

    def forward(self, phrase_tokens: Tensor, phrase_mask: Tensor) -> Tensor:
        """phrase_tokens [b, p, d], phrase_mask [b, p] (True = real phrase) -> pooled [b, d]."""
        mask = phrase_mask.bool()
        scores = self.score(torch.tanh(self.hidden(phrase_tokens))).squeeze(-1)  # [b, p]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        # x mask: a caption without real phrases pools nothing (its softmax over nothing would be uniform)
        alpha = torch.softmax(scores, dim=-1) * mask  # [b, p]
        return torch.einsum("bp,bpd->bd", alpha, phrase_tokens)
