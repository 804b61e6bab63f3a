"""Which image files an index covers: a folder walked recursively, or a prepared split's images.

A file is identified by its path relative to the image root (POSIX form), its size and its modification time
(nanoseconds): an index re-encodes a file only when one of them changes (as rclip does).
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from acsa.errors import SearchError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class ImageFile:
    path: str  # relative to the image root, POSIX separators
    size: int
    mtime_ns: int

    def key(self) -> tuple[int, int]:
        return self.size, self.mtime_ns


@dataclass
class Scan:
    root: Path  # absolute
    files: list[ImageFile] = field(default_factory=list)  # sorted by path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ignored: Counter = field(default_factory=Counter)  # suffix -> files without an image suffix


def _stat_problem(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if err.errno == errno.ENOENT:
        return "broken symlink"
    return f"cannot read ({err.strerror or err})"


def scan_folder(root: Path) -> Scan:
    """Image files under `root` (recursive, symlinks followed, hidden names skipped).

    A symlinked folder that leads back to a folder already walked (a loop, or a second way into the same
    folder) is skipped and listed, as are files whose symlinks loop or dangle.
    """
    root = Path(root)
    if not root.exists():
        raise SearchError(f"{root}: no such folder")
    if not root.is_dir():
        raise SearchError(f"{root}: not a folder (give --images a folder of images)")
    root = root.resolve()
    scan = Scan(root)
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
        except OSError as err:
            scan.skipped.append((_relative(folder, root), _stat_problem(err)))
            continue
        if (info.st_dev, info.st_ino) in seen:
            scan.skipped.append((_relative(folder, root), "symlink to a folder already walked (loop)"))
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            scan.skipped.append((_relative(folder, root), _stat_problem(err)))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                stat = None if is_dir else entry.stat(follow_symlinks=True)
            except OSError as err:
                scan.skipped.append((_relative(path, root), _stat_problem(err)))
                continue
            if is_dir:
                stack.append(path)
            elif stat is not None and path.suffix.lower() in IMAGE_SUFFIXES:
                scan.files.append(ImageFile(_relative(path, root), stat.st_size, stat.st_mtime_ns))
            else:
                scan.ignored[path.suffix.lower() or "(none)"] += 1
    scan.files.sort(key=lambda f: f.path)
    return scan


def scan_paths(root: Path, paths: list[str]) -> Scan:
    """Image paths relative to `root` (a prepared split) with their sizes and times; missing ones skipped."""
    root = Path(root).resolve()
    scan = Scan(root)
    for relative in dict.fromkeys(paths):
        try:
            stat = (root / relative).stat()
        except OSError as err:
            scan.skipped.append((relative, "missing" if err.errno == errno.ENOENT else _stat_problem(err)))
            continue
        scan.files.append(ImageFile(Path(relative).as_posix(), stat.st_size, stat.st_mtime_ns))
    scan.files.sort(key=lambda f: f.path)
    return scan


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)
