"""The prepare stage's output, read back: split records, where the images are, and the one split reader every
stage uses (`read_split`: a split's records, its images and its text source).

splits.json holds, per split, the fields of `acsa.data.types.TrainSplit` / `EvalSplit` plus `phrase_index`
([captions, num_phrases] indices into phrases.json, -1 = padding), and at its top `dataset` and `image_root`
(relative to the prepared folder when the benchmark was generated inside it). docs/data.md describes it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from acsa import paths
from acsa.config import ImageConfig, Params
from acsa.data.image_tables import PRELOAD_LIMIT_BYTES, ImageTable
from acsa.data.text_features import FrozenTextSource, TokenTextSource, open_text_source
from acsa.errors import DataError
from acsa.storage.files import read_json


@dataclass(frozen=True)
class Prepared:
    """The prepare stage's output: split records (see acsa.prepare) and where the images are."""

    root: Path  # the prepared folder
    image_root: Path
    splits: dict[str, dict]
    dataset: str

    def split(self, name: str) -> dict:
        if name not in self.splits:
            raise DataError(
                f"{self.root}: the prepared benchmark has no {name!r} split (has: {', '.join(self.splits)})"
            )
        return self.splits[name]


def load_prepared(prepared_dir: Path) -> Prepared:
    path = Path(prepared_dir) / paths.SPLITS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the prepare stage first: dvc repro prepare)")
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("image_root"), str) or "train" not in raw:
        raise DataError(f"{path}: not a prepared splits file (rerun the prepare stage: dvc repro prepare)")
    image_root = Path(raw.pop("image_root"))
    if not image_root.is_absolute():
        image_root = Path(prepared_dir) / image_root
    dataset = str(raw.pop("dataset", "unknown"))
    return Prepared(root=Path(prepared_dir), image_root=image_root, splits=raw, dataset=dataset)


def image_table(prepared: Prepared, records: dict, paths_key: str, image: ImageConfig) -> ImageTable:
    """The images `records[paths_key]` at the model's input size, preloaded when they fit in memory."""
    image_paths = records[paths_key]
    size = len(image_paths) * 3 * image.height * image.width
    return ImageTable(
        prepared.image_root, image_paths, image.height, image.width, size <= PRELOAD_LIMIT_BYTES
    )


@dataclass
class Split:
    """One split ready for a model: its records, its images and the text source of its captions."""

    name: str
    records: dict  # the split's entry of splits.json
    images: ImageTable  # eval splits: the gallery, each image once; train: the unique training images
    text: FrozenTextSource | TokenTextSource  # one row per caption (query)

    @property
    def query_ids(self) -> torch.Tensor:
        """[Q] identity of each caption (eval splits)."""
        return torch.tensor(self.records["caption_ids"])

    @property
    def gallery_ids(self) -> torch.Tensor:
        """[G] identity of each gallery image (eval splits)."""
        return torch.tensor(self.records["image_ids"])


def read_split(prepared: Prepared | Path, features: Path, name: str, params: Params) -> Split:
    """Split `name` of the prepared benchmark (a folder or an already loaded `Prepared`), its images sized by
    `params.image` and its text from the features file (or token ids when `params.text.finetune`)."""
    if not isinstance(prepared, Prepared):
        prepared = load_prepared(prepared)
    records = prepared.split(name)
    images = image_table(prepared, records, "images" if name == "train" else "image_paths", params.image)
    text = open_text_source(params.text.finetune, prepared.root, features, records, name)
    return Split(name, records, images, text)
