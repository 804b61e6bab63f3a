"""A split's images as tensors: decoded once (or on access) at the model's input size, the model's input
normalisation, and training augmentation.

Axes: B batch, C=3 colour, H/W image height/width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from acsa.data.images import load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRELOAD_LIMIT_BYTES = 2 * 1024**3  # decode a split's images once into memory when they fit in this budget


class ImageTable(Dataset):
    """Images of a split as uint8 tensors [C, H, W] resized to the model's input size.

    With `preload`, every image is decoded once into one tensor (fast epochs for small benchmarks);
    otherwise images are decoded on access (use DataLoader workers for large benchmarks).
    """

    def __init__(self, image_root: Path, paths: list[str], height: int, width: int, preload: bool) -> None:
        self.image_root = Path(image_root)
        self.paths = list(paths)
        self.size = (height, width)
        self.cache: torch.Tensor | None = None
        if preload:
            self.cache = torch.stack([self._decode(i) for i in range(len(self.paths))])

    def _decode(self, index: int) -> torch.Tensor:
        image = load_image(self.image_root / self.paths[index])
        height, width = self.size
        if image.size != (width, height):
            image = image.resize((width, height), resample=3)  # PIL.Image.BICUBIC
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)  # [C, H, W]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[index]
        return self._decode(index)


class RowImages(Dataset):
    """Dataset over caption rows that returns (image of the row, row index): rows share images."""

    def __init__(self, images: ImageTable, image_index: list[int]) -> None:
        self.images = images
        self.image_index = image_index

    def __len__(self) -> int:
        return len(self.image_index)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        return self.images[self.image_index[row]], row


class RowImageIndex(Dataset):
    """Dataset over caption rows that returns (index of the row's image, row index): the batches of a frozen
    backbone's cached outputs (acsa.training.step.cached_views reads the images' outputs by the index)."""

    def __init__(self, image_index: list[int]) -> None:
        self.image_index = image_index

    def __len__(self) -> int:
        return len(self.image_index)

    def __getitem__(self, row: int) -> tuple[int, int]:
        return self.image_index[row], row


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float, ImageNet-normalised (the convention of timm's pretrained backbones)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augmentation_draws(count: int, hflip: bool, translate: float, generator: torch.Generator) -> torch.Tensor:
    """The affine transforms [count, 2, 3] of `count` random horizontal flips and translations, one per
    image, drawn from `generator` (on the CPU, so a seeded run is reproducible on any device): the flips
    first, then the shifts."""
    theta = torch.zeros(count, 2, 3)
    flip = torch.ones(count)
    if hflip:
        flip = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, 0, 0] = flip
    theta[:, 1, 1] = 1.0
    if translate > 0:
        # affine_grid works in [-1, 1] coordinates: a shift of 2*t is t of the image size.
        theta[:, :, 2] = (torch.rand(count, 2, generator=generator) * 2 - 1) * 2 * translate
    return theta


def transformed(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """A float batch [B, C, H, W] under the affine transforms theta [B, 2, 3] (border padding)."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(images: torch.Tensor, hflip: bool, translate: float, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation of a float batch [B, C, H, W], one draw per image."""
    if not hflip and translate <= 0:
        return images
    return transformed(images, augmentation_draws(images.shape[0], hflip, translate, generator))
