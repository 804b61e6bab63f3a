"""Device, threads, seeds and mixed precision: resolved from params, never hard-coded."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from acsa.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        visible = torch.cuda.device_count()
        raise ConfigError(f"train.device: {name!r} requested but {visible} GPUs are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} requested but MPS is not available")
    return device


def set_threads(threads: int) -> None:
    """Set CPU threads (0 keeps torch's default) and flush denormals (they slowed CPU training badly once)."""
    if threads > 0:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """`auto`: bf16 autocast on CUDA, full precision on the CPU (bf16 matmuls are slow on many CPUs);
    `bf16`: bf16 autocast on any device; `fp32`: full precision."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision: {precision!r} is not one of auto, bf16, fp32")
    return contextlib.nullcontext()
