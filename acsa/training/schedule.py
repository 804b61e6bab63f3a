"""The optimiser, its schedule and parameter groups: a step-based learning-rate factor (linear warm-up, then
cosine decay or steps at epoch milestones) and AdamW groups per part of the model."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn

from acsa.config.sections import TrainConfig


def learning_rate_factor(step: int, epoch: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay or steps at milestones."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def parameter_groups(model: nn.Module, cfg: TrainConfig, text_lr: float) -> list[dict]:
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


def make_optimizer(model: nn.Module, cfg: TrainConfig, text_lr: float) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`, in torch's fused implementation: one kernel updates every parameter
    (the default on the CPU, a loop of several small operations per parameter, took 3x as long: BENCHMARKS.md,
    training throughput). The update is AdamW's, equal up to float rounding."""
    groups = parameter_groups(model, cfg, text_lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
