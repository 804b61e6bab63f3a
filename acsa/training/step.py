"""One training step, the same in the training loop and in the benchmarks: augment a batch, compute its loss
terms in one forward (`TrainStep`, which DistributedDataParallel wraps), back-propagate, update.

Each phase runs inside a named `torch.profiler.record_function` range (PHASES), so that a profile of the
step attributes time to phases (benchmarks/train_profile.py); outside a profiler a range costs a few
microseconds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from acsa.config.sections import ImageConfig, LossConfig
from acsa.data.image_features import CachedImages
from acsa.data.image_tables import augment, to_model_input
from acsa.model.features import BackboneOutputs
from acsa.runtime import autocast
from acsa.training.distributed import Dist, gather_rows

log = logging.getLogger(__name__)

# The profiler ranges of a step, in order (TrainStep.forward's three run inside the DDP-wrapped forward).
PHASES = ("augment", "image_encoder", "text", "losses", "backward", "optimizer")


def phase(name: str) -> record_function:
    return record_function(f"acsa.{name}")


class TrainStep(nn.Module):
    """A batch -> its loss terms, as one forward. DistributedDataParallel wraps this module, so the loss of
    the gathered global batch is inside the forward it synchronises (acsa.training.distributed says why)."""

    def __init__(
        self,
        model: nn.Module,
        text_source: Any,
        labels: Tensor,
        loss_cfg: LossConfig,
        ctx: Dist | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.text_source = text_source
        self.labels = labels  # [N] identity of every training row, on the CPU
        self.loss_cfg = loss_cfg
        self.ctx = ctx or Dist()

    def forward(self, images: Tensor | BackboneOutputs, rows: Tensor) -> dict[str, Tensor]:
        """images [b, 3, H, W] on the device (or a frozen backbone's cached outputs of them), rows [b] (CPU
        indices of training rows) -> loss terms."""
        device = images.pooled.device if isinstance(images, BackboneOutputs) else images.device
        with phase("image_encoder"):
            image_feats = self.model.encode_image(images)
        with phase("text"):
            text_feats = self.text_source.encode(self.model, rows, device)
        with phase("losses"):
            labels = self.labels[rows].to(device)
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


def cached_views(
    cache: CachedImages, image_index: Tensor, generator: torch.Generator, device: torch.device
) -> BackboneOutputs:
    """A frozen backbone's outputs for the images image_index [b], each in one of its cached views drawn
    from `generator` (the augmentation of the two-stage protocol: acsa.model.backbone_cache)."""
    views = torch.randint(cache.views, (len(image_index),), generator=generator)
    rows = cache.rows(image_index, views)
    return BackboneOutputs(**{name: value.to(device) for name, value in rows.items()})


def training_step(
    step_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    rows: Tensor,
    image_cfg: ImageConfig,
    generator: torch.Generator,
    device: torch.device,
    precision: str = "auto",
    check: Callable[[dict[str, Tensor]], None] | None = None,
    cache: CachedImages | None = None,
) -> dict[str, Tensor]:
    """One optimizer step on a batch: images uint8 [b, 3, H, W] (moved to `device`), rows [b] (the CPU
    indices `step_fn` reads text and labels by) -> the loss terms. Augmentation draws from `generator`;
    `precision` as acsa.runtime.autocast; `check(losses)` runs before the backward pass (training stops
    there on a non-finite loss). With a frozen backbone's `cache`, `images` holds the rows' image indices
    [b] and each image is read in a cached view drawn from `generator` instead."""
    with phase("augment"):
        if cache is not None:
            images = cached_views(cache, images, generator, device)
        else:
            images = augment(
                to_model_input(images.to(device)), image_cfg.hflip, image_cfg.translate, generator
            )
    with autocast(device, precision):
        losses = step_fn(images, rows)
    if check is not None:
        check(losses)
    optimizer.zero_grad(set_to_none=True)
    with phase("backward"):
        losses["loss"].backward()
    with phase("optimizer"):
        optimizer.step()
    return losses


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's inductor backend would build its CPU kernels with, or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # not found, or an inductor without this helper: no compiled step
        return None


def compile_step(step_fn: nn.Module) -> nn.Module:
    """`train.compile`: the step's forward (encoders and losses; autograd derives the backward) through
    torch.compile's inductor backend, compiled on the first steps of each process. Without a C++ compiler
    training runs eagerly, with a warning; so does any part whose compilation fails (dynamo's fallback)."""
    compiler = cpp_compiler()
    if compiler is None:
        log.warning("train.compile: no C++ compiler for torch.compile (inductor): training without it")
        return step_fn
    log.info("train.compile: compiling the training step with inductor (%s)", compiler)
    torch._dynamo.config.suppress_errors = True
    step_fn.compile()
    return step_fn
