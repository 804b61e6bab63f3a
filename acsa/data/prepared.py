"""The prepare stage's output, read back: one folder per split, and the one split reader every stage uses
(`read_split`: a split's records, its images and its text source).

PREPARED/<split>/records.json holds the fields of `acsa.data.types.TrainSplit` / `EvalSplit` plus
`phrase_index` ([captions, num_phrases] indices into the split's own phrases.json, -1 = padding), `dataset`,
`split` and `image_root` (relative to PREPARED when the benchmark was generated inside it). A split is only
read when asked for: training and model selection never open the test folder (docs/data.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from acsa import paths
from acsa.config.sections import ImageConfig, Params
from acsa.data.image_features import CachedImages
from acsa.data.image_tables import PRELOAD_LIMIT_BYTES, ImageTable
from acsa.data.text_features import FrozenTextSource, TokenTextSource, open_text_source
from acsa.errors import DataError
from acsa.storage.files import read_json, sha256_of


@dataclass
class Prepared:
    """The prepare stage's output folder; `split(name)` reads (once) the records of one split."""

    root: Path  # the prepared folder
    available: tuple[str, ...]  # the splits it holds, in paths.SPLITS order
    _records: dict[str, dict] = field(default_factory=dict, repr=False)

    def has(self, name: str) -> bool:
        return name in self.available

    def folder(self, name: str) -> Path:
        """PREPARED/<name>: records.json, phrases.json, tokens.safetensors."""
        if name not in self.available:
            raise DataError(
                f"{self.root}: the prepared benchmark has no {name!r} split "
                f"(has: {', '.join(self.available)})"
            )
        return self.root / name

    def attributes_file(self, name: str) -> Path:
        """The synthetic benchmark's attribute records (attributes.json beside imgs/; public benchmarks have
        none), found through split `name`'s image root."""
        return self.image_root(name).parent / paths.ATTRIBUTES_FILE

    def split(self, name: str) -> dict:
        """The records of split `name` (records.json)."""
        if name not in self._records:
            path = self.folder(name) / paths.RECORDS_FILE
            records = read_json(path)
            if not isinstance(records, dict) or not isinstance(records.get("image_root"), str):
                raise DataError(f"{path}: not a prepared split (rerun the prepare stage: dvc repro prepare)")
            self._records[name] = records
        return self._records[name]

    def image_root(self, name: str) -> Path:
        """Where split `name`'s image paths are relative to."""
        image_root = Path(self.split(name)["image_root"])
        return image_root if image_root.is_absolute() else self.root / image_root

    def dataset(self, name: str) -> str:
        return self.split(name)["dataset"]


def load_prepared(prepared_dir: Path) -> Prepared:
    """The prepared folder, without reading any split yet."""
    root = Path(prepared_dir)
    available = tuple(name for name in paths.SPLITS if (root / name / paths.RECORDS_FILE).is_file())
    if "train" not in available and "test" not in available:
        raise FileNotFoundError(
            f"{root}: no prepared splits (<split>/{paths.RECORDS_FILE}); run the prepare stage first: "
            "dvc repro prepare"
        )
    return Prepared(root=root, available=available)


def image_table(prepared: Prepared, name: str, image: ImageConfig) -> ImageTable:
    """The images of split `name` at the model's input size (train: its unique images; val/test: the
    gallery), preloaded when they fit in memory."""
    records = prepared.split(name)
    image_paths = records["images" if name == "train" else "image_paths"]
    size = len(image_paths) * 3 * image.height * image.width
    return ImageTable(
        prepared.image_root(name), image_paths, image.height, image.width, size <= PRELOAD_LIMIT_BYTES
    )


@dataclass
class Split:
    """One split ready for a model: its records, its images and the text source of its captions."""

    name: str
    records: dict  # the split's records.json
    # eval splits: the gallery, each image once; train: the unique training images (pixels, or with a frozen
    # backbone its cached outputs)
    images: ImageTable | CachedImages
    text: FrozenTextSource | TokenTextSource  # one row per caption (query)

    @property
    def query_ids(self) -> torch.Tensor:
        """[Q] identity of each caption (eval splits)."""
        return torch.tensor(self.records["caption_ids"])

    @property
    def gallery_ids(self) -> torch.Tensor:
        """[G] identity of each gallery image (eval splits)."""
        return torch.tensor(self.records["image_ids"])


def cached_images(prepared: Prepared, image_features: Path, name: str, image: ImageConfig) -> CachedImages:
    """The frozen backbone's cached outputs for split `name` (the embed_images stage's file), checked against
    the image settings, the split's records and the backbone's weights file."""
    weights = ""
    if image.init == "pretrained" and image.pretrained_path is not None:
        weights = sha256_of(paths.resolve_backbone_weights(image.pretrained_path))
    records_hash = sha256_of(prepared.folder(name) / paths.RECORDS_FILE)
    return CachedImages.load(paths.features_file(image_features, name), image, records_hash, weights)


def read_split(
    prepared: Prepared | Path,
    features_dir: Path,
    name: str,
    params: Params,
    image_features: Path = paths.IMAGE_FEATURES,
) -> Split:
    """Split `name` of the prepared benchmark (a folder or an already loaded `Prepared`): its images sized by
    `params.image` (with `image.frozen`, the backbone's cached outputs in `image_features` instead) and its
    text from the split's frozen features in `features_dir` (or its token ids when `params.text.finetune`)."""
    if not isinstance(prepared, Prepared):
        prepared = load_prepared(prepared)
    records = prepared.split(name)
    if params.image.frozen:
        images: ImageTable | CachedImages = cached_images(prepared, image_features, name, params.image)
    else:
        images = image_table(prepared, name, params.image)
    text = open_text_source(params.text.finetune, prepared.folder(name), features_dir, records, name)
    return Split(name, records, images, text)
