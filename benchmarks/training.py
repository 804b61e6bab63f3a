"""Training steps of the ACSA model on random data, with the training loop's own step
(`acsa.training.step.training_step`; shared by benchmarks/train_speed.py and benchmarks/gpu_check.py).

Configurations come from params.yaml: `default` as it stands, `paper` with the paper preset applied (Swin-T
at 384x128 and BERT-base; random initialisation, since no weights are available offline: BERT-base is built
from transformers' `BertConfig()` defaults). Text is either frozen (cached pooled hidden states, the
default: the text encoder costs nothing per step) or fine-tuned (token ids through the encoder, captions and
each real phrase, at the configured maximum lengths).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acsa.config import Params, load_params
from acsa.model.acsa import ACSA
from acsa.training.schedule import parameter_groups
from acsa.training.step import TrainStep, training_step

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
# training identities: synthetic default, CUHK-PEDES
TRAIN_IDS = {"default": 700, "paper": 11_003, "released_code": 11_003}
HIDDEN = {"minilm": 384, "bert-base-uncased": 768}  # pooled hidden size of the text encoders


def load_config(
    name: str, finetune: bool, params_path: Path | None = None, overrides: list[str] = ()
) -> Params:
    """The params file (default: the repository's params.yaml) without a preset (`default`) or with one of
    its presets (`paper`), then `overrides` (`--set` texts), with text.finetune set."""
    return load_params(
        params_path or PARAMS, preset=name, overrides=[*overrides, f"text.finetune={str(finetune).lower()}"]
    )


def text_hidden_size(params: Params, bert_config: Any = None) -> int:
    if bert_config is not None:
        return int(bert_config.hidden_size)
    return HIDDEN.get(params.text.encoder, 768)


def build_model(params: Params, num_classes: int, bert_config: Any = None) -> ACSA:
    """The ACSA model with every weight randomly initialised except a bundled text encoder (MiniLM).

    Hub encoders (bert-base-uncased) cannot be downloaded here: a BERT of `bert_config` (default:
    transformers' `BertConfig()`, i.e. BERT-base) is built instead and injected as the text encoder."""
    text = params.text
    hub = text.encoder != "minilm"
    hidden = text_hidden_size(params, bert_config)
    if text.finetune and (hub or bert_config is not None):
        from transformers import BertConfig, BertModel

        from acsa.model.text_encoder import TextEncoder

        frozen = dataclasses.replace(params, text=dataclasses.replace(text, finetune=False))
        model = ACSA(frozen, num_classes, text_hidden_size=hidden, pretrained=False)
        model.text_encoder = TextEncoder(text, model=BertModel(bert_config or BertConfig()))
        return model
    return ACSA(params, num_classes, text_hidden_size=hidden, pretrained=not hub)


@dataclass
class Batch:
    images: torch.Tensor  # [B, 3, H, W] uint8
    labels: torch.Tensor  # [B]
    text: dict[str, torch.Tensor]  # encode_text or encode_text_tokens keyword arguments

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.images.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            {k: v.to(device, non_blocking=True) for k, v in self.text.items()},
        )


def random_batch(params: Params, batch_size: int, generator: torch.Generator, hidden: int = 384) -> Batch:
    """A batch like the identity sampler's: batch_size / images_per_id identities x images_per_id rows."""
    per_id = params.train.images_per_id
    labels = torch.arange(batch_size) // per_id
    images = torch.randint(
        0, 256, (batch_size, 3, params.image.height, params.image.width), generator=generator
    )
    phrases = params.data.num_phrases
    lengths = torch.randint(min(3, phrases), phrases + 1, (batch_size,), generator=generator)
    phrase_mask = torch.arange(phrases)[None] < lengths[:, None]  # [B, P]
    if params.text.finetune:
        caption_len, phrase_len = params.data.caption_max_tokens, params.data.phrase_max_tokens
        vocab = 30_000  # both encoders use the 30,522-word-piece uncased BERT vocabulary
        text = {
            "caption_ids": torch.randint(1000, vocab, (batch_size, caption_len), generator=generator),
            "caption_mask": torch.ones(batch_size, caption_len, dtype=torch.long),
            "phrase_ids": torch.randint(1000, vocab, (batch_size, phrases, phrase_len), generator=generator),
            "phrase_ids_mask": torch.ones(batch_size, phrases, phrase_len, dtype=torch.long),
            "phrase_mask": phrase_mask,
        }
    else:
        text = {
            "sentence_hidden": torch.randn(batch_size, hidden, generator=generator),
            "phrase_hidden": torch.randn(batch_size, phrases, hidden, generator=generator),
            "phrase_mask": phrase_mask,
        }
    return Batch(images.to(torch.uint8), labels, text)


def make_optimizer(model: ACSA, params: Params, fused: bool = False) -> torch.optim.Optimizer:
    extra: dict[str, Any] = {"fused": True} if fused else {}
    groups = parameter_groups(model, params.train, params.text.lr)
    return torch.optim.AdamW(groups, lr=params.train.lr, weight_decay=params.train.weight_decay, **extra)


class BatchText:
    """The text side of one benchmark batch as a text source (acsa.data.text_features): `encode` returns the
    features of the whole batch (the step's rows are always all of it)."""

    def __init__(self, text: dict[str, torch.Tensor], finetune: bool) -> None:
        self.text, self.finetune = text, finetune

    def encode(self, model: ACSA, rows: torch.Tensor, device: torch.device):
        return model.encode_text_tokens(**self.text) if self.finetune else model.encode_text(**self.text)


def train_step(
    model: ACSA,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    params: Params,
    generator: torch.Generator,
    channels_last: bool = False,
    precision: str = "auto",
) -> torch.Tensor:
    """One optimizer step on a batch already on the model's device: the training loop's own step
    (`training_step`: augment, encode, losses, backward, AdamW) -> the detached loss.
    precision: auto (acsa.runtime.autocast: bf16 on CUDA, fp32 on the CPU) | fp32 | bf16."""
    step_fn = TrainStep(model, BatchText(batch.text, params.text.finetune), batch.labels, params.loss)
    rows = torch.arange(batch.labels.shape[0])
    device = batch.images.device
    losses = training_step(
        step_fn, optimizer, batch.images, rows, params.image, generator, device, precision, channels_last
    )
    return losses["loss"].detach()
