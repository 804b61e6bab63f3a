"""The training loop: identity-aware batches, AdamW groups, a step-based schedule, per-epoch validation,
atomic per-epoch checkpoints and resume. No argparse and no fixed paths: the train stage passes them in.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from acsa.checkpoint import (
    capture_rng_state,
    latest_good_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from acsa.config import Params, TrainConfig, params_to_dict
from acsa.data.dataset import ImageTable, Prepared, RowImages, augment, load_prepared, to_model_input
from acsa.data.sampler import IdentityBatchSampler
from acsa.model import ACSA
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
    """Multiplier of the base learning rate: linear warm-up, then cosine decay or steps at epoch milestones."""
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


def _check_finite(losses: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise NonFiniteLossError(
                f"{name} is {value.item()} at epoch {epoch}, step {step}: training stopped; "
                "the last good checkpoint is kept"
            )


def fit(params: Params, paths: TrainPaths) -> tuple[ACSA, dict]:
    """Train (resuming from the newest good checkpoint in paths.checkpoints); returns the best model and a summary."""
    from dvclive import Live

    cfg = params.train
    seed_everything(cfg.seed)
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    prepared = load_prepared(paths.prepared)
    train_split = prepared.split("train")
    val_split = prepared.splits.get("val")
    if val_split is None:
        log.warning(
            "%s has no validation split: the last epoch is kept, no model selection", prepared.dataset
        )

    train_text = text_source_for(params.text.finetune, paths.prepared, paths.features, train_split, "train")
    statistics = text_statistics(paths, train_split, train_text)
    model = ACSA(params, num_classes=len(train_split["original_ids"]), text_hidden_size=statistics[0].shape[0])
    model.set_text_statistics(*statistics)
    model.to(device)
    text_lr = params.text.lr
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg, text_lr), lr=cfg.lr, weight_decay=cfg.weight_decay
    )

    sampler = IdentityBatchSampler(train_split["labels"], cfg.batch_size, cfg.images_per_id, cfg.seed)
    rows = RowImages(image_table(prepared, train_split, "images", params), train_split["image_index"])
    loader = DataLoader(rows, batch_sampler=sampler, num_workers=cfg.num_workers)
    steps_per_epoch = len(sampler)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    labels_all = torch.tensor(train_split["labels"])
    if val_split is not None:
        val_images = image_table(prepared, val_split, "image_paths", params)
        val_text = text_source_for(params.text.finetune, paths.prepared, paths.features, val_split, "val")

    start_epoch, step, best = 0, 0, {"epoch": -1, "val/selection_R1": -1.0}
    checkpoint_path = latest_good_checkpoint(paths.checkpoints)
    if checkpoint_path is not None:
        checkpoint = load_checkpoint(checkpoint_path)
        if checkpoint.meta.get("config") != params_to_dict(params):
            log.warning("%s was written with another configuration: starting afresh", checkpoint_path)
            shutil.rmtree(paths.checkpoints)
            checkpoint_path = None
    if checkpoint_path is not None:
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        restore_rng_state(checkpoint.meta["rng"])
        start_epoch, step, best = (
            checkpoint.meta["epoch"] + 1,
            checkpoint.meta["step"],
            checkpoint.meta["best"],
        )
        log.info("resuming from %s (epoch %d, step %d)", checkpoint_path, start_epoch, step)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)

    live = Live(str(paths.live), resume=checkpoint_path is not None, save_dvc_exp=False, dvcyaml=False)
    started = time.perf_counter()
    pairs_seen = 0
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total_steps:
            break
        model.train()
        sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        sums: dict[str, float] = defaultdict(float)
        batches = 0
        epoch_start = time.perf_counter()
        for images, batch_rows in tqdm(loader, desc=f"epoch {epoch}", leave=False):
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * learning_rate_factor(step, epoch, cfg, total_steps)
            images = augment(
                to_model_input(images.to(device)), params.image.hflip, params.image.translate, generator
            )
            with autocast(device):
                image_feats = model.encode_image(images)
                text_feats = train_text.encode(model, batch_rows, device)
                losses = model.losses(image_feats, text_feats, labels_all[batch_rows].to(device), params.loss)
            _check_finite(losses, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            step += 1
            batches += 1
            pairs_seen += len(batch_rows)
            for name, value in losses.items():
                sums[name] += float(value.detach())
        epoch_seconds = time.perf_counter() - epoch_start
        logged = {f"train/{name}": total / max(1, batches) for name, total in sums.items()}
        logged["train/pairs_per_second"] = batches * cfg.batch_size / max(epoch_seconds, 1e-9)
        logged["train/lr"] = optimizer.param_groups[-1]["lr"]
        if val_split is not None:
            logged.update(validate(model, params, val_images, val_text, val_split, device))
        for name, value in logged.items():
            live.log_metric(name, value)
        live.next_step()
        is_best = val_split is None or logged["val/selection_R1"] > best["val/selection_R1"]
        if is_best:
            best = {"epoch": epoch, "val/selection_R1": logged.get("val/selection_R1", -1.0)}
        meta = {
            "config": params_to_dict(params),
            "epoch": epoch,
            "step": step,
            "best": best,
            "rng": capture_rng_state(),
            "metrics": logged,
        }
        save_checkpoint(
            paths.checkpoints / f"epoch-{epoch:03d}.safetensors",
            model.state_dict(),
            optimizer.state_dict(),
            meta,
        )
        if is_best:
            save_checkpoint(paths.checkpoints / "best.safetensors", model.state_dict(), None, meta)
        _prune_checkpoints(paths.checkpoints, keep=2)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in logged.items()})
    live.end()
    best_checkpoint = load_checkpoint(paths.checkpoints / "best.safetensors")
    model.load_state_dict(best_checkpoint.model_state)
    summary = {
        "best_epoch": best["epoch"],
        "steps": step,
        "train_seconds_this_run": round(time.perf_counter() - started, 1),
        "best_val_selection_R1": best["val/selection_R1"],
    }
    return model, summary


def text_statistics(paths: TrainPaths, train_split: dict, source) -> tuple[torch.Tensor, ...]:
    """Mean and std of the training split's frozen sentence and phrase features (the model standardises
    with them)."""
    if isinstance(source, FrozenTextSource):
        return source.bank.statistics()
    from acsa.data.dataset import TextBank

    return TextBank.load(paths.features, train_split, "train").statistics()


def _prune_checkpoints(folder: Path, keep: int) -> None:
    epochs = sorted(folder.glob("epoch-*.safetensors"))
    for old in epochs[:-keep]:
        old.unlink()
