"""The global stage: each query's top candidates by cosine of global features, exact or through FAISS.

Exact search is one matrix-vector product over every indexed image: it reads N x D x 4 bytes per query
(about 1 GB at a million images of D = 256, ~100 ms on 2 cores), so it serves galleries up to
`EXACT_LIMIT` images. Above that, `acsa index` also builds an inverted-file index (FAISS IndexIVFFlat, inner
product on the L2-normalised features): `nlist` k-means cells, of which a query scans the `nprobe` nearest.
The features stay exact (Flat), so the candidates' global scores are exact cosines; only which images
become candidates can differ from exact search, measured as recall@100 by benchmarks/search_speed.py.

The FAISS index is stored in a safetensors file as the bytes of `faiss.serialize_index`, with their SHA-256
in the manifest: the bytes are checked before FAISS parses them, so a corrupt file is an error, not a crash.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from acsa.search.errors import SearchError
from acsa.search.store import map_tensor, write_blob

log = logging.getLogger(__name__)

EXACT_LIMIT = 200_000  # images; above this `global_search: auto` builds a FAISS index
NPROBE_DEFAULT = 64
KINDS = ("auto", "exact", "faiss")


def nlist_for(rows: int) -> int:
    """k-means cells: about 1,000 images per cell, at least 16 and never more than rows / 39 (FAISS wants
    >= 39 training points per cell)."""
    return int(max(1, min(max(16, round(rows / 1000)), rows // 39)))


def build_faiss(features: np.ndarray, nlist: int | None = None, seed: int = 0):
    """An IndexIVFFlat (inner product) over features [N, D] float32, rows numbered 0..N-1."""
    import faiss

    rows, dim = features.shape
    nlist = nlist or nlist_for(rows)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    # k-means on at most 64 points per cell (FAISS's own cap is 256): the cells need not be perfect
    sample = min(rows, 64 * nlist)
    pick = np.random.default_rng(seed).choice(rows, size=sample, replace=False) if sample < rows else None
    train = np.ascontiguousarray(features if pick is None else features[np.sort(pick)], dtype=np.float32)
    index.cp.seed = seed
    index.train(train)
    for start in range(0, rows, 65536):  # add in blocks: a memmap is read once, a block at a time
        index.add(np.ascontiguousarray(features[start : start + 65536], dtype=np.float32))
    return index


def save_faiss(index, path: Path) -> dict:
    """Write the serialised index; returns what the manifest records about it."""
    import faiss

    blob = faiss.serialize_index(index)  # uint8 array
    write_blob(path, "faiss", blob, {"acsa.format": "acsa-search-faiss"})
    return {
        "kind": "faiss-ivf-flat",
        "file": path.name,
        "sha256": hashlib.sha256(blob.tobytes()).hexdigest(),
        "rows": int(index.ntotal),
        "nlist": int(index.nlist),
        "nprobe": NPROBE_DEFAULT,
    }


def load_faiss(folder: Path, info: dict, rows: int):
    import faiss

    path = Path(folder) / info["file"]
    if not path.is_file():
        raise SearchError(f"{path}: missing FAISS index (named by the manifest); rerun `acsa index`")
    blob = np.array(map_tensor(path, "faiss"))  # a copy in memory: FAISS parses it
    if hashlib.sha256(blob.tobytes()).hexdigest() != info["sha256"]:
        raise SearchError(f"{path}: corrupt FAISS index (checksum differs); rerun `acsa index`")
    index = faiss.deserialize_index(blob)
    del blob
    if index.ntotal != rows:
        raise SearchError(
            f"{path}: FAISS index holds {index.ntotal} rows, the index {rows}; rerun `acsa index`"
        )
    index.nprobe = int(info.get("nprobe", NPROBE_DEFAULT))
    return index


class GlobalSearch:
    """Top-n rows of the gallery by global cosine, for one query: exact, or through a FAISS index."""

    def __init__(self, features: torch.Tensor | None = None, faiss_index=None) -> None:
        if (features is None) == (faiss_index is None):
            raise ValueError("give exactly one of features and faiss_index")
        self.features = features  # [N, D] float32, L2-normalised
        self.faiss_index = faiss_index

    @property
    def kind(self) -> str:
        return "exact" if self.faiss_index is None else f"faiss-ivf (nprobe {self.faiss_index.nprobe})"

    @property
    def rows(self) -> int:
        return int(self.features.shape[0] if self.faiss_index is None else self.faiss_index.ntotal)

    def top(self, query: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """query [D] L2-normalised -> (cosines [n'], rows [n']), best first, n' = min(n, rows)."""
        n = min(n, self.rows)
        if n <= 0:
            return torch.zeros(0), torch.zeros(0, dtype=torch.long)
        if self.faiss_index is None:
            scores = self.features @ query  # [N]
            values, rows = scores.topk(n)
            return values, rows
        values, rows = self.faiss_index.search(query.numpy()[None].astype(np.float32), n)
        keep = rows[0] >= 0  # FAISS pads with -1 when the probed cells hold fewer than n rows
        return torch.from_numpy(values[0][keep]), torch.from_numpy(rows[0][keep]).long()


def wanted(kind: str, rows: int) -> bool:
    """Whether an index of `rows` images gets a FAISS index under `--global-search KIND`."""
    if kind not in KINDS:
        raise SearchError(f"--global-search {kind!r}: expected one of {', '.join(KINDS)}")
    return kind == "faiss" or (kind == "auto" and rows > EXACT_LIMIT)
