"""`acsa search` and the Python API: a plain-English query -> the index's best images, with ACSA's evidence.

    from acsa.search.api import SearchIndex
    index = SearchIndex.open("my_index")                 # the model named by the index, loaded once
    response = index.search("a woman in a red coat carrying a black backpack", top_k=10)
    for result in response.results:
        print(result.path, result.global_, result.local, result.fused)

A query is encoded as the training captions were (its noun phrases by acsa.data.phrases, text by the model's
text encoder); the global stage picks `candidates` images by cosine of global features (exact, or FAISS for
large indexes: acsa.search.global_search), ACSA's local score is computed exactly on those candidates, and
they are ranked by fused = global + w * local, w being the fusion weight the index records (chosen on the
validation split when the model was trained). With `attention=True` each result also carries a[r, p], the
attention of each image token r over the query's noun phrases p (the explain stage's maps).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from acsa.errors import SearchError
from acsa.search import global_search, store
from acsa.search.model_access import SearchModel, model_file

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000  # captions of the public benchmarks are under 500 characters
MAX_TOP_K = 1000
DEFAULT_TOP_K = 10
DEFAULT_CANDIDATES = 100  # global top candidates scored by the local branch (at least top_k)


def check_query(query: object) -> str:
    """The query with surrounding whitespace removed; anything unusable is a one-line SearchError."""
    if isinstance(query, bytes):
        try:
            query = query.decode("utf-8")
        except UnicodeDecodeError:
            raise SearchError("the query is not valid UTF-8 text") from None
    if not isinstance(query, str):
        raise SearchError(f"the query must be text, got {type(query).__name__}")
    try:
        query.encode("utf-8")  # lone surrogates: undecodable bytes of a command line (surrogateescape)
    except UnicodeEncodeError:
        raise SearchError("the query is not valid UTF-8 text") from None
    text = " ".join(query.split())
    if "\ufffd" in text:
        raise SearchError("the query is not valid UTF-8 text (it holds U+FFFD replacement characters)")
    if not text:
        raise SearchError("the query is empty: describe the person, e.g. 'a man in a red jacket'")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are accepted")
    return text


def check_top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise SearchError(f"top-k must be a whole number, got {top_k!r}")
    if not 1 <= int(top_k) <= MAX_TOP_K:
        raise SearchError(f"top-k must be between 1 and {MAX_TOP_K}, got {top_k}")
    return int(top_k)


@dataclass(frozen=True)
class Result:
    path: str  # the image file (absolute)
    key: str  # its path relative to the indexed folder: how the server names it
    global_: float
    local: float | None  # None for a model without the local branch
    fused: float
    attention: list[list[float]] | None = None  # [P][R]: a[r, p] for each phrase p over the image tokens r

    def to_dict(self) -> dict:
        out = {"path": self.path, "global": self.global_, "local": self.local, "fused": self.fused}
        if self.attention is not None:
            out["attention"] = self.attention
        return out


@dataclass(frozen=True)
class SearchResponse:
    query: str
    phrases: list[str]
    fusion_weight: float
    results: list[Result]
    token_layout: list[dict]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "phrases": self.phrases,
            "fusion_weight": self.fusion_weight,
            "seconds": round(self.seconds, 4),
            "tokens": self.token_layout,
            "results": [r.to_dict() | {"key": r.key} for r in self.results],
        }


class SearchIndex:
    """An index opened for queries: its shards left on disk (candidates' rows read per query), its model
    loaded once."""

    def __init__(self, path: Path, model: Path | None = None, fusion_weight: float | None = None) -> None:
        self.path = Path(path)
        manifest = store.read_manifest(self.path)
        self.manifest = manifest
        recorded = manifest["model"]
        model_path = Path(model) if model is not None else Path(recorded["path"])
        if not model_file(model_path).is_file():
            raise SearchError(
                f"{self.path}: its model {model_path} is not there any more; pass --model MODEL_DIR"
            )
        self.model = SearchModel(model_path)
        if self.model.sha256 != recorded["sha256"]:
            raise SearchError(
                f"{self.path} was built with model {recorded['path']} "
                f"(sha256 {recorded['sha256'][:12]}), not "
                f"{self.model.path.resolve()} (sha256 {self.model.sha256[:12]}): re-index with this model "
                "into another folder"
            )
        weight = manifest.get("fusion_weight") if fusion_weight is None else fusion_weight
        self.fusion_weight = float(weight if weight is not None else 0.0)
        self.root = Path(manifest["images"]["root"])
        self._open_rows()
        self._lock = threading.Lock()  # one query at a time: the tokenizer is not thread-safe
        if manifest.get("global_index"):
            info = manifest["global_index"]
            index = global_search.load_faiss(self.path, info, len(self.keys))
            self.global_search = global_search.GlobalSearch(
                faiss_index=index, features_of=self.global_features, refine=info.get("refine", 400)
            )
        else:
            features = torch.from_numpy(store.live_global_features(self.path, manifest))
            self.global_search = global_search.GlobalSearch(features=features)

    @classmethod
    def open(cls, path: Path, model: Path | None = None, fusion_weight: float | None = None) -> SearchIndex:
        return cls(path, model=model, fusion_weight=fusion_weight)

    def _open_rows(self) -> None:
        manifest = self.manifest
        self.shards = []
        keys, sizes, mtimes, shard_of, offset = [], [], [], [], []
        for position, entry in enumerate(manifest["shards"]):
            shard = store.open_shard(self.path, entry, manifest["embed_dim"], len(manifest["token_names"]))
            self.shards.append(shard)
            dropped = set(entry.get("dropped", []))
            for row, (key, size, mtime_ns) in enumerate(shard.files):
                if row in dropped:
                    continue
                keys.append(key)
                sizes.append(size)
                mtimes.append(mtime_ns)
                shard_of.append(position)
                offset.append(row)
        self.keys: list[str] = keys
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.mtimes = np.asarray(mtimes, dtype=np.int64)
        self.row_shard = np.asarray(shard_of, dtype=np.int32)
        self.row_offset = np.asarray(offset, dtype=np.int64)
        self.row_of_key = {key: row for row, key in enumerate(keys)}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def token_layout(self) -> list[dict]:
        return self.manifest.get("token_layout") or self.model.token_layout

    def _gather(self, rows: np.ndarray, field: str) -> np.ndarray:
        """Rows [n] of a shard tensor ("tokens" or "global_feats"), from whichever shards hold them ->
        float32 [n, ...] in the order of `rows`."""
        shape = getattr(self.shards[0], field).row_shape if self.shards else ()
        out = np.empty((len(rows), *shape), dtype=np.float32)
        shard_of = self.row_shard[rows]
        for position in np.unique(shard_of):
            where = np.flatnonzero(shard_of == position)
            out[where] = getattr(self.shards[position], field).rows(self.row_offset[rows[where]])
        return out

    def tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """Image tokens of index rows [n] -> float32 [n, R, D] (read from the shards on disk)."""
        return torch.from_numpy(self._gather(rows.numpy(), "tokens"))

    def global_features(self, rows: np.ndarray) -> np.ndarray:
        """L2-normalised global features of index rows [n] -> float32 [n, D]."""
        return self._gather(np.asarray(rows), "global_feats")

    def search(
        self,
        query: object,
        top_k: object = DEFAULT_TOP_K,
        candidates: int = DEFAULT_CANDIDATES,
        attention: bool = False,
    ) -> SearchResponse:
        """The top-k images for `query`; bad input raises SearchError (see check_query, check_top_k)."""
        text = check_query(query)
        k = check_top_k(top_k)
        with self._lock:
            started = time.perf_counter()
            encoded = self.model.encode_query(text)
            if self.model.uses_local and not encoded.phrases:
                raise SearchError(
                    f"no noun phrase in the query {text[:60]!r}: name what the person wears or carries, "
                    "e.g. 'a man in a red jacket with a black backpack'"
                )
            global_scores, rows = self.global_search.top(encoded.global_feat, max(k, candidates))
            local = fused = None
            tokens = None
            if self.model.uses_local and len(rows):
                tokens = self.tokens(rows)
                local = self.model.local_scores(encoded, tokens)
                fused = global_scores + self.fusion_weight * local
            else:
                fused = global_scores
            order = torch.argsort(fused, descending=True, stable=True)[:k]
            maps = None
            if attention and tokens is not None:
                maps = self.model.attention(encoded, tokens[order]).transpose(1, 2)  # [k, P, R]
            results = [
                Result(
                    path=str(self.root / self.keys[int(rows[i])]),
                    key=self.keys[int(rows[i])],
                    global_=round(float(global_scores[i]), 6),
                    local=None if local is None else round(float(local[i]), 6),
                    fused=round(float(fused[i]), 6),
                    attention=None if maps is None else np.round(maps[j].numpy(), 4).tolist(),
                )
                for j, i in enumerate(order.tolist())
            ]
            seconds = time.perf_counter() - started
        return SearchResponse(text, encoded.phrases, self.fusion_weight, results, self.token_layout, seconds)

    def image_file(self, key: str) -> Path | None:
        """The file behind an indexed key, if it is still the file that was indexed; else None.

        Only keys of the index resolve (an exact string match, so no path from outside the index does), and
        only while the file's size and modification time are those recorded."""
        row = self.row_of_key.get(key)
        if row is None:
            return None
        path = self.root / key
        try:
            stat = path.stat()
        except OSError:
            return None
        if not path.is_file() or (stat.st_size, stat.st_mtime_ns) != (self.sizes[row], self.mtimes[row]):
            return None
        return path


def search(index: Path, query: str, top_k: int = DEFAULT_TOP_K, **kwargs) -> SearchResponse:
    """One query against an index folder (opens it each call: keep a SearchIndex for many queries)."""
    return SearchIndex.open(index).search(query, top_k=top_k, **kwargs)
