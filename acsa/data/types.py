"""The split structure every benchmark reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainSplit:
    """Training pairs: one row per (image, caption); labels re-indexed 0..N-1 over training identities."""

    image_paths: list[str]  # relative to Benchmark.image_root, one per pair
    captions: list[str]
    labels: list[int]
    image_index: list[int]  # pair -> index into `images` (unique images of the split)
    images: list[str]  # unique image paths, in first-seen order
    original_ids: list[int]  # per unique label, the identity id of the annotation file

    @property
    def num_ids(self) -> int:
        return len(self.original_ids)


@dataclass(frozen=True)
class EvalSplit:
    """A retrieval split: the gallery is every image once, the queries every caption."""

    image_paths: list[str]  # gallery, relative to Benchmark.image_root
    image_ids: list[int]
    captions: list[str]  # queries
    caption_ids: list[int]
    caption_image_index: list[int]  # query -> the gallery image it was written for


@dataclass(frozen=True)
class Benchmark:
    name: str
    image_root: Path
    train: TrainSplit
    val: EvalSplit | None
    test: EvalSplit
    annotation_file: Path
    val_from_train: bool = False  # val carved from the training identities (the file has no val split)
