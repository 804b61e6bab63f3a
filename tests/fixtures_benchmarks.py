"""Writers of tiny copies of the public benchmark formats (annotation JSON + small images), for tests.

Import from a test module with `from fixtures_benchmarks import ...` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Per split: (ids, images per id, captions per image). CUHK-like ids start at 1 and have gaps.
CUHK_LAYOUT = {"train": ([3, 7, 12], 2, 2), "val": ([20, 21], 2, 2), "test": ([30, 31], 2, 2)}
ICFG_LAYOUT = {"train": ([0, 1, 2], 2, 1), "test": ([3, 4], 3, 1)}
RSTP_LAYOUT = {"train": ([0, 1], 2, 2), "val": ([2], 2, 2), "test": ([3, 4], 2, 2)}


def write_image(path: Path, size: tuple[int, int] = (8, 16), seed: int = 0) -> None:
    """A small random RGB image; the format follows the suffix (.png, .jpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_records(
    layout: dict[str, tuple[list[int], int, int]], path_key: str, folder_of: Any, suffix: str
) -> list[dict[str, Any]]:
    """Records in the CUHK-PEDES layout; `folder_of(split, n)` gives the sub-folder of the n-th image."""
    records, n = [], 0
    for split, (ids, images_per_id, captions_per_image) in layout.items():
        for ident in ids:
            for k in range(images_per_id):
                captions = [
                    f"A  person {ident} in a red jacket.\n View {k},  caption {c}."
                    for c in range(captions_per_image)
                ]
                path = f"{folder_of(split, n)}{ident:04d}_{k}{suffix}"
                records.append({"split": split, "captions": captions, path_key: path, "id": ident})
                n += 1
    return records


def write_benchmark(root: Path, annotation_name: str, records: list[Any], images: bool = True) -> Path:
    """Write `records` as `root/annotation_name` and (optionally) an image per referenced path under imgs/."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / annotation_name
    path.write_text(json.dumps(records))
    if images:
        for i, record in enumerate(records):
            rel = record.get("file_path") or record.get("img_path")
            write_image(root / "imgs" / rel, seed=i)
    return path


def write_cuhk_pedes(root: Path, annotation_name: str = "reid_raw.json", images: bool = True) -> list[dict]:
    records = make_records(CUHK_LAYOUT, "file_path", lambda split, n: ("CUHK01/", "Market/")[n % 2], ".png")
    for record in records:
        record["processed_tokens"] = [c.lower().split() for c in record["captions"]]
    write_benchmark(root, annotation_name, records, images)
    return records


def write_icfg_pedes(
    root: Path, annotation_name: str = "ICFG-PEDES.json", images: bool = True, layout: dict | None = None
) -> list[dict]:
    # Folders deliberately disagree with the split for some images: the `split` field decides.
    records = make_records(
        layout or ICFG_LAYOUT, "file_path", lambda split, n: ("train/", "test/")[n % 2], ".jpg"
    )
    write_benchmark(root, annotation_name, records, images)
    return records


def write_rstpreid(root: Path, images: bool = True) -> list[dict]:
    records = make_records(RSTP_LAYOUT, "img_path", lambda split, n: "", ".jpg")
    for record in records:
        record["captions"] = [c.replace(".\n View", ".His view") for c in record["captions"]]
    write_benchmark(root, "data_captions.json", records, images)
    return records
