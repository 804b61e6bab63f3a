"""Prepared data in memory: splits, images as tensors, the frozen text-feature bank, augmentation.

Axes: B batch, C=3 colour, H/W image height/width, N captions, U unique phrases, P phrases per caption,
D text hidden size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import Dataset

from acsa.data.readers import load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Prepared:
    """The prepare stage's output: split records (see acsa.prepare) and where the images are."""

    image_root: Path
    splits: dict[str, dict]
    dataset: str

    def split(self, name: str) -> dict:
        if name not in self.splits:
            raise KeyError(f"the prepared benchmark has no {name!r} split (has: {', '.join(self.splits)})")
        return self.splits[name]


def load_prepared(prepared_dir: Path) -> Prepared:
    path = Path(prepared_dir) / "splits.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the prepare stage first: dvc repro prepare)")
    raw = json.loads(path.read_text())
    image_root = Path(raw.pop("image_root"))
    if not image_root.is_absolute():
        image_root = Path(prepared_dir) / image_root
    dataset = raw.pop("dataset")
    return Prepared(image_root=image_root, splits=raw, dataset=dataset)


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


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float, ImageNet-normalised (the convention of timm's pretrained backbones)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, hflip: bool, translate: float, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation of a float batch [B, C, H, W], one draw per image.

    Random numbers come from `generator` on the CPU so a seeded run is reproducible on any device.
    """
    batch = images.shape[0]
    theta = torch.zeros(batch, 2, 3)
    flip = torch.ones(batch)
    if hflip:
        flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, 0, 0] = flip
    theta[:, 1, 1] = 1.0
    if translate > 0:
        # affine_grid works in [-1, 1] coordinates: a shift of 2*t is t of the image size.
        theta[:, :, 2] = (torch.rand(batch, 2, generator=generator) * 2 - 1) * 2 * translate
    if not hflip and translate <= 0:
        return images
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class TextBank:
    """Frozen text features of one split: sentence [N, D] and per-caption phrases gathered from [U, D]."""

    def __init__(self, sentence: torch.Tensor, phrases: torch.Tensor, phrase_index: torch.Tensor) -> None:
        self.sentence = sentence  # [N, D]
        self.phrases = phrases  # [U, D]
        self.phrase_index = phrase_index  # [N, P], -1 = padding

    @classmethod
    def load(cls, features_path: Path, split: dict, split_name: str) -> TextBank:
        if not Path(features_path).is_file():
            raise FileNotFoundError(f"{features_path}: not found (run the embed_text stage first)")
        features = load_file(str(features_path))
        key = f"{split_name}.sentence"
        if key not in features:
            raise KeyError(f"{features_path}: no features for split {split_name!r}")
        sentence = features[key]
        if sentence.shape[0] != len(split["captions"]):
            raise ValueError(
                f"{features_path}: {key} has {sentence.shape[0]} rows but the split has "
                f"{len(split['captions'])} captions (stale features: rerun dvc repro)"
            )
        return cls(sentence, features["phrases"], torch.tensor(split["phrase_index"], dtype=torch.long))

    def __len__(self) -> int:
        return self.sentence.shape[0]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sentence [B, D], phrases [B, P, D] with zeros at padding, phrase_mask [B, P] bool)."""
        index = self.phrase_index[rows]  # [B, P]
        mask = index >= 0
        phrases = self.phrases[index.clamp(min=0)] * mask.unsqueeze(-1)  # [B, P, D]
        return self.sentence[rows], phrases, mask

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-dimension (sentence mean, sentence std, phrase mean, phrase std) of this split's features.

        Sentences and phrases get their own statistics: template sentences are nearly collinear while single
        phrases spread much more (findings.md). Only the phrases this split uses count: the unique-phrase
        table also holds other splits' phrases.
        """
        used = torch.unique(self.phrase_index[self.phrase_index >= 0])
        phrases = self.phrases[used]
        return (
            self.sentence.mean(0),
            self.sentence.std(0).clamp(min=1e-6),
            phrases.mean(0),
            phrases.std(0).clamp(min=1e-6),
        )
