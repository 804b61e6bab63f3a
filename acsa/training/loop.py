"""The training loop: identity-aware (or random) batches, AdamW groups, a step-based schedule, per-epoch
validation, atomic per-epoch checkpoints and resume, in one process or several (acsa.training.distributed).
No argparse and no fixed paths: the train stage passes them in.

Resume (acsa.training.resume; README, Resuming): a run that finds a good checkpoint of the same
configuration and data continues after it. The randomness of an epoch (batch order, augmentation, dropout)
is a function of (seed, epoch, rank) alone, so a continued run computes what the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from acsa.config.rules import check_backbone_weights
from acsa.config.sections import Params, TrainConfig, params_to_dict
from acsa.data.image_features import CachedImages
from acsa.data.image_tables import RowImageIndex, RowImages, to_model_input
from acsa.data.prepared import Prepared, Split, load_prepared, read_split
from acsa.data.sampler import make_batch_sampler
from acsa.data.text_features import text_statistics
from acsa.errors import ConfigError, NonFiniteError, NonFiniteLossError
from acsa.model.acsa import ACSA
from acsa.paths import IMAGE_FEATURES, RECORDS_FILE, TOKENS_FILE, features_file
from acsa.runtime import resolve_device, seed_everything, set_threads
from acsa.scoring.retrieval import choose_fusion_weight, metrics_by_kind, score_split
from acsa.storage.checkpoint import load_checkpoint
from acsa.training.distributed import Dist, all_agree, broadcast_int, convert_batchnorm, wrap
from acsa.training.live import log_epoch, open_live
from acsa.training.resume import CheckpointFolder, RunState, data_fingerprint, resume_checkpoint, save_epoch
from acsa.training.schedule import learning_rate_factor, make_optimizer
from acsa.training.step import TrainStep, cached_views, compile_step, training_step

log = logging.getLogger(__name__)


# Without a validation split nothing can be chosen honestly: the last epoch is kept and the local score is
# added with this fixed weight (the test split is never used to choose).
UNTUNED_FUSION_WEIGHT = 1.0


@dataclass(frozen=True)
class TrainPaths:
    prepared: Path  # the prepare stage's output
    features: Path  # the embed_text stage's output folder (<split>.safetensors)
    checkpoints: Path  # per-epoch checkpoints (kept across runs for resume)
    live: Path  # DVCLive folder: metrics.json and plots
    image_features: Path = IMAGE_FEATURES  # the embed_images stage's output (read with image.frozen)


@torch.no_grad()
def validate(model: ACSA, params: Params, split: Split, device: torch.device) -> tuple[dict, dict]:
    """Validation metrics and choices of one epoch: the fusion weight with the best R1 on this (validation)
    split, scored as the final evaluation will score (`evaluate.local_mode`), and the curve it was read off.
    Returns (flat metrics for the logs, {"fusion_weight", "fusion_curve"})."""
    model.eval()
    scores = score_split(model, split, params.evaluate, device)
    query_ids, gallery_ids = split.query_ids, split.gallery_ids
    weight, curve = choose_fusion_weight(scores, query_ids, gallery_ids, params.evaluate.fusion_weights)
    results = metrics_by_kind(scores, query_ids, gallery_ids, weight, "val")
    flat = {f"val/{kind}/{key}": value for kind, metrics in results.items() for key, value in metrics.items()}
    flat["val/fusion_weight"] = weight
    flat["val/selection_R1"] = results.get("fused", results["global"])["R1"]
    choices = {"fusion_weight": weight, "fusion_curve": curve if model.has_second_score else []}
    return flat, choices


def selection_summary(state: RunState, has_val: bool) -> dict:
    """What validation chose, for the model file: the epoch, the fusion weight, the curve it was read off and
    the chosen epoch's validation metrics ({kind: {metric: value}})."""
    best = state.best
    history = state.history[best["epoch"]] if 0 <= best["epoch"] < len(state.history) else {}
    val: dict[str, dict[str, float]] = {}
    for key, value in history.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val":
            val.setdefault(parts[1], {})[parts[2]] = value
    return {
        "best_epoch": best["epoch"],
        "chosen_on": "val" if has_val else "none (no validation split: last epoch, fixed fusion weight)",
        "fusion_weight": best.get("fusion_weight", UNTUNED_FUSION_WEIGHT),
        "fusion_curve": best.get("fusion_curve", []),
        "val": val,
    }


