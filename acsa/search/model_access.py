"""Everything the search tool asks of a trained model, in one module: load it, name it, encode images and a
query, and score candidates with ACSA's cross-attention.

The rest of acsa.search sees only `SearchModel` and plain tensors, so a change in how the library builds or
runs the model is a change here alone.

Axes: B images in a batch, R image tokens, D embedding dim, P phrases (the model's `data.num_phrases`, real
ones first, the rest padding), k candidate images, H text hidden size, L word pieces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from acsa import paths
from acsa.analysis.explanations import token_layout
from acsa.config.sections import Params, params_to_dict
from acsa.data.image_tables import to_model_input
from acsa.data.images import load_image
from acsa.data.phrases import extract_noun_phrases
from acsa.data.tokenize import PAD_PHRASE
from acsa.errors import SearchError
from acsa.model.acsa import ACSA
from acsa.model.features import ImageFeatures, TextFeatures
from acsa.search.query_text import QueryText
from acsa.storage.checkpoint import load_checkpoint
from acsa.storage.files import sha256_of

log = logging.getLogger(__name__)

MODEL_FILE = paths.MODEL_FILE


@dataclass(frozen=True)
class EncodedQuery:
    """A query as the model sees it."""

    text: str
    phrases: list[str]  # the real noun phrases, in order
    global_feat: torch.Tensor  # [D] L2-normalised: cosine = dot product with an indexed image
    phrase_tokens: torch.Tensor  # [1, P, D]
    phrase_mask: torch.Tensor  # [1, P] bool


def model_file(model: Path) -> Path:
    """A model folder (holding model.safetensors) or the file itself -> the file."""
    model = Path(model)
    return model / MODEL_FILE if model.is_dir() else model


def model_identity(path: Path) -> str:
    """SHA-256 of the model file's bytes (weights and the configuration stored in it)."""
    return sha256_of(path)


