"""One training step, the same in the training loop and in the benchmarks: augment a batch, compute its loss
terms in one forward (`TrainStep`, which DistributedDataParallel wraps), back-propagate, update."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from acsa.config import ImageConfig, LossConfig
from acsa.data.image_tables import augment, to_model_input
from acsa.runtime import autocast
from acsa.training.distributed import Dist, gather_rows


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


def training_step(
    step_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    rows: Tensor,
    image_cfg: ImageConfig,
    generator: torch.Generator,
    device: torch.device,
    precision: str = "auto",
    channels_last: bool = False,
    check: Callable[[dict[str, Tensor]], None] | None = None,
) -> dict[str, Tensor]:
    """One optimizer step on a batch: images uint8 [b, 3, H, W] (moved to `device`), rows [b] (the CPU
    indices `step_fn` reads text and labels by) -> the loss terms. Augmentation draws from `generator`;
    `precision` as acsa.runtime.autocast; `check(losses)` runs before the backward pass (training stops
    there on a non-finite loss)."""
    images = augment(to_model_input(images.to(device)), image_cfg.hflip, image_cfg.translate, generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        losses = step_fn(images, rows)
    if check is not None:
        check(losses)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    return losses