def training_inputs(prepared: Prepared, paths: TrainPaths, params: Params) -> list[Path]:
    """The files training reads besides the images (train and val records and text, and a frozen backbone's
    cached outputs), for the resume fingerprint; never a test file."""
    files = []
    for name in ("train", "val"):
        if prepared.has(name):
            folder = prepared.folder(name)
            text = folder / TOKENS_FILE if params.text.finetune else features_file(paths.features, name)
            files += [folder / RECORDS_FILE, text]
            if params.image.frozen:
                files.append(features_file(paths.image_features, name))
    return files


def check_batch_fits(cfg: TrainConfig, num_ids: int) -> None:
    """Every batch holds train.batch_size / train.images_per_id identities (the identity sampler)."""
    ids_per_batch = cfg.batch_size // cfg.images_per_id
    if ids_per_batch > num_ids:
        raise ConfigError(
            f"train.batch_size: {cfg.batch_size} / train.images_per_id {cfg.images_per_id} = {ids_per_batch} "
            f"identities per batch, but the training split has {num_ids} identities"
        )


def epoch_seeds(seed: int, epoch: int, rank: int) -> tuple[int, int]:
    """(global RNG seed: dropout; augmentation generator seed) of one epoch on one rank."""
    first, second = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    return int(first), int(second)


def _stopped(what: str, kept: Path | None) -> NonFiniteLossError:
    """`what` went wrong (it says when): training stops, `kept` (the newest checkpoint) is what remains."""
    where = f"{kept} is kept" if kept is not None else "no checkpoint was written yet"
    return NonFiniteLossError(f"{what}: training stopped ({where}); lower train.lr or check the data")


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
    raise _stopped(f"{what} at epoch {epoch}, step {step}", kept)


class FiniteWeights:
    """Whether a model's weights and float buffers (BatchNorm statistics) are all finite, checked after every
    optimizer step: a step can break them while the loss that led to it was finite, and a model of NaN
    weights must never be validated or saved. One fused reduction (`torch._foreach_norm`: the L2 norm of
    every tensor, a NaN or an infinity makes it non-finite) and one host synchronisation per step, a small
    fraction of a percent of a step; a norm that overflows float32 (values of ~1e19 and more) counts as
    broken too, since such weights overflow the features. The L2 norm, not the max-abs one: torch's CPU
    kernel for ord=inf is several times slower."""

    def __init__(self, model: nn.Module) -> None:
        named = [*model.named_parameters(), *model.named_buffers()]
        self.named = [(name, tensor) for name, tensor in named if tensor.is_floating_point()]

    def first_broken(self) -> str | None:
        """'<name> is not finite' (or '... overflows') for the first broken tensor; None when all are fine."""
        norms = torch._foreach_norm([tensor.detach() for _, tensor in self.named])
        if bool(torch.stack(norms).isfinite().all()):
            return None
        for (name, tensor), norm in zip(self.named, norms, strict=True):
            if not norm.isfinite():
                if bool(tensor.detach().isfinite().all()):
                    return f"{name} overflows (its norm is beyond float32)"
                return f"{name} is not finite"
        return None

    def check(self, epoch: int, step: int, ctx: Dist, device: torch.device, kept: Path | None) -> None:
        """Raise NonFiniteLossError, on every rank at once, when a weight is broken on any rank."""
        broken = self.first_broken()
        if not all_agree(broken is None, ctx, device):
            what = broken or "a weight is not finite on another rank"
            raise _stopped(f"{what} after step {step} (epoch {epoch})", kept)


