"""The ACSA model: owns every trainable parameter, returns named features and its loss terms, and is saved
to and rebuilt from one checkpoint file (docs/method.md).

Text input is the text encoder's pooled hidden states: a sentence vector [B, H] and phrase vectors [B, P, H]
with phrase_mask [B, P]. With the default frozen encoder these are computed once outside the model and fed to
`encode_text`; with `text.finetune` the model runs its own `text_encoder` on token ids (`encode_text_tokens`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acsa import paths
from acsa.config.loading import params_from_dict
from acsa.config.sections import LossConfig, Params, params_to_dict
from acsa.errors import CheckpointError, ConfigError
from acsa.model.cross_attention import AsymmetricCrossAttention
from acsa.model.features import BackboneOutputs, ImageFeatures, TextFeatures
from acsa.model.image_encoder import ImageEncoder, bn_neck
from acsa.model.losses import cmpc_loss, cmpm_loss, local_loss
from acsa.model.phrase_pooling import PhraseAttentionPool
from acsa.model.text_encoder import TextEncoder
from acsa.model.twin_global import TwinGlobalBranch
from acsa.storage.checkpoint import check_finite_tensors, load_checkpoint, save_checkpoint

MODEL_SECTIONS = ("image", "model", "text")  # what must match between a checkpoint and the params used ...
TRAINING_ONLY_KEYS = {  # ... except keys that only shape training
    "image.init",
    "image.pretrained_path",
    "image.hflip",
    "image.translate",
    "text.lr",
    "text.batch_size",
}
# model.attention -> the directions whose local loss is trained (each weighted by loss.local_weight), and the
# loss key of each direction. Test-time scoring uses the reverse direction only for `phrase_queries`
# (`both` is scored with image_queries, as the released code does).
TRAINED_DIRECTIONS = {
    "image_queries": ("image_queries",),
    "phrase_queries": ("phrase_queries",),
    "both": ("image_queries", "phrase_queries"),
}
LOCAL_LOSS_KEYS = {"image_queries": "local_loss", "phrase_queries": "reverse_local_loss"}


class ACSA(nn.Module):
    """`pretrained=False` skips loading the backbone and text-encoder weights files: use it to rebuild a
    model whose checkpoint holds every weight (the files may not exist where it is evaluated)."""

    def __init__(
        self, params: Params, num_classes: int, text_hidden_size: int, pretrained: bool = True
    ) -> None:
        super().__init__()
        self.params = params  # the configuration it was built from (stored with its weights by `save`)
        self.summary: dict[str, Any] = {}  # what training chose on validation (`from_checkpoint` fills it)
        mcfg = params.model
        dim = mcfg.embed_dim
        self.embed_dim = dim
        self.attention_scale = mcfg.attention_scale
        self.image_encoder = ImageEncoder(
            params.image,
            dim,
            mcfg.dropout,
            use_regions=mcfg.use_regions,
            use_windows=mcfg.use_windows,
            pretrained=pretrained,
            use_image_token=mcfg.use_image_token,
        )
        self.text_encoder = TextEncoder(params.text, pretrained=pretrained) if params.text.finetune else None
        if self.text_encoder is not None and self.text_encoder.hidden_size != text_hidden_size:
            raise ValueError(
                f"text_hidden_size {text_hidden_size} differs from the text encoder's "
                f"{self.text_encoder.hidden_size}"
            )
        # Frozen features of template captions are nearly collinear: each hidden dimension is standardised
        # with training statistics before the projections (docs/decisions.md). Identity until set.
        for name in ("sentence", "phrase"):
            self.register_buffer(f"{name}_mean", torch.zeros(text_hidden_size))
            self.register_buffer(f"{name}_std", torch.ones(text_hidden_size))
        self.sentence_proj = nn.Linear(text_hidden_size, dim)
        self.sentence_neck = bn_neck(dim)
        self.phrase_proj = nn.Linear(text_hidden_size, dim)
        self.cross_attention = (
            AsymmetricCrossAttention(dim, mcfg.attention_scale, mcfg.leaky_slope, mcfg.mask_padding)
            if mcfg.use_local
            else None
        )
        # CMPC identity classifier [D, C]; columns are L2-normalised in the loss
        self.classifier = nn.Parameter(torch.empty(dim, num_classes))
        nn.init.xavier_uniform_(self.classifier)
        # created last, so that every other parameter starts as in a model without it (same seed)
        self.phrase_pool = PhraseAttentionPool(dim) if mcfg.global_text == "sentence_and_phrases" else None
        # the fusion control's second global branch, after everything else for the same reason
        self.twin = None
        if mcfg.twin_global:
            image_dim = self.image_encoder.global_proj.in_features
            with_phrases = self.phrase_pool is not None
            self.twin = TwinGlobalBranch(image_dim, text_hidden_size, dim, num_classes, with_phrases)
        self.attention_direction = mcfg.attention  # model.attention: the directions trained

    # text statistics

    @torch.no_grad()
    def set_text_statistics(
        self,
        mean: Tensor,
        std: Tensor,
        phrase_mean: Tensor | None = None,
        phrase_std: Tensor | None = None,
    ) -> None:
        """Per-dimension training statistics [H] of sentence (and, if given, phrase) hidden states."""
        phrase_mean = mean if phrase_mean is None else phrase_mean
        phrase_std = std if phrase_std is None else phrase_std
        for name, value in (
            ("sentence_mean", mean),
            ("sentence_std", std),
            ("phrase_mean", phrase_mean),
            ("phrase_std", phrase_std),
        ):
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(value).to(buffer))
        self.sentence_std.clamp_min_(1e-6)
        self.phrase_std.clamp_min_(1e-6)

    # encoders

    def encode_image(self, images: Tensor | BackboneOutputs) -> ImageFeatures:
        """images [B, 3, H, W] (or a frozen backbone's cached outputs of them) -> global_feat [B, D], tokens
        [B, R, D] (with model.twin_global, the twin's embedding [B, 1, D] in place of the tokens)."""
        if not isinstance(images, BackboneOutputs):
            images = self.image_encoder.backbone_outputs(images)
        features = self.image_encoder.heads(images)
        if self.twin is not None:
            features.tokens = self.twin.image(images.pooled)
        return features

    def encode_text(
        self, sentence_hidden: Tensor, phrase_hidden: Tensor, phrase_mask: Tensor
    ) -> TextFeatures:
        """sentence_hidden [B, H], phrase_hidden [B, P, H], phrase_mask [B, P] -> TextFeatures.

        Global feature: BN(Linear(sentence)), or with `model.global_text: sentence_and_phrases`
        BN(Linear(sentence) + attention pooling of the projected real phrases) (acsa.model.phrase_pooling).
        """
        sentence = (sentence_hidden - self.sentence_mean) / self.sentence_std
        phrases = (phrase_hidden - self.phrase_mean) / self.phrase_std
        sentence_feat = self.sentence_proj(sentence)  # [B, D]
        phrase_tokens = self.phrase_proj(phrases)  # [B, P, D]
        if self.phrase_pool is not None:
            sentence_feat = sentence_feat + self.phrase_pool(phrase_tokens, phrase_mask)
        global_feat = self.sentence_neck(sentence_feat)
        if self.twin is not None:  # the twin's embedding travels in the second score's slots
            twin_token, twin_mask = self.twin.text(sentence, phrases, phrase_mask)
            return TextFeatures(global_feat=global_feat, phrase_tokens=twin_token, phrase_mask=twin_mask)
        mask = phrase_mask.bool()
        return TextFeatures(global_feat=global_feat, phrase_tokens=phrase_tokens, phrase_mask=mask)

    def encode_text_tokens(
        self,
        caption_ids: Tensor,
        caption_mask: Tensor,
        phrase_ids: Tensor,
        phrase_ids_mask: Tensor,
        phrase_mask: Tensor,
    ) -> TextFeatures:
        """Fine-tuning path: token ids (+ attention masks) of captions [B, L] and phrases [B, P, L'].

        Only real phrases are encoded, unless padding is attended to (released code: the pads are inputs too).
        """
        if self.text_encoder is None:
            raise RuntimeError("encode_text_tokens needs text.finetune: true (no text encoder in the model)")
        sentence = self.text_encoder(caption_ids, caption_mask)  # [B, H]
        encode = phrase_mask.bool()
        if self.cross_attention is not None and not self.cross_attention.mask_padding:
            encode = torch.ones_like(encode)
        phrases = sentence.new_zeros(*phrase_mask.shape, sentence.shape[-1])  # [B, P, H]
        if encode.any():
            phrases[encode] = self.text_encoder(phrase_ids[encode], phrase_ids_mask[encode]).to(phrases.dtype)
        return self.encode_text(sentence, phrases, phrase_mask)

    def forward(
        self, images: Tensor, sentence_hidden: Tensor, phrase_hidden: Tensor, phrase_mask: Tensor
    ) -> tuple[ImageFeatures, TextFeatures]:
        return self.encode_image(images), self.encode_text(sentence_hidden, phrase_hidden, phrase_mask)

    # similarities

    @staticmethod
    def global_similarity(text_feats: TextFeatures, image_feats: ImageFeatures) -> Tensor:
        """Cosine of global embeddings: [T, I]."""
        return F.normalize(text_feats.global_feat, dim=-1) @ F.normalize(image_feats.global_feat, dim=-1).T

    @property
    def uses_local(self) -> bool:
        """The cross-attention's local score (and its attention maps) exists."""
        return self.cross_attention is not None

    @property
    def has_second_score(self) -> bool:
        """A second score to fuse with the global one: the local score, or the twin's (model.twin_global)."""
        return self.cross_attention is not None or self.twin is not None

    @property
    def scoring_direction(self) -> str:
        """The attention direction of the local score at validation and test time."""
        return "phrase_queries" if self.attention_direction == "phrase_queries" else "image_queries"

    def local_similarity(
        self,
        text_feats: TextFeatures,
        image_feats: ImageFeatures,
        candidates: Tensor | None = None,
        chunk_size: int = 128,
        image_chunk: int = 512,
        direction: str | None = None,
    ) -> Tensor:
        """Local score S(i, t): exact for every pair [T, I], or for each caption's candidate gallery indices
        (`candidates` [T, k], e.g. its global top-k) [T, k]. `chunk_size` captions are scored at a time.
        `direction`: image_queries (S) or phrase_queries (S_rev); default `scoring_direction`."""
        if self.twin is not None:
            return self.twin.similarity(text_feats.phrase_tokens, image_feats.tokens, candidates)
        if self.cross_attention is None:
            raise RuntimeError("local similarity needs model.use_local: true")
        reverse = (direction or self.scoring_direction) == "phrase_queries"
        args = (image_feats.tokens, text_feats.phrase_tokens, text_feats.phrase_mask)
        if candidates is None:
            return self.cross_attention.pairwise_local_similarity(
                *args, chunk_size, image_chunk, reverse=reverse
            )
        return self.cross_attention.rerank_local_similarity(*args, candidates, chunk_size, reverse=reverse)

    # training objective

    def losses(
        self, image_feats: ImageFeatures, text_feats: TextFeatures, labels: Tensor, loss_cfg: LossConfig
    ) -> dict[str, Tensor]:
        """Weighted loss terms of a batch of B aligned (image, caption) pairs, plus `loss`, their sum:
        cmpm_loss, cmpc_loss, and with the local branch local_loss (image tokens query phrases) and/or
        reverse_local_loss (phrases query image tokens), as `model.attention` says.

        With `drop_cmpm_below` set (released-code heuristic), CMPM is left out of `loss` in a step where its
        unweighted value falls below the threshold; it is still reported (detached).
        """
        x, t = image_feats.global_feat, text_feats.global_feat
        cmpm = cmpm_loss(x, t, labels, loss_cfg.cmpm_target_norm, loss_cfg.cmpm_eps)
        out = {
            "cmpm_loss": loss_cfg.cmpm_weight * cmpm,
            "cmpc_loss": loss_cfg.cmpc_weight * cmpc_loss(x, t, labels, self.classifier),
        }
        if self.uses_local:
            for direction in TRAINED_DIRECTIONS[self.attention_direction]:
                scores = self.local_similarity(text_feats, image_feats, direction=direction)  # [B, B]
                out[LOCAL_LOSS_KEYS[direction]] = loss_cfg.local_weight * local_loss(
                    scores, labels, self.attention_scale, loss_cfg.cmpm_target_norm, loss_cfg.cmpm_eps
                )
        if self.twin is not None:  # the twin trains like the first global branch, on its own
            x2, t2 = image_feats.tokens[:, 0], text_feats.phrase_tokens[:, 0]
            twin_cmpm = cmpm_loss(x2, t2, labels, loss_cfg.cmpm_target_norm, loss_cfg.cmpm_eps)
            out["twin_cmpm_loss"] = loss_cfg.cmpm_weight * twin_cmpm
            out["twin_cmpc_loss"] = loss_cfg.cmpc_weight * cmpc_loss(x2, t2, labels, self.twin.classifier)
        terms = dict(out)
        threshold = loss_cfg.drop_cmpm_below
        if threshold is not None and float(cmpm.detach()) < threshold:  # unweighted, as in the released code
            out["cmpm_loss"] = out["cmpm_loss"].detach()
            del terms["cmpm_loss"]
        out["loss"] = torch.stack([v.float() for v in terms.values()]).sum()  # autocast may mix dtypes
        return out

    # checkpoint

    def save(self, path: Path, summary: dict[str, Any]) -> None:
        """Write the weights with what `from_checkpoint` needs to rebuild the model (its configuration, the
        number of training identities, the text hidden size) and the training `summary`."""
        meta = {
            "config": params_to_dict(self.params),
            "num_classes": self.classifier.shape[1],
            "text_hidden_size": self.sentence_mean.shape[0],
            "summary": summary,
        }
        save_checkpoint(path, self.state_dict(), None, meta)

    @classmethod
    def from_checkpoint(cls, path: Path, params: Params | None = None) -> ACSA:
        """The trained model saved at `path` (its file, or the folder holding model.safetensors), in eval
        mode, with `model.params` the configuration it was trained with. With `params`, refuse (ConfigError)
        a model whose image, model or text configuration differs from it, training-only keys aside; a weight
        that is NaN or infinite is refused too (CheckpointError naming the file and the tensor)."""
        path = Path(path)
        if path.is_dir():
            path = path / paths.MODEL_FILE
        checkpoint = load_checkpoint(path)
        if not {"config", "num_classes", "text_hidden_size"} <= checkpoint.meta.keys():
            raise CheckpointError(
                f"{path}: not a trained model (a resume checkpoint? use {paths.MODEL_FILE})"
            )
        check_finite_tensors(path, checkpoint.model_state)
        try:
            trained = params_from_dict(checkpoint.meta["config"])
        except ConfigError as err:
            raise ConfigError(f"{path}: its stored configuration: {err}") from None
        if params is not None:
            current, stored = params_to_dict(params), params_to_dict(trained)
            differing = [
                f"{section}.{key}"
                for section in MODEL_SECTIONS
                for key in current[section]
                if current[section][key] != stored[section][key]
                and f"{section}.{key}" not in TRAINING_ONLY_KEYS
            ]
            if differing:
                raise ConfigError(
                    f"{path} was trained with a different configuration "
                    f"({', '.join(differing)}); retrain it (dvc repro) or evaluate with its params"
                )
        model = cls(
            trained,
            num_classes=checkpoint.meta["num_classes"],
            text_hidden_size=checkpoint.meta["text_hidden_size"],
            pretrained=False,  # weights come from the checkpoint: never re-read image.pretrained_path
        )
        model.load_state_dict(checkpoint.model_state)
        model.summary = checkpoint.meta.get("summary", {})
        model.eval()
        return model
