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
validation split when the model was trained); exactly tied fused scores (copies of one image) rank by index
row. With `attention=True` each result also carries a[r, p], the
attention of each image token r over the query's noun phrases p (the explain stage's maps).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from acsa.errors import NonFiniteError, SearchError, one_line
from acsa.search import store
from acsa.search.global_search import GlobalSearch
from acsa.search.model_access import SearchModel, model_file
from acsa.search.names import image_url
from acsa.search.opened import open_index, reopen

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


class IndexStateError(SearchError):
    """The index on disk can no longer be used by this process (rebuilt with another model, damaged while
    open): not the query's fault. The server answers 503."""


def check_fusion_weight(weight: object, name: str) -> float:
    """A fusion weight as a float; NaN, infinity or not a number is a one-line SearchError naming `name`."""
    try:
        value = float(weight)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SearchError(f"{name} {weight!r}: expected a number") from None
    if isinstance(weight, bool) or not math.isfinite(value):
        raise SearchError(f"{name} {weight!r}: expected a finite number (it multiplies every local score)")
    return value


def check_scores(scores: torch.Tensor, text: str) -> None:
    """Nothing that is not finite is ranked: NonFiniteError if a score is NaN or infinite (the index rows
    are checked as they are read, so the model's features of the query are the cause)."""
    if not bool(torch.isfinite(scores).all()):
        raise NonFiniteError(
            f"the scores of the query {text[:60]!r} are not finite (NaN or infinite): the model's features "
            "of the query are not; check the model and its text encoder"
        )


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

    @property
    def url(self) -> str:
        """The server's URL path of the image (its bytes percent-encoded: any file name)."""
        return image_url(self.key)


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
            "results": [r.to_dict() | {"key": r.key, "url": r.url} for r in self.results],
        }


class SearchIndex:
    """An index opened for queries: its shards left on disk (candidates' rows read per query), its model
    loaded once. An index updated on disk since (`acsa index` under a running `acsa serve`) is opened again
    before the next query or image (acsa.search.opened); an index rebuilt with another model cannot be, and
    says so."""

    def __init__(self, path: Path, model: Path | None = None, fusion_weight: float | None = None) -> None:
        self.path = Path(path)
        if fusion_weight is not None:
            self._fusion_override: float | None = check_fusion_weight(fusion_weight, "--fusion-weight")
        else:
            self._fusion_override = None
        manifest = store.read_manifest(self.path)
        recorded = manifest["model"]
        model_path = Path(model) if model is not None else Path(recorded["path"])
        if not model_file(model_path).is_file():
            raise SearchError(
                f"{self.path}: its model {model_path} is not there any more; pass --model MODEL_DIR"
            )
        self.model = SearchModel(model_path)
        self._check_model(manifest)
        self._lock = threading.Lock()  # one query at a time: the tokenizer is not thread-safe
        self._opened = open_index(self.path)
        self._check_model(self._opened.manifest)  # (replaced since it was read above)

    @classmethod
    def open(cls, path: Path, model: Path | None = None, fusion_weight: float | None = None) -> SearchIndex:
        return cls(path, model=model, fusion_weight=fusion_weight)

    def _check_model(self, manifest: dict) -> None:
        recorded = manifest["model"]
        if self.model.sha256 != recorded["sha256"]:
            raise SearchError(
                f"{self.path} was built with model {recorded['path']} "
                f"(sha256 {recorded['sha256'][:12]}), not "
                f"{self.model.path.resolve()} (sha256 {self.model.sha256[:12]}): re-index with this model "
                "into another folder"
            )

    def refresh(self) -> None:
        """Open the index again if `acsa index` changed it since (one stat of the manifest when it did not).
        An index rebuilt with another model is an IndexStateError: the process must start again."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            opened = reopen(self._opened)
            if opened is not self._opened:
                self._check_model(opened.manifest)
        except SearchError as err:
            raise IndexStateError(
                f"{one_line(err)} (the index changed on disk since it was opened: restart the search)"
            ) from None
        self._opened = opened

    # what the index holds (as opened now)

    @property
    def manifest(self) -> dict:
        return self._opened.manifest

    @property
    def keys(self) -> list[str]:
        return self._opened.keys

    @property
    def row_of_key(self) -> dict[str, int]:
        return self._opened.row_of_key

    @property
    def shards(self) -> list[store.Shard]:
        return self._opened.shards

    @property
    def global_search(self) -> GlobalSearch:
        return self._opened.global_search

    @property
    def root(self) -> Path:
        return Path(self.manifest["images"]["root"])

    @property
    def fusion_weight(self) -> float:
        """The override given when opened, else the weight the index records (0 if none)."""
        if self._fusion_override is not None:
            return self._fusion_override
        weight = self.manifest.get("fusion_weight")
        return float(weight if weight is not None else 0.0)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def token_layout(self) -> list[dict]:
        return self.manifest.get("token_layout") or self.model.token_layout

    def tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """Image tokens of index rows [n] -> float32 [n, R, D] (read from the shards on disk)."""
        return torch.from_numpy(self._opened.gather(rows.numpy(), "tokens"))

    def global_features(self, rows: np.ndarray) -> np.ndarray:
        """L2-normalised global features of index rows [n] -> float32 [n, D]."""
        return self._opened.gather(np.asarray(rows), "global_feats")

    def search(
        self,
        query: object,
        top_k: object = DEFAULT_TOP_K,
        candidates: int = DEFAULT_CANDIDATES,
        attention: bool = False,
    ) -> SearchResponse:
        """The top-k images for `query`; bad input raises SearchError (see check_query, check_top_k), a
        NaN or infinity in the model's features or in the index NonFiniteError (nothing is ranked)."""
        text = check_query(query)
        k = check_top_k(top_k)
        with self._lock:
            self._refresh()
            started = time.perf_counter()
            encoded = self.model.encode_query(text)
            if self.model.uses_local and not encoded.phrases:
                raise SearchError(
                    f"no noun phrase in the query {text[:60]!r}: name what the person wears or carries, "
                    "e.g. 'a man in a red jacket with a black backpack'"
                )
            global_scores, rows = self.global_search.top(encoded.global_feat, max(k, candidates))
            by_row = torch.argsort(rows)  # exact ties of the fused score then rank by index row (topk's order
            global_scores, rows = global_scores[by_row], rows[by_row]  # among them is left open)
            local = tokens = None
            fused = global_scores
            if self.model.uses_local and len(rows):
                tokens = self.tokens(rows)
                local = self.model.local_scores(encoded, tokens)
                fused = global_scores + self.fusion_weight * local
            check_scores(fused, text)
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
        with self._lock:
            self._refresh()
            opened = self._opened
        row = opened.row_of_key.get(key)
        if row is None:
            return None
        path = Path(opened.manifest["images"]["root"]) / key
        try:
            stat = path.stat()
        except OSError:
            return None
        if not path.is_file() or (stat.st_size, stat.st_mtime_ns) != (opened.sizes[row], opened.mtimes[row]):
            return None
        return path


def search(index: Path, query: str, top_k: int = DEFAULT_TOP_K, **kwargs) -> SearchResponse:
    """One query against an index folder (opens it each call: keep a SearchIndex for many queries)."""
    return SearchIndex.open(index).search(query, top_k=top_k, **kwargs)