def parameters_trained(
    model: ACSA, step_fn: nn.Module, loader: DataLoader, device: torch.device, cache: CachedImages | None
) -> int:
    """How many weights the loss trains: those a backward pass of one batch reaches (a head the configuration
    does not use, or a frozen backbone, is not counted). In eval mode (BatchNorm statistics and dropout
    untouched) and without an optimizer step, so training is unchanged."""
    model.eval()
    images, rows = next(iter(loader))
    if cache is not None:
        inputs = cached_views(cache, images, torch.Generator().manual_seed(0), device)
    else:
        inputs = to_model_input(images.to(device))
    step_fn(inputs, rows)["loss"].backward()
    count = sum(p.numel() for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return count


# ---- the loop ----------------------------------------------------------------------------------------------


def fit(params: Params, paths: TrainPaths, ctx: Dist | None = None, device: torch.device | None = None):
    """Train (continuing from a good checkpoint in paths.checkpoints); returns (model, summary).

    `ctx` places this process in a multi-process run (acsa.training.distributed); on rank 0 the returned
    model holds the best epoch's weights, on the others the last epoch's.
    """
    cfg = params.train
    check_backbone_weights(params.image)  # before any data is read: a missing weights file stops at once
    ctx = ctx or Dist()
    device = device or resolve_device(cfg.device)
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(
            f"train.batch_size: {cfg.batch_size} is not divisible by {ctx.world_size} processes"
        )
    seed_everything(cfg.seed)
    set_threads(cfg.threads)
    prepared = load_prepared(paths.prepared)  # only the train and val folders are ever read here
    if cfg.sampler == "identity":
        check_batch_fits(cfg, len(prepared.split("train")["original_ids"]))
    train = read_split(prepared, paths.features, "train", params, paths.image_features)
    has_val = prepared.has("val")
    if not has_val and ctx.is_main:
        log.warning(
            "NO VALIDATION SPLIT: %s has none, so nothing can be chosen honestly: the LAST epoch is kept and "
            "the fusion weight is FIXED at %s (not tuned). Carve one from the training identities with "
            "data.val_ids_from_train > 0 and rerun the prepare stage",
            prepared.dataset("train"),
            UNTUNED_FUSION_WEIGHT,
        )
    val = None
    if ctx.is_main and has_val:
        val = read_split(prepared, paths.features, "val", params, paths.image_features)

    statistics = text_statistics(train.text, prepared.folder("train"), paths.features, train.records)
    model = ACSA(
        params, num_classes=len(train.records["original_ids"]), text_hidden_size=statistics[0].shape[0]
    )
    model.set_text_statistics(*statistics)
    if ctx.enabled:
        convert_batchnorm(model)
    model.to(device)
    optimizer = make_optimizer(model, cfg, params.text.lr)
    sampler = make_batch_sampler(
        cfg.sampler,
        train.records["labels"],
        cfg.batch_size,
        cfg.images_per_id,
        cfg.seed,
        ctx.rank,
        ctx.world_size,
    )
    cache = train.images if isinstance(train.images, CachedImages) else None
    if cache is not None:  # a frozen backbone: batches of image indices, read from its cached outputs
        rows = RowImageIndex(train.records["image_index"])
    else:
        rows = RowImages(train.images, train.records["image_index"])
    loader = DataLoader(rows, batch_sampler=sampler, num_workers=cfg.num_workers)
    total_steps = cfg.epochs * len(sampler)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    labels = torch.tensor(train.records["labels"])
    step_fn = wrap(TrainStep(model, train.text, labels, params.loss, ctx), ctx)
    weights = FiniteWeights(model)
    trained = parameters_trained(model, step_fn, loader, device, cache)
    if cfg.compile:
        step_fn = compile_step(step_fn)

    folder = CheckpointFolder(paths.checkpoints)
    config = params_to_dict(params)
    data = data_fingerprint(training_inputs(prepared, paths, params)) if ctx.is_main else ""
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
            logged = train_epoch(
                params, step_fn, loader, optimizer, state, epoch, total_steps, ctx, kept, weights, cache
            )
            if ctx.is_main:
                choices = None
                if val is not None:
                    try:
                        flat, choices = validate(model, params, val, device)
                    except NonFiniteError as err:  # finite weights whose features overflow
                        raise _stopped(f"{err} after epoch {epoch}", kept) from None
                    logged.update(flat)
                save_epoch(folder, model, optimizer, state, logged, config, data, choices)
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
        **selection_summary(state, has_val),
        "validation_curve": [epoch.get("val/selection_R1") for epoch in state.history],
        "trainable_parameters": trained,
        "threads": torch.get_num_threads(),
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
    weights: FiniteWeights,
    cache: CachedImages | None = None,
) -> dict[str, float]:
    """One epoch (or what `total_steps` leaves of it); returns its mean loss terms, throughput and lr.

    `kept` is the newest checkpoint, named when a non-finite loss or weight (`weights`, checked after every
    step) stops the run. With a frozen backbone's `cache` the loader gives image indices (training_step).
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
        losses = training_step(
            step_fn,
            optimizer,
            images,
            batch_rows,
            params.image,
            generator,
            device,
            check=functools.partial(
                check_finite, epoch=epoch, step=state.step, ctx=ctx, device=device, kept=kept
            ),
            cache=cache,
        )
        weights.check(epoch, state.step, ctx, device, kept)
        state.step += 1
        batches += 1
        for name, value in losses.items():
            sums[name] += float(value.detach())
    seconds = time.perf_counter() - started
    logged = {f"train/{name}": total / max(1, batches) for name, total in sums.items()}
    logged["train/pairs_per_second"] = batches * cfg.batch_size / max(seconds, 1e-9)
    logged["train/lr"] = optimizer.param_groups[-1]["lr"]
    return logged
