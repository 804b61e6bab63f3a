"""Readers of the public text-based person search benchmarks (and the synthetic one), as distributed.

Each reader takes the dataset folder (holding `imgs/` and one annotation list) and returns a `Benchmark`:
- train labels are re-indexed 0..N-1 over the sorted original training ids (`TrainSplit.original_ids`);
  val/test keep the ids of the file; a gallery lists each image once, the queries are all its captions;
- captions are whitespace-normalised; RSTPReid's missing space after a full stop is restored ("jacket. His");
- image paths are kept relative to `imgs/` (`Benchmark.image_root`); images are not opened here, see
  `check_images`.

Every problem in the annotation file is a one-line `DataError` naming the file and the record. Decisions:
- the same image listed twice with the same id and split: its captions are merged and a warning gives the
  count; listed with a different id or split: an error (the ground truth would be ambiguous);
- one identity in two splits: a warning with the count per pair of splits (val/test ids are only compared
  within their split; a train/test overlap leaks identities and is worth knowing, but the files are used as
  distributed);
- a split absent from the file is `None`; no train or no test records is an error;
- a benchmark without a val split (ICFG-PEDES) gets one carved from its training identities when asked
  (`read_benchmark(..., val_ids_from_train=N, val_split_seed=S)`, params `data.val_ids_from_train` and
  `data.val_split_seed`): N identities drawn with a numpy Generator seeded by S leave the training split with
  all their images and captions and become the val split (their own ids kept, like any val split), so train
  and val identities are disjoint; a benchmark with its own val split keeps it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from acsa.data.images import check_images, load_image
from acsa.data.types import Benchmark, EvalSplit, TrainSplit
from acsa.errors import DataError, one_line
from acsa.storage.files import parse_json

__all__ = ["READERS", "check_images", "fix_full_stops", "load_image", "read_benchmark"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_DIR = "imgs"
CUHK_FILES = ("reid_raw.json", "caption_all.json")
ICFG_FILES = ("ICFG-PEDES.json", "ICFG_PEDES.json")
RSTP_FILES = ("data_captions.json",)

# Unicode categories that draw nothing: controls (NUL), format characters (zero-width space, BOM, joiners,
# direction marks, soft hyphen) and separators. A caption of only these is empty; inside a caption with
# visible characters they stay (a zero-width joiner binds an emoji sequence).
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}
# Lone UTF-16 surrogates: JSON's "\ud800" escapes decode to them, but they are not characters and no text
# encoder takes them.
_SURROGATE = re.compile("[\ud800-\udfff]")

# A full stop glued to the next word ("jacket.His"); two letters before it so "e.g." is left alone.
_GLUED_FULL_STOP = re.compile(r"(?<=[A-Za-z]{2})\.(?=[A-Za-z])")


def fix_full_stops(text: str) -> str:
    """Insert the missing space after a full stop between words: "jacket.His" -> "jacket. His"."""
    return _GLUED_FULL_STOP.sub(". ", text)


@dataclass
class _Image:
    path: str
    id: int
    split: str
    record: int  # index of the first record listing it
    captions: list[str] = field(default_factory=list)


def find_annotation_file(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no annotation file (looked for {', '.join(names)})")


def load_records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({one_line(err)})") from None
    records = parse_json(text, path)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def _check_relative(path: str) -> bool:
    """True when `path` stays inside the image folder (relative, no '..', no drive)."""
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    return not (posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts)


def parse_records(
    records: list[Any], source: Path, path_key: str, caption_fix: Callable[[str], str] | None = None
) -> dict[str, list[_Image]]:
    """Validate records and group them per split as unique images (duplicates merged, see module doc)."""
    images: dict[str, _Image] = {}
    merged = 0
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{source}: record {i}: expected an object, got {type(record).__name__}")
        path, ident, split = record.get(path_key), record.get("id"), record.get("split")
        where = f"{source}: record {i} (id {ident!r}, {path_key} {path!r})"
        if not isinstance(path, str) or not path.strip():
            raise DataError(f"{where}: missing or empty '{path_key}'")
        if _SURROGATE.search(path):
            raise DataError(f"{where}: '{path_key}' holds an unpaired surrogate (not valid Unicode)")
        if not _check_relative(path):
            raise DataError(f"{where}: path escapes the dataset root (absolute or '..')")
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise DataError(f"{where}: 'id' must be an integer")
        if not -(2**63) <= ident < 2**63:  # identities become int64 tensors
            raise DataError(f"{where}: 'id' must fit in 64 bits (a signed integer)")
        if split not in SPLITS:
            raise DataError(f"{where}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        captions = record.get("captions")
        if not isinstance(captions, list) or not captions:
            raise DataError(f"{where}: 'captions' must be a non-empty list of strings")
        cleaned = []
        for j, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise DataError(f"{where}: caption {j} is not a string")
            surrogate = _SURROGATE.search(caption)
            if surrogate:
                raise DataError(
                    f"{where}: caption {j} holds an unpaired surrogate ({surrogate.group()!r} at character "
                    f"{surrogate.start()}): not valid Unicode text"
                )
            text = " ".join((caption_fix(caption) if caption_fix else caption).split())
            if not text:
                raise DataError(f"{where}: caption {j} is empty")
            if all(unicodedata.category(ch) in _INVISIBLE for ch in text):
                raise DataError(f"{where}: caption {j} is empty (only invisible characters)")
            cleaned.append(text)
        path = PurePosixPath(path).as_posix()  # "./a//b.jpg" -> "a/b.jpg"
        seen = images.get(path)
        if seen is None:
            images[path] = _Image(path, ident, split, i, cleaned)
        elif (seen.id, seen.split) == (ident, split):
            seen.captions.extend(cleaned)
            merged += 1
        else:
            raise DataError(
                f"{where}: image already listed by record {seen.record} with id {seen.id}, split {seen.split}"
            )
    if merged:
        log.warning(
            "%s: %d records repeat an image listed before; their captions were merged", source, merged
        )
    by_split: dict[str, list[_Image]] = defaultdict(list)
    for image in images.values():
        by_split[image.split].append(image)
    for split in ("train", "test"):
        if not by_split[split]:
            raise DataError(f"{source}: no records with split '{split}'")
    _warn_shared_ids(by_split, source)
    return by_split


def _warn_shared_ids(by_split: dict[str, list[_Image]], source: Path) -> None:
    ids = {split: {im.id for im in images} for split, images in by_split.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = ids.get(a, set()) & ids.get(b, set())
        if shared:
            log.warning("%s: %d identities appear in both %s and %s", source, len(shared), a, b)


def build_train(images: list[_Image]) -> TrainSplit:
    original_ids = sorted({im.id for im in images})
    label_of = {ident: label for label, ident in enumerate(original_ids)}
    image_paths, captions, labels, image_index = [], [], [], []
    for index, image in enumerate(images):
        for caption in image.captions:
            image_paths.append(image.path)
            captions.append(caption)
            labels.append(label_of[image.id])
            image_index.append(index)
    return TrainSplit(image_paths, captions, labels, image_index, [im.path for im in images], original_ids)


def build_eval(images: list[_Image]) -> EvalSplit:
    captions, caption_ids, caption_image_index = [], [], []
    for index, image in enumerate(images):
        captions += image.captions
        caption_ids += [image.id] * len(image.captions)
        caption_image_index += [index] * len(image.captions)
    gallery = [im.path for im in images]
    return EvalSplit(gallery, [im.id for im in images], captions, caption_ids, caption_image_index)


def carve_val(by_split: dict[str, list[_Image]], num_ids: int, seed: int, source: Path) -> None:
    """Move the images of `num_ids` training identities, drawn with `seed`, to a new val split (in place)."""
    ids = sorted({im.id for im in by_split["train"]})
    if num_ids >= len(ids):
        raise DataError(
            f"{source}: data.val_ids_from_train: {num_ids} would leave none of its {len(ids)} training "
            "identities to train on"
        )
    chosen = {int(i) for i in np.random.default_rng(seed).choice(ids, size=num_ids, replace=False)}
    by_split["val"] = [im for im in by_split["train"] if im.id in chosen]
    by_split["train"] = [im for im in by_split["train"] if im.id not in chosen]
    log.warning(
        "%s has no val split: %d of its %d training identities (%d images; data.val_ids_from_train, "
        "data.val_split_seed %d) are the val split, on which the epoch and fusion weight are chosen",
        source,
        num_ids,
        len(ids),
        len(by_split["val"]),
        seed,
    )


def _read(
    name: str,
    root: Path,
    names: tuple[str, ...],
    path_key: str = "file_path",
    caption_fix: Callable[[str], str] | None = None,
    val_ids_from_train: int = 0,
    val_split_seed: int = 0,
) -> Benchmark:
    annotation_file = find_annotation_file(root, names)
    by_split = parse_records(load_records(annotation_file), annotation_file, path_key, caption_fix)
    carved = not by_split.get("val") and val_ids_from_train > 0
    if carved:
        carve_val(by_split, val_ids_from_train, val_split_seed, annotation_file)
    benchmark = Benchmark(
        name=name,
        image_root=root / IMAGE_DIR,
        train=build_train(by_split["train"]),
        val=build_eval(by_split["val"]) if by_split.get("val") else None,
        test=build_eval(by_split["test"]),
        annotation_file=annotation_file,
        val_from_train=carved,
    )
    sizes = {s: len(by_split.get(s, [])) for s in SPLITS}
    log.info("%s: read %s (images per split: %s)", name, annotation_file, sizes)
    return benchmark


def read_cuhk_pedes(root: Path, **val: int) -> Benchmark:
    """CUHK-PEDES: `reid_raw.json` or `caption_all.json`; ids from 1; train/val/test."""
    return _read("cuhk-pedes", root, CUHK_FILES, **val)


def read_icfg_pedes(root: Path, **val: int) -> Benchmark:
    """ICFG-PEDES: `ICFG-PEDES.json` or `ICFG_PEDES.json`; the `split` field (not a folder) is the split; no
    val split (`val` carves one: `val_ids_from_train`, `val_split_seed`)."""
    return _read("icfg-pedes", root, ICFG_FILES, **val)


def read_rstpreid(root: Path, **val: int) -> Benchmark:
    """RSTPReid: `data_captions.json` with `img_path`; glued full stops ("jacket.His") are split."""
    return _read("rstpreid", root, RSTP_FILES, path_key="img_path", caption_fix=fix_full_stops, **val)


def read_synthetic(root: Path, **val: int) -> Benchmark:
    """The project's synthetic benchmark, in the CUHK-PEDES layout (`attributes.json` lies beside)."""
    return _read("synthetic", root, CUHK_FILES, **val)


READERS: dict[str, Callable[..., Benchmark]] = {
    "synthetic": read_synthetic,
    "cuhk-pedes": read_cuhk_pedes,
    "icfg-pedes": read_icfg_pedes,
    "rstpreid": read_rstpreid,
}


def read_benchmark(
    name: str, root: str | Path, val_ids_from_train: int = 0, val_split_seed: int = 0
) -> Benchmark:
    """Read the benchmark `name` (a key of READERS) from the folder `root`; without a val split of its own,
    `val_ids_from_train` training identities (drawn with `val_split_seed`) become one (0: none)."""
    if name not in READERS:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(READERS)})")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder for {name} not found")
    return READERS[name](root, val_ids_from_train=val_ids_from_train, val_split_seed=val_split_seed)
