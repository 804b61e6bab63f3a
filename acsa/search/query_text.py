"""The text side of a query with a frozen text encoder: the tokenizer, the encoder (loaded on first use and
kept), a cache of phrases' hidden states, and one forward per query (acsa.search.packed_text), run by ONNX
Runtime where it is installed (acsa.search.onnx_text), else by PyTorch.

A query's latency is mostly its text encoding (BENCHMARKS.md, person search): the caption is always new, its
noun phrases often are not (they recur across queries: cached, at most PHRASE_CACHE_SIZE), and the phrases
that are new go through the encoder in the caption's forward. The padded phrase slots hold the encoding of
the literal "[PAD]" (as in training), a constant of the model kept apart from the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from acsa.data.tokenize import PAD_PHRASE
from acsa.model.text_encoder import TextEncoder
from acsa.search import onnx_text, packed_text

if TYPE_CHECKING:
    from acsa.config.sections import Params

PHRASE_CACHE_SIZE = 10_000  # phrases (10k x 384 floats = 15 MB for MiniLM)
# How a query's texts go through the encoder: "onnxruntime" (one packed forward, onnx_text), "packed" (one
# packed forward in PyTorch), "separate" (a PyTorch forward for the caption, another for the new phrases
# padded to the longest: the path before; benchmarks/search_speed.py compares them)
PATHS = ("onnxruntime", "packed", "separate")


class QueryText:
    """Pooled hidden states of a query's caption and phrases, as embed_text computed the training ones."""

    def __init__(self, params: Params, device: torch.device) -> None:
        self.params = params
        self.device = device
        self._path: str | None = None  # the fastest that applies, chosen on first use (`path`)
        self._tokenizer = None
        self._encoder: TextEncoder | None = None
        self._onnx: onnx_text.OnnxBert | None = None
        self._constants: dict[str, Tensor] = {}  # "[PAD]" -> its state
        # pooled hidden state [H] of each phrase seen, most recent last
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from acsa.data.tokenize import load_tokenizer

            self._tokenizer = load_tokenizer(self.params.text.encoder)
        return self._tokenizer

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.params.text).to(self.device).eval()
        return self._encoder

    def _applies(self, path: str) -> bool:
        bert = packed_text.packable(self.encoder)
        if path == "onnxruntime":  # on the CPU
            cpu = self.device.type == "cpu"
            return bert and cpu and onnx_text.installed() and onnx_text.supported(self.encoder.model)
        return bert or path == "separate"

    @property
    def path(self) -> str:
        """How the texts go through the encoder (PATHS): the first that applies, unless set."""
        if self._path is None:
            self._path = next(path for path in PATHS if self._applies(path))
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        if value not in PATHS or not self._applies(value):
            raise ValueError(f"text path {value!r}: not one of those that apply to this encoder")
        self._path = value

    def one_query(self) -> None:
        """For a process that encodes a single query (`acsa search`): PyTorch, since building the ONNX Runtime
        session (about a second) costs more than it saves on one query."""
        if self.path == "onnxruntime":
            self._path = "packed"

    def _forward(self) -> onnx_text.OnnxBert | None:
        if self.path != "onnxruntime":
            return None
        if self._onnx is None:
            self._onnx = onnx_text.OnnxBert(self.encoder.model)
        return self._onnx

    def tokenize(self, texts: list[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask [n, L], padded to the longest text only (as embed_text cuts each
        batch: mean pooling ignores the padding)."""
        tokenizer = self.tokenizer
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def _ids(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        """Each text's token ids, unpadded ([CLS] ... [SEP], cut at `max_tokens`)."""
        return self.tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"] if texts else []

    def forget_phrases(self) -> None:
        """Empty the phrase cache (a cold start, for benchmarks)."""
        self._cache.clear()

    def _known(self, phrase: str) -> Tensor | None:
        return self._constants.get(phrase) if phrase == PAD_PHRASE else self._cache.get(phrase)

    @torch.inference_mode()
    def states(self, caption: str, phrases: list[str]) -> tuple[Tensor, Tensor]:
        """(the caption's pooled hidden state [1, H], each of `phrases`' [n, H]), float32."""
        data = self.params.data
        new = [p for p in dict.fromkeys(phrases) if self._known(p) is None]
        if self.path != "separate":
            ids = self._ids([caption], data.caption_max_tokens) + self._ids(new, data.phrase_max_tokens)
            runtime = self._forward()
            encoded = packed_text.pooled(self.encoder, ids, runtime.states if runtime else None)
            sentence, fresh = encoded[:1], encoded[1:]
        else:
            sentence = self.encoder(*self.tokenize([caption], data.caption_max_tokens)).float()
            fresh = self.encoder(*self.tokenize(new, data.phrase_max_tokens)).float() if new else sentence[:0]
        for phrase, state in zip(new, fresh, strict=True):
            (self._constants if phrase == PAD_PHRASE else self._cache)[phrase] = state
        for phrase in phrases:
            if phrase in self._cache:
                self._cache.move_to_end(phrase)
        hidden = torch.stack([self._known(p) for p in phrases]) if phrases else sentence[:0]
        while len(self._cache) > PHRASE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return sentence, hidden
