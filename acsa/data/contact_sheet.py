"""A contact sheet of a benchmark in the CUHK-PEDES layout: identities as rows, each image with one caption.

Usage: ``python -m acsa.data.contact_sheet BENCHMARK_DIR OUT.png [--ids 8] [--images 4]``
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from acsa.cli import run_stage, stage_parser  # noqa: E402

log = logging.getLogger(__name__)

_WRAP = 38  # characters per caption line beside a 1-inch-wide image


def _annotations(benchmark_dir: Path) -> list[dict]:
    for name in ("reid_raw.json", "caption_all.json"):
        if (benchmark_dir / name).is_file():
            return json.loads((benchmark_dir / name).read_text())
    raise FileNotFoundError(f"{benchmark_dir}: no reid_raw.json or caption_all.json")


def write_contact_sheet(benchmark_dir: Path, out_png: Path, num_ids: int = 8, images_per_id: int = 4) -> None:
    """Draw `num_ids` identities spread over the annotation list, up to `images_per_id` images each."""
    benchmark_dir, out_png = Path(benchmark_dir), Path(out_png)
    by_id: dict[int, list[dict]] = defaultdict(list)
    for record in _annotations(benchmark_dir):
        by_id[record["id"]].append(record)
    ids = sorted(by_id)
    if not ids:
        raise ValueError(f"{benchmark_dir}: the annotation list is empty")
    step = max(1, len(ids) // num_ids)
    chosen = ids[::step][:num_ids]
    attributes_file = benchmark_dir / "attributes.json"
    attributes = json.loads(attributes_file.read_text()) if attributes_file.is_file() else {}

    fig, axes = plt.subplots(
        len(chosen),
        2 * images_per_id,
        figsize=(3.4 * images_per_id, 1.9 * len(chosen)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 2.4] * images_per_id, "wspace": 0.05, "hspace": 0.25},
    )
    for row, pid in enumerate(chosen):
        records = by_id[pid]
        for col in range(images_per_id):
            image_ax, text_ax = axes[row, 2 * col], axes[row, 2 * col + 1]
            image_ax.axis("off")
            text_ax.axis("off")
            if col >= len(records):
                continue
            record = records[col]
            with Image.open(benchmark_dir / "imgs" / record["file_path"]) as image:
                image_ax.imshow(image.convert("RGB"), interpolation="nearest")
            info = attributes.get(record["file_path"], {})
            label = " ".join(
                str(x) for x in (f"id {pid}", info.get("view"), info.get("occlusion") or "") if x
            )
            image_ax.set_title(label, fontsize=7, loc="left")
            text_ax.text(
                0.02,
                0.98,
                textwrap.fill(record["captions"][0], _WRAP),
                fontsize=6.5,
                va="top",
                family="sans-serif",
                transform=text_ax.transAxes,
            )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote contact sheet of %d identities to %s", len(chosen), out_png)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    parser.add_argument("benchmark_dir", type=Path)
    parser.add_argument("out_png", type=Path)
    parser.add_argument("--ids", type=int, default=8, help="identities (rows; default: 8)")
    parser.add_argument("--images", type=int, default=4, help="images per identity (default: 4)")
    args = parser.parse_args(argv)
    write_contact_sheet(args.benchmark_dir, args.out_png, args.ids, args.images)


if __name__ == "__main__":
    run_stage(main)
