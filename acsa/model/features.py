"""What the model returns: named features of a batch of images or captions, and helpers that treat every
field alike (concatenate batches, move to a device)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor


@dataclass
class ImageFeatures:
    """What the image encoder returns for a batch of images."""

    global_feat: Tensor  # [B, D] pooled last stage -> Linear -> BatchNorm neck (global alignment)
    # [B, R, D] image token set for the cross-attention: [mean, regions..., windows...] (no mean with
    # model.use_image_token false; [global] alone without regions and windows)
    tokens: Tensor


@dataclass
class BackboneOutputs:
    """The backbone's feature maps pooled as the image heads read them: everything between the backbone and
    the trainable heads. With a frozen backbone (`image.frozen`) these are computed once per image and
    cached (the embed_images stage); training then runs the heads only."""

    pooled: Tensor  # [B, C] mean of the last feature map (global embedding; channel-slice regions)
    bands: Tensor  # [B, K, C] the last map pooled over each body band (stripe regions: head ... feet)
    windows: Tensor  # [B, G, C'] the window stage's map pooled on the window grid (row-major)


@dataclass
class TextFeatures:
    # [B, D] sentence -> standardise -> Linear (+ phrase attention pooling: model.global_text) -> BN neck
    global_feat: Tensor
    phrase_tokens: Tensor  # [B, P, D] phrases -> standardise -> Linear (the cross-attention's K/V follow)
    phrase_mask: Tensor  # [B, P] bool, True = real phrase


Features = TypeVar("Features", ImageFeatures, TextFeatures, BackboneOutputs)


def cat_features(parts: list[Features]) -> Features:
    """Concatenate a list of feature dataclasses (one per batch) field by field along dim 0."""
    first = parts[0]
    return type(first)(
        **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(first)}
    )


def features_to(features: Features, device: torch.device | str) -> Features:
    return type(features)(
        **{f.name: getattr(features, f.name).to(device) for f in dataclasses.fields(features)}
    )
