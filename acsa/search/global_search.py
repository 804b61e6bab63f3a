"""The global stage: each query's top candidates by cosine of global features, exact or through FAISS.

Exact search is one matrix-vector product over every indexed image: it reads N x D x 4 bytes per query
(1 GB at a million images of D = 256), so it serves galleries up to `EXACT_LIMIT` images. Above that,
`acsa index` also builds a FAISS inverted-file index, `IVF{nlist},SQ8`: k-means cells of about 1,000 images,
each image's features as 8-bit codes (a quarter of the bytes to scan). A query scans its `nprobe` nearest
cells for its top `max(4 n, REFINE)` images by approximate score; their exact cosines, from the float32
features in the shards, pick the top n. So the global scores of the candidates are exact, and only which
images become candidates can differ from exact search: recall@100 against exact search is measured by
benchmarks/search_speed.py. On the benchmark's synthesised features (identity prototypes drowned in noise
twice their norm, as benchmarks/scaling.py's problems) neighbours hardly cluster, and recall@100 >= 0.95
needs about 60% of the cells probed (`NPROBE_SHARE` adds a margin). Trained features cluster far more:
lower `nprobe` (`acsa search --nprobe`) after measuring recall on them.

The FAISS index is stored in a safetensors file as the bytes of `faiss.serialize_index`, with their SHA-256
in the manifest: the bytes are checked before FAISS parses them, so a corrupt file is an error, not a crash.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from acsa.errors import SearchError, one_line
from acsa.search import store

log = logging.getLogger(__name__)

EXACT_LIMIT = 200_000  # images; above this `--global-search auto` builds a FAISS index
KINDS = ("auto", "exact", "faiss")
NPROBE_SHARE = 0.65  # cells probed: recall@100 0.966 at 60% on the synthesised million (BENCHMARKS.md)
REFINE = 400  # approximate candidates re-scored exactly (at least 4 x the candidates asked for)
_BLOCK = 65536  # rows added to FAISS at a time


def _faiss():
    """The faiss module, imported without its loader's INFO lines (which CPU extension it picked)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def nlist_for(rows: int) -> int:
    """k-means cells: about 1,000 images each, at least 16, and never fewer than 39 images per cell (FAISS
    wants >= 39 training points per cell)."""
    return int(max(1, min(max(16, round(rows / 1000)), rows // 39)))


def wanted(kind: str, rows: int) -> bool:
    """Whether an index of `rows` images gets a FAISS index under `--global-search KIND`."""
    if kind not in KINDS:
        raise SearchError(f"--global-search {kind!r}: expected one of {', '.join(KINDS)}")
    return kind == "faiss" or (kind == "auto" and rows > EXACT_LIMIT)


def build_faiss(features: np.ndarray, nlist: int | None = None, seed: int = 0):
    """An `IVF{nlist},SQ8` index (inner product) over features [N, D] float32, rows numbered 0..N-1."""
    faiss = _faiss()

    rows, dim = features.shape
    nlist = nlist or nlist_for(rows)
    index = faiss.index_factory(dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    # k-means on at most 64 points per cell (FAISS's own cap is 256): the cells need not be perfect
    sample = min(rows, 64 * nlist)
    pick = np.sort(np.random.default_rng(seed).choice(rows, size=sample, replace=False))
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(np.ascontiguousarray(features[pick], dtype=np.float32))
    for start in range(0, rows, _BLOCK):
        index.add(np.ascontiguousarray(features[start : start + _BLOCK], dtype=np.float32))
    return index


def build_global_index(out: Path, manifest: dict, generation: int) -> None:
    """Build, write and record (manifest["global_index"]) the FAISS index over the index's live rows."""
    faiss = _faiss()

    features = store.live_global_features(out, manifest)
    nlist = nlist_for(len(features))
    index = build_faiss(features, nlist)
    del features
    blob = faiss.serialize_index(index)  # uint8 array
    path = Path(out) / f"global-{generation:06d}.safetensors"
    store.write_blob(path, "faiss", blob, {"acsa.format": "acsa-search-faiss"})
    manifest["global_index"] = {
        "kind": "faiss",
        "factory": f"IVF{nlist},SQ8",
        "file": path.name,
        "sha256": hashlib.sha256(blob.tobytes()).hexdigest(),
        "rows": int(index.ntotal),
        "nlist": nlist,
        "nprobe": max(1, math.ceil(NPROBE_SHARE * nlist)),
        "refine": REFINE,
    }


def load_faiss(folder: Path, info: dict, rows: int, dim: int):
    """The FAISS index the manifest's `global_index` names, checked: its bytes against the recorded SHA-256
    (before FAISS parses them), then that FAISS reads them as an IVF index of `rows` rows of `dim`."""
    faiss = _faiss()

    path = Path(folder) / info["file"]
    if not path.is_file():
        raise SearchError(f"{path}: missing FAISS index (named by the manifest); rerun `acsa index`")
    stored = store.StoredTensor(path, "faiss")
    if stored.dtype != np.uint8 or len(stored.shape) != 1:
        raise SearchError(f"{path}: corrupt FAISS index (not a byte string); rerun `acsa index`")
    blob = stored.read()  # in memory: FAISS parses it
    if hashlib.sha256(blob.tobytes()).hexdigest() != info["sha256"]:
        raise SearchError(f"{path}: corrupt FAISS index (checksum differs); rerun `acsa index`")
    try:
        index = faiss.deserialize_index(blob)
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError as err:  # FAISS's own checks of what it parses
        reason = one_line(err)[:200]
        raise SearchError(f"{path}: corrupt FAISS index ({reason}); rerun `acsa index`") from None
    del blob
    if index.ntotal != rows or index.d != dim:
        raise SearchError(
            f"{path}: FAISS index holds {index.ntotal} rows of {index.d} dimensions, the index {rows} of "
            f"{dim}; rerun `acsa index`"
        )
    if not 1 <= int(info["nprobe"]) <= ivf.nlist:
        raise SearchError(f"{path}: nprobe {info['nprobe']} of the manifest is not in 1..{ivf.nlist}")
    ivf.nprobe = int(info["nprobe"])
    return index


class GlobalSearch:
    """Top-n rows of the gallery by global cosine, for one query: exact over `features`, or FAISS candidates
    re-scored exactly with `features_of(rows)` (float32 [n, D] of index rows)."""

    def __init__(
        self,
        features: torch.Tensor | None = None,
        faiss_index=None,
        features_of: Callable[[np.ndarray], np.ndarray] | None = None,
        refine: int = REFINE,
    ) -> None:
        if (features is None) == (faiss_index is None) or (faiss_index is not None and features_of is None):
            raise ValueError("give features, or a FAISS index with features_of")
        self.features = features  # [N, D] float32, L2-normalised
        self.faiss_index = faiss_index
        self.features_of = features_of
        self.refine = refine

    @property
    def nprobe(self) -> int | None:
        if self.faiss_index is None:
            return None
        return int(_faiss().extract_index_ivf(self.faiss_index).nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        ivf = _faiss().extract_index_ivf(self.faiss_index)
        if not 1 <= value <= ivf.nlist:
            raise SearchError(f"--nprobe must be between 1 and {ivf.nlist} (the index's cells), got {value}")
        ivf.nprobe = int(value)

    @property
    def kind(self) -> str:
        return "exact" if self.faiss_index is None else f"faiss (nprobe {self.nprobe})"

    @property
    def rows(self) -> int:
        return int(self.features.shape[0] if self.faiss_index is None else self.faiss_index.ntotal)

    def top(self, query: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """query [D] L2-normalised -> (cosines [n'], rows [n']), best first, n' = min(n, rows)."""
        n = min(n, self.rows)
        if n <= 0:
            return torch.zeros(0), torch.zeros(0, dtype=torch.long)
        if self.faiss_index is None:
            return (self.features @ query).topk(n)
        wide = min(self.rows, max(4 * n, self.refine))
        _, found = self.faiss_index.search(query.numpy()[None].astype(np.float32), wide)
        rows = found[0][found[0] >= 0]  # FAISS pads with -1 when the probed cells hold fewer rows
        exact = torch.from_numpy(self.features_of(rows)) @ query  # [wide]
        values, pick = exact.topk(min(n, len(rows)))
        return values, torch.from_numpy(rows)[pick].long()
