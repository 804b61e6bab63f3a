"""Training steps of the ACSA model on random data, with the training loop's own step
(`acsa.training.step.training_step`; shared by benchmarks/train_speed.py and benchmarks/gpu_check.py), and
the training loop's own epochs (`loop_run`, for benchmarks/train_profile.py).

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
from torch.utils.data import DataLoader

from acsa.config.loading import load_params
from acsa.config.sections import Params
from acsa.data.image_features import FIELDS, CachedImages
from acsa.data.image_tables import RowImages, to_model_input
from acsa.data.sampler import IdentityBatchSampler
from acsa.data.text_features import FrozenTextSource, TextBank
from acsa.model.acsa import ACSA
from acsa.training import schedule
from acsa.training.distributed import Dist
from acsa.training.loop import FiniteWeights, train_epoch
from acsa.training.resume import RunState
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


def make_optimizer(model: ACSA, params: Params, fused: bool | None = None) -> torch.optim.Optimizer:
    """The training loop's AdamW (`fused=None`), or torch's fused (True) or default (False) implementation."""
    if fused is None:
        return schedule.make_optimizer(model, params.train, params.text.lr)
    groups = schedule.parameter_groups(model, params.train, params.text.lr)
    return torch.optim.AdamW(groups, lr=params.train.lr, weight_decay=params.train.weight_decay, fused=fused)


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
    precision: str = "auto",
) -> torch.Tensor:
    """One optimizer step on a batch already on the model's device: the training loop's own step
    (`training_step`: augment, encode, losses, backward, AdamW) -> the detached loss.
    precision: auto (acsa.runtime.autocast: bf16 on CUDA, fp32 on the CPU) | fp32 | bf16."""
    step_fn = TrainStep(model, BatchText(batch.text, params.text.finetune), batch.labels, params.loss)
    rows = torch.arange(batch.labels.shape[0])
    device = batch.images.device
    images, cache = batch.images, None
    if params.image.frozen:  # the two-stage protocol: the step reads the frozen backbone's cached outputs
        cache = backbone_cache(model, batch)
        images = rows
    losses = training_step(
        step_fn, optimizer, images, rows, params.image, generator, device, precision, cache=cache
    )
    return losses["loss"].detach()


_CACHES: dict[int, CachedImages] = {}


def backbone_cache(model: ACSA, batch: Batch) -> CachedImages:
    """The frozen backbone's outputs of a batch's images (one view), computed once per batch, as the
    embed_images stage caches them."""
    key = id(batch.images)
    if key not in _CACHES:
        with torch.no_grad():
            outputs = model.image_encoder.backbone_outputs(to_model_input(batch.images))
        tensors = {name: getattr(outputs, name)[None] for name in FIELDS}  # [1 view, B, ...]
        _CACHES.clear()
        _CACHES[key] = CachedImages(tensors, Path("(benchmark batch)"))
    return _CACHES[key]


@dataclass
class LoopRun:
    """What `acsa.training.loop.train_epoch` needs to train on random data of the synthetic split's sizes."""

    params: Params
    model: ACSA
    optimizer: torch.optim.Optimizer
    step_fn: TrainStep
    loader: DataLoader

    def steps(self, count: int, epoch: int = 0) -> dict[str, float]:
        """`count` optimizer steps of the training loop's epoch `epoch` (its data order, augmentation and
        dropout seeds) -> the logged means."""
        return train_epoch(
            self.params,
            self.step_fn,
            self.loader,
            self.optimizer,
            RunState(),
            epoch,
            count,
            Dist(),
            None,
            FiniteWeights(self.model),  # the loop checks the weights after every step: so does the benchmark
        )


def loop_run(params: Params, batch_size: int | None = None, seed: int = 0) -> LoopRun:
    """The training loop's model, optimizer, step and DataLoader (identity sampler over a preloaded uint8
    image table, frozen text features), on random images and features: train_ids x images_per_id images of
    the synthetic split, captions_per_image captions each."""
    if batch_size is not None:
        params = dataclasses.replace(params, train=dataclasses.replace(params.train, batch_size=batch_size))
    synthetic, cfg = params.synthetic, params.train
    generator = torch.Generator().manual_seed(seed)
    images = synthetic.train_ids * synthetic.images_per_id
    image_index = torch.arange(images).repeat_interleave(synthetic.captions_per_image)  # [N] rows -> image
    labels = image_index // synthetic.images_per_id
    table = torch.randint(0, 256, (images, 3, params.image.height, params.image.width), generator=generator)
    hidden = text_hidden_size(params)
    phrases = params.data.num_phrases
    lengths = torch.randint(min(3, phrases), phrases + 1, (len(labels),), generator=generator)
    phrase_index = torch.arange(len(labels) * phrases).view(-1, phrases)  # [N, P] distinct phrases
    phrase_index[torch.arange(phrases)[None] >= lengths[:, None]] = -1  # padding
    bank = TextBank(
        torch.randn(len(labels), hidden, generator=generator),
        torch.randn(len(labels) * phrases, hidden, generator=generator),
        phrase_index,
    )
    model = build_model(params, synthetic.train_ids).train()
    optimizer = make_optimizer(model, params)
    sampler = IdentityBatchSampler(labels.tolist(), cfg.batch_size, cfg.images_per_id, cfg.seed)
    loader = DataLoader(
        RowImages(table.to(torch.uint8), image_index.tolist()), batch_sampler=sampler, num_workers=0
    )
    step_fn = TrainStep(model, FrozenTextSource(bank), labels, params.loss)
    return LoopRun(params, model, optimizer, step_fn, loader)
