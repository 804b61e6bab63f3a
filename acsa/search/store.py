"""The index on disk: immutable shards (safetensors) named by one manifest (JSON). Never a pickle.

    INDEX/manifest.json                 what the index is: model identity, fusion weight, image root, the
                                        shards in order (with rows dropped since), the global-search file
    INDEX/shard-GGGGGG-SSSSS.safetensors `global` float32 [n, D] (L2-normalised), `tokens` [n, R, D] (float32,
                                        or float16 with --token-dtype float16);
                                        metadata `files`: JSON [[path, size, mtime_ns], ...] per row
    INDEX/global-GGGGGG.safetensors     `faiss` uint8: a serialised FAISS index over the live rows, in order
    INDEX/.lock                         held (flock) by the one process writing the index

Crash safety: a file is written under a temporary name, flushed to disk and renamed; the manifest is replaced
the same way, and only after every file it names is in place. Files are never modified after the rename.
So at any moment the manifest names complete files, and a killed writer leaves the previous (or a newer,
partial but consistent) index; its orphaned files are removed by the next writer.

Shards stay on disk: opening an index reads their headers, and a query reads its candidates' rows with
pread (StoredTensor), through the operating system's page cache.

No NaN or infinity is ever ranked: `acsa index` writes no row whose features are not finite, and a row read
back that is not (a flipped bit, a bad disk) is a NonFiniteError naming the shard and the file
(`check_finite`), whether found when an index is opened (`Shard.check_finite`) or in a query's candidates.
A manifest that is not as this code writes it (hand-edited, damaged) is a SearchError naming the key
(acsa.search.manifest_check).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from acsa.errors import NonFiniteError, SearchError, one_line
from acsa.search import manifest_check
from acsa.storage.files import durable_file, held_lock

FORMAT = "acsa-search-index"
VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
SHARD_FORMAT = "acsa-search-shard"
_DTYPES = {"F32": np.float32, "F16": np.float16, "U8": np.uint8}
TOKEN_DTYPES = {"float32": np.float32, "float16": np.float16}
_OWN_FILE = re.compile(r"(shard-\d{6}-\d{5}|global-\d{6})\.safetensors|\..*\.tmp")


# ---- writing ----------------------------------------------------------------------------------------------


def write_shard(
    path: Path,
    global_feats: np.ndarray,
    tokens: np.ndarray,
    files: list[tuple[str, int, int]],
    token_dtype: str = "float32",
) -> None:
    """One shard: global [n, D] float32, tokens [n, R, D] stored as `token_dtype`, and each row's file."""
    if not (len(global_feats) == len(tokens) == len(files)):
        raise ValueError("a shard needs one global feature, one token set and one file per row")
    tensors = {
        "global": np.ascontiguousarray(global_feats, dtype=np.float32),
        "tokens": np.ascontiguousarray(tokens, dtype=TOKEN_DTYPES[token_dtype]),
    }
    metadata = {"acsa.format": SHARD_FORMAT, "files": json.dumps([list(f) for f in files])}
    with durable_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def write_blob(path: Path, name: str, blob: np.ndarray, metadata: dict[str, str]) -> None:
    with durable_file(path) as tmp:
        save_file({name: np.ascontiguousarray(blob)}, str(tmp), metadata=metadata)


