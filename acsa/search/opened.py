"""An index folder opened for reading: its manifest, its shards (left on disk), the live rows in index order
and the global search over them, as one value that a SearchIndex swaps whole when the index changes.

`acsa index` may update an index while `acsa serve` has it open: it replaces the manifest (a rename) after
every shard and deletes the files the new manifest no longer names. A reader holding the old files keeps
reading them (an open file outlives its name), but images re-indexed since are no longer the files it
recorded, so `changed` tells when to open the index again (acsa.search.query).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from acsa.errors import SearchError
from acsa.search import global_search, store

log = logging.getLogger(__name__)

# Opening an index reads every row of an index up to this size to find rows that are not finite (a flipped
# bit); a larger one is checked row by row as queries read them (the tokens of 70,000 images of 7 x 256).
SCAN_LIMIT_BYTES = 512 * 2**20


def stamp(folder: Path) -> tuple[int, int, int] | None:
    """What identifies the manifest file now (inode, size, modification time): it changes with every
    update, since the manifest is replaced by a rename. None if there is none."""
    try:
        info = os.stat(Path(folder) / store.MANIFEST)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


@dataclass
class OpenedIndex:
    path: Path
    manifest: dict
    stamp: tuple[int, int, int] | None
    shards: list[store.Shard] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # per live row: path relative to the image root
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mtimes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    row_shard: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    row_offset: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    row_of_key: dict[str, int] = field(default_factory=dict)
    global_search: global_search.GlobalSearch | None = None

    def gather(self, rows: np.ndarray, name: str) -> np.ndarray:
        """Rows [n] of a shard tensor ("tokens" or "global_feats"), from whichever shards hold them ->
        float32 [n, ...] in the order of `rows`; a row that is not finite is a NonFiniteError naming it."""
        shape = getattr(self.shards[0], name).row_shape if self.shards else ()
        out = np.empty((len(rows), *shape), dtype=np.float32)
        shard_of = self.row_shard[rows]
        for position in np.unique(shard_of):
            where = np.flatnonzero(shard_of == position)
            shard = self.shards[position]
            numbers = self.row_offset[rows[where]]
            out[where] = getattr(shard, name).rows(numbers)
            tensor = "global" if name == "global_feats" else name
            store.check_finite(out[where], f"{shard.path} tensor {tensor}", shard.files, numbers)
        return out


def open_index(path: Path) -> OpenedIndex:
    """Read the manifest and open every shard it names (and the FAISS index, if any); rows that are not
    finite are refused here for indexes up to SCAN_LIMIT_BYTES (module docstring)."""
    path = Path(path)
    before = stamp(path)
    manifest = store.read_manifest(path)
    opened = OpenedIndex(path, manifest, before)
    keys, sizes, mtimes, shard_of, offset = [], [], [], [], []
    for position, entry in enumerate(manifest["shards"]):
        shard = store.open_shard(path, entry, manifest["embed_dim"], len(manifest["token_names"]))
        opened.shards.append(shard)
        dropped = set(entry.get("dropped", []))
        for row, (key, size, mtime_ns) in enumerate(shard.files):
            if row in dropped:
                continue
            keys.append(key)
            sizes.append(size)
            mtimes.append(mtime_ns)
            shard_of.append(position)
            offset.append(row)
    opened.keys = keys
    opened.sizes = np.asarray(sizes, dtype=np.int64)
    opened.mtimes = np.asarray(mtimes, dtype=np.int64)
    opened.row_shard = np.asarray(shard_of, dtype=np.int32)
    opened.row_offset = np.asarray(offset, dtype=np.int64)
    opened.row_of_key = {key: row for row, key in enumerate(keys)}
    if len(opened.row_of_key) != len(keys):
        raise SearchError(f"{path}: corrupt index (a file indexed twice); build it again into a new folder")
    stored = sum(len(s.tokens) * (s.global_feats.row_bytes + s.tokens.row_bytes) for s in opened.shards)
    if stored <= SCAN_LIMIT_BYTES:
        for shard in opened.shards:
            shard.check_finite()
    info = manifest.get("global_index")
    if info:
        index = global_search.load_faiss(path, info, len(keys), manifest["embed_dim"])
        opened.global_search = global_search.GlobalSearch(
            faiss_index=index,
            features_of=lambda rows: opened.gather(np.asarray(rows), "global_feats"),
            refine=info.get("refine", global_search.REFINE),
        )
    else:
        features = torch.from_numpy(store.live_global_features(path, manifest))
        opened.global_search = global_search.GlobalSearch(features=features)
    return opened


def reopen(current: OpenedIndex, attempts: int = 3) -> OpenedIndex:
    """The index at `current.path` opened again if its manifest changed since `current` was opened (else
    `current`). An update that replaces the manifest while it is being read (and deletes a shard the read
    was about to open) is retried on the newer manifest."""
    for attempt in range(attempts):
        now = stamp(current.path)
        if now == current.stamp:
            return current
        try:
            opened = open_index(current.path)
        except SearchError:
            if attempt == attempts - 1 or stamp(current.path) == now:
                raise
            continue  # the manifest changed again while it was read: read the newer one
        log.info("%s changed on disk: reopened (%d images)", current.path, len(opened.keys))
        return opened
    return current
