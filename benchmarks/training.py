"""Training steps of the ACSA model on random data, as `acsa.engine.fit` runs them (shared by
benchmarks/train_speed.py and benchmarks/gpu_check.py).

Configurations come from params.yaml: `default` as it stands, `paper` with the paper preset applied (Swin-T
at 384x128 and BERT-base; random initialisation, since no weights are available offline: BERT-base is built
from transformers' `BertConfig()` defaults). Text is either frozen (cached pooled hidden states, the
default: the text encoder costs nothing per step) or fine-tuned (token ids through the encoder, captions and
each real phrase, at the configured maximum lengths).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acsa.config import Params, apply_overrides, params_from_dict, read_params_file
from acsa.data.dataset import augment, to_model_input
from acsa.engine import parameter_groups
from acsa.model import ACSA
from acsa.runtime import autocast

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
TRAIN_IDS = {"default": 700, "paper": 11_003}  # training identities: synthetic default, CUHK-PEDES
HIDDEN = {"minilm": 384, "bert-base-uncased": 768}  # pooled hidden size of the text encoders


def load_config(name: str, finetune: bool, params_path: Path = PARAMS) -> Params:
    """params.yaml as is (`default`) or with one of its presets applied (`paper`); text.finetune set."""
    raw = read_params_file(params_path)
    if name != "default":
        raw = apply_overrides(raw, raw["presets"][name], f"presets.{name}")
    raw = apply_overrides(raw, {"text.finetune": finetune}, "benchmark")
    return params_from_dict(raw)


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

        from acsa.encoders import TextEncoder

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


def train_step(
    model: ACSA,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    params: Params,
    generator: torch.Generator,
    channels_last: bool = False,
    precision: str = "auto",
) -> torch.Tensor:
    """One optimizer step on a batch already on the model's device (engine.fit's inner loop).
    precision: auto (acsa.runtime.autocast: bf16 on CUDA, fp32 on the CPU) | fp32 | bf16."""
    device = batch.images.device
    images = augment(to_model_input(batch.images), params.image.hflip, params.image.translate, generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if precision == "auto":
        context = autocast(device)
    elif precision == "bf16":
        context = torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        context = contextlib.nullcontext()
    with context:
        image_feats = model.encode_image(images)
        if params.text.finetune:
            text_feats = model.encode_text_tokens(**batch.text)
        else:
            text_feats = model.encode_text(**batch.text)
        losses = model.losses(image_feats, text_feats, batch.labels, params.loss)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    return losses["loss"].detach()