def write_manifest(folder: Path, manifest: dict) -> None:
    with durable_file(Path(folder) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def remove_unreferenced(folder: Path, manifest: dict | None) -> list[str]:
    """Delete this tool's files that `manifest` does not name (orphans of a killed or older run)."""
    keep = set()
    if manifest is not None:
        keep = {shard["file"] for shard in manifest["shards"]}
        if manifest.get("global_index"):
            keep.add(manifest["global_index"]["file"])
    removed = []
    for path in Path(folder).iterdir():
        if path.is_file() and _OWN_FILE.fullmatch(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def only_own_files(folder: Path) -> bool:
    """Whether `folder` holds nothing but this tool's files (a first `acsa index` that has written no
    manifest yet: its lock, shards, temporary files)."""
    return all(
        path.is_file() and (path.name == LOCK or _OWN_FILE.fullmatch(path.name))
        for path in Path(folder).iterdir()
    )


def writer_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold INDEX/.lock: a second writer fails at once; the lock dies with its process (even on SIGKILL)."""
    busy = SearchError(f"{folder}: another `acsa index` is writing this index (it holds .lock)")
    return held_lock(Path(folder) / LOCK, busy)


# ---- reading ----------------------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict:
    """The manifest of an index folder; a missing or foreign one is a SearchError naming the path."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise SearchError(f"{folder}: no index there (not a folder; build one with `acsa index`)")
    if not path.is_file():
        raise SearchError(f"{folder}: no index there ({MANIFEST} not found; build one with `acsa index`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SearchError(f"{path}: corrupt index manifest ({one_line(err)})") from None
    except RecursionError:
        raise SearchError(f"{path}: corrupt index manifest (nested too deeply)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SearchError(f"{path}: not an acsa search index manifest")
    if manifest.get("version") != VERSION:
        raise SearchError(
            f"{path}: index format version {manifest.get('version')!r}, this acsa reads {VERSION}: rebuild it"
        )
    problem = manifest_check.problem(manifest, tuple(TOKEN_DTYPES))
    if problem is not None:
        raise SearchError(f"{path}: corrupt index manifest ({problem}); rebuild the index with `acsa index`")
    return manifest


def _header(path: Path) -> tuple[dict[str, Any], int, int]:
    """(safetensors header, data start, file size); truncated or foreign files are SearchErrors."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 2 or 8 + length > size:
                raise SearchError(f"{path}: corrupt index file (truncated header, {size} bytes)")
            header = json.loads(f.read(length))
    except SearchError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise SearchError(f"{path}: unreadable index file ({one_line(err)})") from None
    except RecursionError:
        raise SearchError(f"{path}: corrupt index file (header nested too deeply)") from None
    if not isinstance(header, dict):
        raise SearchError(f"{path}: corrupt index file (header is not an object)")
    return header, 8 + length, size


class StoredTensor:
    """Tensor `name` of a safetensors file, left on disk: `rows(index)` reads rows with pread (through the
    page cache) and `read()` all of it. Nothing is mapped into memory: with a memory map, every row read
    also mapped its neighbouring pages (the kernel's fault-around), and a million-image index's resident
    memory grew by about 17 MB per query."""

    def __init__(self, path: Path, name: str) -> None:
        header, start, size = _header(path)
        info = header.get(name)
        try:
            self.dtype = np.dtype(_DTYPES[info["dtype"]])
            self.shape = tuple(int(n) for n in info["shape"])
            begin, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SearchError(f"{path}: corrupt index file (no readable tensor {name!r})") from None
        if (
            end - begin != int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
            or start + end > size
        ):
            raise SearchError(f"{path}: corrupt index file (tensor {name!r} truncated or mis-sized)")
        self.path = path
        self.offset = start + begin
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)
        self._close = weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    def _pread(self, first: int, count: int) -> np.ndarray:
        size = count * self.row_bytes
        data = os.pread(self._fd, size, self.offset + first * self.row_bytes)
        if len(data) != size:
            raise SearchError(f"{self.path}: index file shorter than its header says (changed on disk?)")
        return np.frombuffer(data, dtype=self.dtype).reshape(count, *self.row_shape)

    def read(self) -> np.ndarray:
        """The whole tensor, in memory."""
        if not self.shape or self.shape[0] == 0:
            return np.zeros(self.shape, dtype=self.dtype)
        return self._pread(0, self.shape[0]).copy()

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows `index` [n] (any order) -> [n, ...] in that order; one read per run of consecutive rows."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), *self.row_shape), dtype=self.dtype)
        if len(index) == 0:
            return out
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        if ordered[0] < 0 or ordered[-1] >= self.shape[0]:
            raise IndexError(f"{self.path}: row out of range")
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1  # starts of runs of consecutive rows
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(ordered)], strict=True):
            block = self._pread(int(ordered[lo]), int(ordered[hi - 1] - ordered[lo] + 1))
            out[order[lo:hi]] = block
        return out


def file_metadata(path: Path) -> dict[str, str]:
    metadata = _header(path)[0].get("__metadata__") or {}
    return metadata if isinstance(metadata, dict) else {}


def check_finite(rows: np.ndarray, where: str, files: list[list], numbers: np.ndarray) -> None:
    """Raise NonFiniteError if an entry of `rows` [n, ...] (rows `numbers` of `where`, e.g. a shard's
    tensor, whose files are `files`) is NaN or infinite, naming the first such row and its file."""
    finite = np.isfinite(rows.reshape(len(rows), -1)).all(axis=1) if rows.size else np.ones(0, dtype=bool)
    if finite.all():
        return
    row = int(numbers[np.flatnonzero(~finite)[0]])
    named = f" ({files[row][0]!a})" if row < len(files) else ""
    raise NonFiniteError(
        f"{where}: row {row}{named} holds NaN or infinite values ({int((~finite).sum())} such rows here): a "
        "damaged index file; build the index again into a new folder (`acsa index`)"
    )


@dataclass
class Shard:
    """One shard, on disk."""

    name: str
    path: Path
    global_feats: StoredTensor  # [n, D] float32
    tokens: StoredTensor  # [n, R, D] float32 or float16
    files: list[list]  # per row [path, size, mtime_ns]

    def check_finite(self, block: int = 4096) -> None:
        """Read every row (in blocks) and raise NonFiniteError at the first that is not finite."""
        for tensor, name in ((self.global_feats, "global"), (self.tokens, "tokens")):
            for first in range(0, len(tensor), block):
                numbers = np.arange(first, min(first + block, len(tensor)))
                check_finite(tensor.rows(numbers), f"{self.path} tensor {name}", self.files, numbers)


def _file_rows_ok(files: object, rows: int) -> bool:
    """The shard's `files` metadata: one [path, size, mtime_ns] per row."""
    return (
        isinstance(files, list)
        and len(files) == rows
        and all(
            isinstance(f, list)
            and len(f) == 3
            and isinstance(f[0], str)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in f[1:])
            for f in files
        )
    )


def open_shard(folder: Path, entry: dict, embed_dim: int, num_tokens: int) -> Shard:
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise SearchError(f"{path}: missing index shard (named by {MANIFEST}); rebuild with `acsa index`")
    metadata = file_metadata(path)
    if metadata.get("acsa.format") != SHARD_FORMAT:
        raise SearchError(f"{path}: not an acsa index shard")
    try:
        files = json.loads(metadata["files"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise SearchError(f"{path}: corrupt index shard (file list unreadable)") from None
    global_feats = StoredTensor(path, "global")
    tokens = StoredTensor(path, "tokens")
    rows = entry["rows"]
    if global_feats.shape != (rows, embed_dim) or tokens.shape != (rows, num_tokens, embed_dim):
        raise SearchError(f"{path}: corrupt index shard (shapes do not match {MANIFEST})")
    if not _file_rows_ok(files, rows):
        raise SearchError(f"{path}: corrupt index shard (file list does not match {MANIFEST})")
    return Shard(entry["file"], path, global_feats, tokens, files)


def live_global_features(out: Path, manifest: dict) -> np.ndarray:
    """The global features of every live row, in index order: float32 [N, D] in memory."""
    parts = []
    for entry in manifest["shards"]:
        shard = open_shard(out, entry, manifest["embed_dim"], len(manifest["token_names"]))
        keep = np.setdiff1d(np.arange(entry["rows"]), np.asarray(entry.get("dropped", []), dtype=np.int64))
        feats = np.asarray(shard.global_feats.rows(keep), dtype=np.float32)
        check_finite(feats, f"{shard.path} tensor global", shard.files, keep)
        parts.append(feats)
    if not parts:
        return np.zeros((0, manifest["embed_dim"]), dtype=np.float32)
    return np.concatenate(parts)
