"""Loss terms as pure functions (docs/method.md, sections 2 and 4).

Shapes: B pairs of a batch, D embed dim, C identities.

Row i of a batch is one (image, caption) pair with identity labels[i]; every image-caption pair of the same
identity is a positive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def matching_target(labels: Tensor, target_norm: str = "l1") -> Tensor:
    """q [B, B]: 1[y_i = y_j] normalised per row by L1 (CMPM paper) or L2 norm (ACSA code, IRRA)."""
    positives = (labels[:, None] == labels[None, :]).float()
    if target_norm == "l1":
        return positives / positives.sum(dim=1, keepdim=True)
    if target_norm == "l2":
        return positives / positives.norm(dim=1, keepdim=True)
    raise ValueError(f"loss.cmpm_target_norm: {target_norm!r} is not one of l1, l2")


def matching_kl(logits: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """mean_i KL(softmax_j(logits_i) || target_i), eps inside the log of the target; logits, target [B, B]."""
    pred = torch.softmax(logits, dim=1)
    kl = pred * (F.log_softmax(logits, dim=1) - torch.log(target + eps))
    return kl.sum(dim=1).mean()


def cmpm_loss(
    image_feats: Tensor, text_feats: Tensor, labels: Tensor, target_norm: str = "l1", eps: float = 1e-8
) -> Tensor:
    """Cross-modal projection matching (Zhang & Lu 2018): image->text plus text->image KL.

    p_ij = softmax_j(x_i . t_j/|t_j|) against q_ij = normalised 1[y_i = y_j]; features [B, D], labels [B].
    """
    image_proj_text = image_feats @ F.normalize(text_feats, dim=1).T  # [B images, B texts]
    text_proj_image = text_feats @ F.normalize(image_feats, dim=1).T  # [B texts, B images]
    target = matching_target(labels, target_norm).to(image_feats.dtype)  # symmetric labels -> same both ways
    return matching_kl(image_proj_text, target, eps) + matching_kl(text_proj_image, target, eps)


def cmpc_loss(image_feats: Tensor, text_feats: Tensor, labels: Tensor, classifier_weight: Tensor) -> Tensor:
    """Cross-modal projection classification: CE(x_hat W, y) + CE(t_hat W, y).

    x_hat = (x . t/|t|) t/|t| projects each image feature onto its caption's direction (and t_hat the other
    way); W [D, C] has L2-normalised columns and no bias.
    """
    weight = F.normalize(classifier_weight, dim=0)
    text_dir = F.normalize(text_feats, dim=1)
    image_dir = F.normalize(image_feats, dim=1)
    image_hat = (image_feats * text_dir).sum(dim=1, keepdim=True) * text_dir  # [B, D]
    text_hat = (text_feats * image_dir).sum(dim=1, keepdim=True) * image_dir
    return F.cross_entropy(image_hat @ weight, labels) + F.cross_entropy(text_hat @ weight, labels)


def local_loss(
    local_similarity: Tensor,
    labels: Tensor,
    scale: float,
    target_norm: str = "l1",
    eps: float = 1e-8,
) -> Tensor:
    """CMPM-style KL on the batch's local scores S [B texts, B images], logits scale * S, both directions.

    text->image normalises each text's row over images; image->text normalises each image's column over texts.
    (The released code normalised both terms over texts.)
    """
    target = matching_target(labels, target_norm).to(local_similarity.dtype)
    logits = scale * local_similarity
    return matching_kl(logits, target, eps) + matching_kl(logits.T, target, eps)
