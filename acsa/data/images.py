"""Image files of a benchmark: load one as RGB, or check that every referenced image opens.

Images are turned upright by their EXIF orientation (ImageOps.exif_transpose), as viewers show them.
Colour handling in `load_image` (images are converted, never rejected for their mode):
- grayscale, palette, CMYK, YCbCr, 1-bit: PIL's conversion to RGB;
- transparency (RGBA, LA, PA, palette with a transparent colour): composited on white, because the colour
  stored under fully transparent pixels is arbitrary (often black) and would leak into the features;
- 16-bit and 32-bit integer images (I;16, I): scaled from 0..65535 to 0..255 (PIL's own conversion clips);
  float images (F): scaled from 0..1 when their maximum is at most 1, else clipped to 0..255.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from acsa.data.types import Benchmark
from acsa.errors import DataError, one_line

log = logging.getLogger(__name__)

_SHOWN_BAD = 5  # bad paths named in the check_images message
_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def _error_text(err: Exception) -> str:
    return one_line(err) or type(err).__name__


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    array = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        scaled = array * 255.0 if array.size and np.nanmax(array) <= 1.0 else array
    else:  # I;16 / I;16B / I: 16-bit range
        scaled = array / 257.0
    gray = np.nan_to_num(np.clip(np.rint(scaled), 0, 255)).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB as described in the module docstring."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_rgb(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def upright(image: Image.Image) -> Image.Image:
    """`image` turned the way its EXIF orientation tag says it is shown (phone cameras store sideways)."""
    return ImageOps.exif_transpose(image)


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB; a missing, truncated or corrupt file is a DataError."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(upright(image))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _READ_ERRORS as err:
        raise DataError(f"{path}: unreadable image ({_error_text(err)})") from None


def _problem(path: Path) -> str | None:
    """Return why `path` cannot be used as an image, or None when it opens."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            image.load()  # a full decode: verify() passes a truncated JPEG, which only training would find
    except _READ_ERRORS as err:
        return f"unreadable: {_error_text(err)}"
    return None


def benchmark_images(benchmark: Benchmark) -> list[str]:
    """Every image path the benchmark references (relative to its image_root), each once, in split order."""
    splits = [benchmark.train.images]
    splits += [s.image_paths for s in (benchmark.val, benchmark.test) if s is not None]
    return list(dict.fromkeys(p for paths in splits for p in paths))


def check_images(benchmark: Benchmark, workers: int = 8) -> None:
    """Open every image the benchmark references; raise one DataError listing how many fail and the first few.

    All images are checked (not only up to the first failure), so the message gives the full count.
    """
    paths = benchmark_images(benchmark)
    root = benchmark.image_root
    with ThreadPoolExecutor(max_workers=workers) as pool:  # file I/O bound: threads overlap the reads
        problems = list(
            tqdm(
                pool.map(lambda p: _problem(root / p), paths, chunksize=64),
                total=len(paths),
                desc=f"checking {benchmark.name} images",
                unit="img",
                disable=None,
            )
        )
    bad = [(p, why) for p, why in zip(paths, problems, strict=True) if why is not None]
    if bad:
        missing = sum(why == "missing" for _, why in bad)
        shown = "; ".join(f"{p} ({why})" for p, why in bad[:_SHOWN_BAD])
        raise DataError(
            f"{root}: {len(bad)} of {len(paths)} images missing or unreadable ({missing} missing, "
            f"{len(bad) - missing} unreadable; annotations {benchmark.annotation_file.name}); first: {shown}"
        )
    log.info("%s: all %d images open", benchmark.name, len(paths))
