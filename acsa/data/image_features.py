"""A frozen backbone's cached outputs (the embed_images stage's files), read back for training and scoring.

IMAGE_FEATURES/<split>.safetensors holds `pooled` [V, N, C], `bands` [V, N, K, C] and `windows` [V, N, G, C']
(acsa.model.features.BackboneOutputs, for V views of N images: every view of each training image, view 0
alone for val and test), with metadata: the image settings they were computed under (CACHE_KEYS), the
SHA-256 of the backbone's weights file and of the split's records. A file made under other settings, for
other images or by other weights is refused: rerun the embed_images stage.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from acsa.config.sections import ImageConfig
from acsa.errors import DataError, one_line

SETTINGS_KEY = "acsa.image_settings"  # JSON of cache_settings(cfg)
RECORDS_HASH_KEY = "acsa.records_sha256"  # the split's records.json (its image list)
WEIGHTS_HASH_KEY = "acsa.weights_sha256"  # the backbone's weights file ("" when none: random weights)
FIELDS = ("pooled", "bands", "windows")
# The image settings the cached outputs depend on (everything the backbone, its pooling and the views see)
CACHE_KEYS = (
    "backbone",
    "backbone_kwargs",
    "init",
    "pretrained_path",
    "height",
    "width",
    "window_stage",
    "window_grid",
    "hflip",
    "translate",
    "views",
)


def cache_settings(cfg: ImageConfig) -> dict:
    """The values of CACHE_KEYS in `cfg`: recorded in a cache file, compared when it is read."""
    values = asdict(cfg)
    return {key: values[key] for key in CACHE_KEYS}


class CachedImages:
    """One split's cached backbone outputs: `rows(image_index, views)` gives the tensors of those images in
    those views; indexing and len() follow the split's images (view 0), like an ImageTable."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        self.tensors = tensors  # name -> [V, N, ...]
        self.path = path

    @classmethod
    def load(cls, path: Path, cfg: ImageConfig, records_hash: str, weights_hash: str) -> CachedImages:
        """Read and check a cache file against the settings of `cfg`, the split's records and the weights."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the embed_images stage first: dvc repro)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in FIELDS if name in f.keys()}
        except (SafetensorError, OSError) as err:
            raise DataError(f"{path}: not a readable safetensors file ({one_line(err)})") from None
        stale = "rerun the embed_images stage (dvc repro)"
        try:
            settings = json.loads(meta.get(SETTINGS_KEY, "null"))
        except ValueError:
            settings = None
        expected = cache_settings(cfg)
        if settings != expected:
            recorded = settings if isinstance(settings, dict) else {}
            differing = [key for key in CACHE_KEYS if recorded.get(key, object()) != expected[key]]
            raise DataError(f"{path}: made under other image settings ({', '.join(differing)}): {stale}")
        if meta.get(RECORDS_HASH_KEY) != records_hash:
            raise DataError(f"{path}: made for other images than the prepared split's: {stale}")
        if meta.get(WEIGHTS_HASH_KEY) != weights_hash:
            raise DataError(f"{path}: made with another backbone weights file: {stale}")
        missing = [name for name in FIELDS if name not in tensors]
        if missing:
            raise DataError(f"{path}: no {', '.join(missing)}: not an embed_images output")
        views, count = tensors["pooled"].shape[:2]
        for name, tensor in tensors.items():
            if not tensor.is_floating_point() or tensor.shape[:2] != (views, count):
                raise DataError(f"{path}: {name} is not [views, images, ...] floats like pooled")
            if not bool(torch.isfinite(tensor).all()):
                raise DataError(f"{path}: {name} holds NaN or infinite values (a damaged file): {stale}")
        return cls(tensors, path)

    @property
    def views(self) -> int:
        return self.tensors["pooled"].shape[0]

    def __len__(self) -> int:
        return self.tensors["pooled"].shape[1]

    def rows(self, image_index: torch.Tensor, views: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{name: [b, ...]} of images image_index [b], each in its view views [b] (default: view 0)."""
        if views is None:
            views = torch.zeros_like(image_index)
        return {name: tensor[views, image_index] for name, tensor in self.tensors.items()}
