"""The fusion control's second score (`model.twin_global`): a second global branch, initialised and trained
on its own, whose cosine is fused with the first global score exactly as full ACSA fuses its local score
(the fusion weight chosen on validation from the same grid).

Full ACSA ranks by global + w x local: two scores. Whether its lead over a global-only model comes from local
alignment or from having two scores to fuse is what this control separates: a model with two global scores
and no local alignment. The twin sees what the first global branch sees (the backbone's pooled last map; the
standardised sentence and, with `model.global_text: sentence_and_phrases`, the phrases pooled by attention)
through its own projections, BatchNorm necks and identity classifier, and is trained with its own CMPM + CMPC.

Its features travel in the slots of the second score (ImageFeatures.tokens [B, 1, D], TextFeatures
phrase_tokens [B, 1, D] with an all-true mask), so that scoring, re-ranking and fusion treat it as they
treat the local score. Axes: B batch, D embed_dim, C backbone channels, H text hidden size, P phrases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acsa.model.image_encoder import bn_neck
from acsa.model.phrase_pooling import PhraseAttentionPool


class TwinGlobalBranch(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, dim: int, num_classes: int, with_phrases: bool) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, dim)
        self.image_neck = bn_neck(dim)
        self.sentence_proj = nn.Linear(text_dim, dim)
        self.phrase_proj = nn.Linear(text_dim, dim) if with_phrases else None
        self.phrase_pool = PhraseAttentionPool(dim) if with_phrases else None
        self.text_neck = bn_neck(dim)
        self.classifier = nn.Parameter(torch.empty(dim, num_classes))  # its own CMPC classifier [D, C]
        nn.init.xavier_uniform_(self.classifier)

    def image(self, pooled: Tensor) -> Tensor:
        """The backbone's pooled last map [B, C] -> the twin's image embedding as one token [B, 1, D]."""
        return self.image_neck(self.image_proj(pooled))[:, None]

    def text(self, sentence: Tensor, phrases: Tensor, phrase_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Standardised sentence [B, H] and phrases [B, P, H] -> the twin's text embedding as one token
        [B, 1, D] and its mask [B, 1] (all true)."""
        feat = self.sentence_proj(sentence)
        if self.phrase_pool is not None:
            feat = feat + self.phrase_pool(self.phrase_proj(phrases), phrase_mask)
        token = self.text_neck(feat)[:, None]
        return token, torch.ones(token.shape[:2], dtype=torch.bool, device=token.device)

    @staticmethod
    def similarity(text_token: Tensor, image_token: Tensor, candidates: Tensor | None = None) -> Tensor:
        """Cosine of the twin embeddings: [T, I] for every pair, or [T, k] for each caption's candidates
        (candidates [T, k] gallery indices)."""
        text = F.normalize(text_token[:, 0], dim=-1)  # [T, D]
        image = F.normalize(image_token[:, 0], dim=-1)  # [I, D]
        if candidates is None:
            return text @ image.T
        return torch.einsum("td,tkd->tk", text, image[candidates])