class SearchModel:
    """A trained ACSA model rebuilt from its file, in eval mode on the CPU (or `device`).

    The frozen text encoder (when the model was trained on cached features) is loaded on the first query
    and kept for the life of the object: loading it takes about a second, encoding a query milliseconds
    (acsa.search.query_text: `text`).
    """

    def __init__(self, model: Path, device: str = "cpu") -> None:
        self.path = model_file(model)
        if not self.path.is_file():
            raise SearchError(
                f"{model}: no trained model there ({MODEL_FILE} not found; train one: dvc repro)"
            )
        self.sha256 = model_identity(self.path)
        self.device = torch.device(device)
        self.model = ACSA.from_checkpoint(self.path).to(self.device)  # eval mode, no pretrained file read
        self.params: Params = self.model.params
        self.config: dict = params_to_dict(self.params)
        summary = getattr(self.model, "summary", None)
        if summary is None:  # the training summary (fusion weight) is in the checkpoint's meta
            summary = load_checkpoint(self.path).meta.get("summary", {})
        self.summary: dict = summary
        self.text = QueryText(self.params, self.device)

    # what an index records about the model

    @property
    def uses_local(self) -> bool:
        return self.model.uses_local

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @property
    def token_names(self) -> list[str]:
        return list(self.model.image_encoder.token_names)

    @property
    def token_layout(self) -> list[dict]:
        """Each image token's name, kind and box (fractions of the image; None for pooled tokens)."""
        encoder = self.model.image_encoder
        return token_layout(encoder.token_names, encoder.parts, encoder.window_grid)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.params.image.height, self.params.image.width

    @property
    def chosen_fusion_weight(self) -> tuple[float | None, str]:
        """(the fusion weight training chose, on what): on the validation split at the chosen epoch, or a
        fixed weight for a model trained without one; None for a model whose file does not record it."""
        if not self.uses_local:
            return 0.0, "global-only model"  # no local score: the fused score is the global one
        weight = self.summary.get("fusion_weight")
        return (None if weight is None else float(weight)), str(self.summary.get("chosen_on", "unknown"))

    def describe(self) -> dict:
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "config": self.config}

    # images

    def load_image(self, path: Path) -> torch.Tensor:
        """Decode a file (any PIL mode, converted to RGB) and resize it to the model's input: uint8 [3, H, W].
        A missing, truncated or corrupt file raises DataError."""
        image = load_image(path)
        height, width = self.image_size
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.BICUBIC)  # as the training ImageTable
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B, 3, H, W] -> (L2-normalised global features [B, D], image tokens [B, R, D]), float32."""
        features = self.model.encode_image(to_model_input(images.to(self.device)))
        return F.normalize(features.global_feat.float(), dim=-1).cpu(), features.tokens.float().cpu()

    # queries

    def phrases(self, text: str) -> list[str]:
        """The query's noun phrases, by the extractor the training captions went through."""
        return extract_noun_phrases(text, self.params.data.num_phrases)

    def warm_up(self) -> None:
        """Load the tokenizer, the text encoder and the phrase tagger now rather than on the first query."""
        self.encode_query("a person in a red shirt")

    @torch.inference_mode()
    def encode_query(self, text: str) -> EncodedQuery:
        """A query -> its global feature and projected-to-be phrase tokens (as the training captions)."""
        phrases = self.phrases(text)
        num_phrases = self.params.data.num_phrases
        data = self.params.data
        phrase_mask = torch.zeros(1, num_phrases, dtype=torch.bool, device=self.device)
        phrase_mask[0, : len(phrases)] = True
        slots = phrases + [PAD_PHRASE] * (num_phrases - len(phrases))  # padded slots: as in training
        if self.params.text.finetune:  # the model holds its own (fine-tuned) text encoder
            caption_ids, caption_mask = self.text.tokenize([text], data.caption_max_tokens)
            ids, ids_mask = self.text.tokenize(slots, data.phrase_max_tokens)  # [P, Lp]
            features = self.model.encode_text_tokens(
                caption_ids, caption_mask, ids[None], ids_mask[None], phrase_mask
            )
        else:
            sentence, hidden = self.text.states(text, slots)  # [1, H], [P, H]: one forward
            features = self.model.encode_text(sentence, hidden[None], phrase_mask)
        return EncodedQuery(
            text=text,
            phrases=phrases,
            global_feat=F.normalize(features.global_feat.float()[0], dim=-1).cpu(),
            phrase_tokens=features.phrase_tokens.float(),
            phrase_mask=features.phrase_mask,
        )

    # the local score and its attention

    @torch.inference_mode()
    def local_scores(self, query: EncodedQuery, image_tokens: torch.Tensor) -> torch.Tensor:
        """ACSA's exact local score of the query against each candidate, in the direction the model scores
        with (`model.attention`): tokens [k, R, D] -> [k]."""
        if not self.uses_local:
            raise SearchError("this model has no local branch (model.use_local: false)")
        tokens = image_tokens.to(self.device, torch.float32)
        images = ImageFeatures(global_feat=tokens.new_zeros(len(tokens), self.embed_dim), tokens=tokens)
        text = TextFeatures(
            global_feat=query.global_feat[None].to(self.device),
            phrase_tokens=query.phrase_tokens,
            phrase_mask=query.phrase_mask,
        )
        return self.model.local_similarity(text, images)[0].float().cpu()  # [1, k] -> [k]

    @torch.inference_mode()
    def attention(self, query: EncodedQuery, image_tokens: torch.Tensor) -> torch.Tensor:
        """The attention between each candidate's tokens and the query's real phrases (docs/method.md, 3):
        tokens [k, R, D] -> [k, R, P_real]. Image tokens querying phrases (the default): a[r, p], a softmax
        over the phrases; phrases querying tokens (`model.attention: phrase_queries`): a'[p, r] transposed,
        a softmax over the tokens."""
        real = len(query.phrases)
        reverse = self.model.scoring_direction == "phrase_queries"
        attend = self.model.cross_attention.attention_weights
        tokens = image_tokens.to(self.device, torch.float32)
        maps = [
            attend(t, query.phrase_tokens[0], query.phrase_mask[0], reverse=reverse)[:, :real] for t in tokens
        ]
        return torch.stack(maps).float().cpu() if maps else tokens.new_zeros(0, tokens.shape[1], real)
