"""The training loop: identity-aware batches, AdamW groups, a step-based schedule, per-epoch validation,
atomic per-epoch checkpoints and resume, in one process or several (acsa.distributed). No argparse and no
fixed paths: the train stage passes them in.

Resume (acsa.resume; README, Resuming): a run that finds a good checkpoint of the same configuration and data
continues after it. The randomness of an epoch (batch order, augmentation, dropout) is a function of
(seed, epoch, rank) alone, so a continued run computes what the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from acsa.checkpoint import CheckpointFolder, load_checkpoint
from acsa.config import ConfigError, LossConfig, Params, TrainConfig, params_to_dict
from acsa.data.dataset import ImageTable, Prepared, RowImages, augment, load_prepared, to_model_input
from acsa.data.sampler import IdentityBatchSampler
from acsa.data.types import DataError
from acsa.distributed import Dist, all_agree, broadcast_int, convert_batchnorm, gather_rows, wrap
from acsa.model import ACSA
from acsa.resume import RunState, data_fingerprint, log_epoch, open_live, resume_checkpoint, save_epoch
from acsa.retrieval import choose_fusion_weight, encode_images, encode_queries, metrics_by_kind, score
from acsa.runtime import autocast, resolve_device, seed_everything, set_threads
from acsa.text_sources import FrozenTextSource, text_source_for

log = logging.getLogger(__name__)

PRELOAD_LIMIT_BYTES = 2 * 1024**3  # decode a split's images once into memory when they fit in this budget


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss: training stops and the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainPaths:
    prepared: Path  # the prepare stage's output
    features: Path  # the embed_text stage's features.safetensors
    checkpoints: Path  # per-epoch checkpoints (kept across runs for resume)
    live: Path  # DVCLive folder: metrics.json and plots


def learning_rate_factor(step: int, epoch: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay or steps at milestones."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def parameter_groups(model: ACSA, cfg: TrainConfig, text_lr: float) -> list[dict]:
    """AdamW groups: backbone, text encoder (when fine-tuned), heads; no weight decay on norms and biases."""
    groups: dict[tuple[str, bool], list] = defaultdict(list)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("image_encoder.backbone."):
            part = "backbone"
        elif name.startswith("text_encoder."):
            part = "text"
        else:
            part = "heads"
        groups[(part, param.ndim > 1)].append(param)
    lrs = {"backbone": cfg.backbone_lr or cfg.lr, "text": text_lr, "heads": cfg.lr}
    return [
        {
            "params": params,
            "lr": lrs[part],
            "base_lr": lrs[part],
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "name": f"{part}{'' if decay else '_no_decay'}",
        }
        for (part, decay), params in sorted(groups.items())
    ]


def image_table(prepared: Prepared, split: dict, paths_key: str, params: Params) -> ImageTable:
    paths = split[paths_key]
    size = len(paths) * 3 * params.image.height * params.image.width
    return ImageTable(
        prepared.image_root, paths, params.image.height, params.image.width, size <= PRELOAD_LIMIT_BYTES
    )


@torch.no_grad()
def validate(model: ACSA, params: Params, images: ImageTable, text_source, split: dict, device) -> dict:
    """Validation metrics; the fused score uses the best fusion weight on this (validation) split."""
    model.eval()
    image_feats = encode_images(model, images, params.evaluate.batch_size, device)
    text_feats = encode_queries(model, text_source, params.evaluate.batch_size, device)
    scores = score(
        model, text_feats, image_feats, "exact", params.evaluate.rerank_k, params.evaluate.chunk_size
    )
    query_ids = torch.tensor(split["caption_ids"])
    gallery_ids = torch.tensor(split["image_ids"])
    weight, _ = choose_fusion_weight(scores, query_ids, gallery_ids, params.evaluate.fusion_weights)
    results = metrics_by_kind(scores, query_ids, gallery_ids, weight)
    flat = {f"val/{kind}/{key}": value for kind, metrics in results.items() for key, value in metrics.items()}
    flat["val/fusion_weight"] = weight
    flat["val/selection_R1"] = results.get("fused", results["global"])["R1"]
    return flat


def epoch_seeds(seed: int, epoch: int, rank: int) -> tuple[int, int]:
    """(global RNG seed: dropout; augmentation generator seed) of one epoch on one rank."""
    first, second = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    return int(first), int(second)


def open_text_source(finetune: bool, prepared_dir: Path, features: Path, split: dict, name: str):
    """`text_source_for`, with a features or tokens file that is not safetensors as a one-line DataError."""
    try:
        return text_source_for(finetune, prepared_dir, features, split, name)
    except SafetensorError as err:
        source = Path(prepared_dir) / "tokens.safetensors" if finetune else features
        raise DataError(f"{source}: not a readable safetensors file ({' '.join(str(err).split())})") from None


class TrainStep(nn.Module):
    """A batch -> its loss terms, as one forward. DistributedDataParallel wraps this module, so the loss of
    the gathered global batch is inside the forward it synchronises (acsa.distributed explains why)."""

    def __init__(
        self, model: ACSA, text_source: Any, labels: Tensor, loss_cfg: LossConfig, ctx: Dist
    ) -> None:
        super().__init__()
        self.model = model
        self.text_source = text_source
        self.labels = labels  # [N] identity of every training row, on the CPU
        self.loss_cfg = loss_cfg
        self.ctx = ctx

    def forward(self, images: Tensor, rows: Tensor) -> dict[str, Tensor]:
        """images [b, 3, H, W] on the device, rows [b] (CPU indices of training rows) -> loss terms."""
        image_feats = self.model.encode_image(images)
        text_feats = self.text_source.encode(self.model, rows, images.device)
        labels = self.labels[rows].to(images.device)
        if self.ctx.enabled:  # [b, ...] per rank -> [n * b, ...], the global batch in rank order
            image_feats, text_feats = (
                type(feats)(
                    **{
                        f.name: gather_rows(getattr(feats, f.name), self.ctx)
                        for f in dataclasses.fields(feats)
                    }
                )
                for feats in (image_feats, text_feats)
            )
            labels = gather_rows(labels, self.ctx)
        return self.model.losses(image_feats, text_feats, labels, self.loss_cfg)


def check_finite(
    losses: dict[str, Tensor], epoch: int, step: int, ctx: Dist, device: torch.device, kept: Path | None
) -> None:
    """Raise NonFiniteLossError, on every rank at once, when a loss term is NaN or infinite on any rank."""
    bad = {name: float(value.detach()) for name, value in losses.items() if not torch.isfinite(value)}
    if all_agree(not bad, ctx, device):
        return
    what = (
        ", ".join(f"{name} is {value}" for name, value in bad.items())
        or "a loss is not finite on another rank"
    )
    where = f"{kept} is kept" if kept is not None else "no checkpoint was written yet"
    raise NonFiniteLossError(
        f"{what} at epoch {epoch}, step {step}: training stopped ({where}); lower train.lr or check the data"
    )


# ---- the loop ----------------------------------------------------------------------------------------------


def fit(params: Params, paths: TrainPaths, ctx: Dist | None = None, device: torch.device | None = None):
    """Train (continuing from a good checkpoint in paths.checkpoints); returns (model, summary).

    `ctx` places this process in a multi-process run (acsa.distributed); on rank 0 the returned model holds
    the best epoch's weights, on the others the last epoch's.
    """
    cfg = params.train
    ctx = ctx or Dist()
    device = device or resolve_device(cfg.device)
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(
            f"train.batch_size: {cfg.batch_size} is not divisible by {ctx.world_size} processes"
        )
    seed_everything(cfg.seed)
    set_threads(cfg.threads)
    prepared = load_prepared(paths.prepared)
    train_split = prepared.split("train")
    val_split = prepared.splits.get("val") if ctx.is_main else None
    if "val" not in prepared.splits and ctx.is_main:
        log.warning(
            "%s has no validation split: the last epoch is kept, no model selection", prepared.dataset
        )

    train_text = open_text_source(params.text.finetune, paths.prepared, paths.features, train_split, "train")
    statistics = text_statistics(paths, train_split, train_text)
    model = ACSA(
        params, num_classes=len(train_split["original_ids"]), text_hidden_size=statistics[0].shape[0]
    )
    model.set_text_statistics(*statistics)
    if ctx.enabled:
        convert_batchnorm(model)
    model.to(device)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg, params.text.lr), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    sampler = IdentityBatchSampler(
        train_split["labels"], cfg.batch_size, cfg.images_per_id, cfg.seed, ctx.rank, ctx.world_size
    )
    rows = RowImages(image_table(prepared, train_split, "images", params), train_split["image_index"])
    loader = DataLoader(rows, batch_sampler=sampler, num_workers=cfg.num_workers)
    total_steps = cfg.epochs * len(sampler)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    if val_split is not None:
        val_images = image_table(prepared, val_split, "image_paths", params)
        val_text = open_text_source(params.text.finetune, paths.prepared, paths.features, val_split, "val")
    labels = torch.tensor(train_split["labels"])
    step_fn = wrap(TrainStep(model, train_text, labels, params.loss, ctx), ctx)

    folder = CheckpointFolder(paths.checkpoints)
    config = params_to_dict(params)
    text_input = Path(paths.prepared) / "tokens.safetensors" if params.text.finetune else paths.features
    data = data_fingerprint([Path(paths.prepared) / "splits.json", Path(text_input)]) if ctx.is_main else ""
    with folder.lock() if ctx.is_main else contextlib.nullcontext():
        checkpoint = resume_checkpoint(folder, config, data) if ctx.is_main else None
        resumed = broadcast_int(checkpoint.meta["epoch"] if checkpoint else -1, ctx, device)
        if resumed >= 0 and checkpoint is None:  # the other ranks read the file rank 0 chose
            checkpoint = load_checkpoint(folder.epoch_path(resumed))
        state = RunState()
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model_state)
            optimizer.load_state_dict(checkpoint.optimizer_state)
            state = RunState.from_meta(checkpoint.meta)
            del checkpoint
        live = open_live(paths.live, state.history) if ctx.is_main else None
        started = time.perf_counter()
        for epoch in range(state.epoch, cfg.epochs):
            if state.step >= total_steps:
                break
            sampler.set_epoch(epoch)
            kept = folder.epoch_path(epoch - 1) if epoch > 0 else None
            logged = train_epoch(params, step_fn, loader, optimizer, state, epoch, total_steps, ctx, kept)
            if ctx.is_main:
                if val_split is not None:
                    logged.update(validate(model, params, val_images, val_text, val_split, device))
                save_epoch(folder, model, optimizer, state, logged, config, data)
                log_epoch(live, logged)
                log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in logged.items()})
            state.epoch = epoch + 1
            ctx.barrier()  # the other ranks wait for validation and checkpoint
        if live is not None:
            live.end()
        if ctx.is_main:
            if state.best["epoch"] < 0:
                raise ConfigError("no epoch was trained: check train.epochs and train.max_steps")
            model.load_state_dict(load_checkpoint(folder.best_path(state.best["epoch"])).model_state)
    summary = {
        "best_epoch": state.best["epoch"],
        "steps": state.step,
        "resumed_after_epoch": resumed,
        "train_seconds_this_run": round(time.perf_counter() - started, 1),
        "best_val_selection_R1": state.best["val/selection_R1"],
    }
    return model, summary


def train_epoch(
    params: Params,
    step_fn: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    state: RunState,
    epoch: int,
    total_steps: int,
    ctx: Dist,
    kept: Path | None,
) -> dict[str, float]:
    """One epoch (or what `total_steps` leaves of it); returns its mean loss terms, throughput and lr.

    `kept` is the newest checkpoint, named when a non-finite loss stops the run.
    """
    cfg = params.train
    device = next(step_fn.parameters()).device
    step_fn.train()
    dropout_seed, augment_seed = epoch_seeds(cfg.seed, epoch, ctx.rank)
    seed_everything(dropout_seed)
    generator = torch.Generator().manual_seed(augment_seed)
    sums: dict[str, float] = defaultdict(float)
    batches = 0
    started = time.perf_counter()
    for images, batch_rows in tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not ctx.is_main):
        if state.step >= total_steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * learning_rate_factor(state.step, epoch, cfg, total_steps)
        images = augment(
            to_model_input(images.to(device)), params.image.hflip, params.image.translate, generator
        )
        with autocast(device):
            losses = step_fn(images, batch_rows)
        check_finite(losses, epoch, state.step, ctx, device, kept)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        state.step += 1
        batches += 1
        for name, value in losses.items():
            sums[name] += float(value.detach())
    seconds = time.perf_counter() - started
    logged = {f"train/{name}": total / max(1, batches) for name, total in sums.items()}
    logged["train/pairs_per_second"] = batches * cfg.batch_size / max(seconds, 1e-9)
    logged["train/lr"] = optimizer.param_groups[-1]["lr"]
    return logged


def text_statistics(paths: TrainPaths, train_split: dict, source) -> tuple[torch.Tensor, ...]:
    """Mean and std of the training split's frozen sentence and phrase features (the model standardises
    with them)."""
    if isinstance(source, FrozenTextSource):
        return source.bank.statistics()
    from acsa.data.dataset import TextBank

    return TextBank.load(paths.features, train_split, "train").statistics()
