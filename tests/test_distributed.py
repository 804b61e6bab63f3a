"""Multi-process training: `torchrun --nproc_per_node 2 -m acsa.train` on the CPU (gloo) trains what one
process trains on the same global batches, and only rank 0 writes outputs.

Why the comparison holds, and how tightly: each rank gathers all ranks' features before the loss and
BatchNorm uses global-batch statistics (acsa.training.distributed), so the gradients are those of one process
up to float rounding. Both runs train in float64 (the hooks set torch's default dtype; images and text
features are promoted by the first operation with a float64 tensor): in float32 the rounding alone, not a
difference in the computation, separates the two runs by 1e-3 of the gradient after two steps and by up to
16% of a weight's update after three (a from-scratch network at lr 0.02 amplifies a perturbation about 100x
per step; a float32 run differs from its own float64 twin by as much as from the two-process run). Which
parameters cross a fixed float32 tolerance then depends on the CPU's kernels (AVX2 passed 1%, AVX-512 did
not). In float64 the two runs agree to about 1e-9 of each update, so the bound below is tight and portable.
Both runs use plain SGD in place of AdamW: Adam divides each gradient by its own magnitude, which turns
rounding noise in gradients that are zero in exact arithmetic (the biases just before a BatchNorm) into
full-size steps. Dropout and augmentation are switched off, since each rank draws its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import END_TO_END, REPO, SMOKE_OVERRIDES
from torch import nn

from acsa import train
from acsa.storage.checkpoint import load_checkpoint
from acsa.training.distributed import GlobalBatchNorm, convert_batchnorm

# The optimizer swap and float64, for the torchrun workers; the single-process runs get them in the test.
SGD_HOOK = """
import sys

import torch


def sgd(params, lr, weight_decay, **_):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


torch.optim.AdamW = sgd
torch.set_default_dtype(torch.float64)
from acsa import train
from acsa.cli import run_stage

run_stage(train.main, sys.argv[1:])
"""
COMPARABLE = [
    *END_TO_END,  # the backbone trained too (its BatchNorm over the global batch), no cached views
    "model.dropout=0.0",
    "image.hflip=false",
    "image.translate=0.0",
    "train.epochs=1",
    "train.max_steps=3",
    "train.threads=1",
    "train.device=cpu",
]


def sgd(params, lr: float, weight_decay: float, **_) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


def train_args(smoke_run: Path, root: Path, overrides: list[str]) -> list[str]:
    sets = [arg for o in [*SMOKE_OVERRIDES, *COMPARABLE, *overrides] for arg in ("--set", o)]
    return [
        "--params", str(REPO / "params.yaml"), *sets,
        "--prepared", str(smoke_run / "prepared"),
        "--features", str(smoke_run / "features"),
        "--image-features", str(smoke_run / "image_features"),
        "--out", str(root / "model"),
        "--checkpoints", str(root / "checkpoints"),
        "--live", str(root / "live"),
    ]  # fmt: skip


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def final_state(root: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(root / "model" / "model.safetensors").model_state


def test_two_processes_train_like_one(
    smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = tmp_path / "sgd_hook.py"
    hook.write_text(SGD_HOOK)
    ddp_root = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(hook)]
    result = subprocess.run(
        [*command, *train_args(smoke_run, ddp_root, ["train.lr=0.02"])],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2 on cpu (gloo)" in result.stderr
    assert "rank 1 of 2" not in result.stderr  # rank 1 logs warnings only

    monkeypatch.setattr(torch.optim, "AdamW", sgd)
    with default_dtype(torch.float64):
        train.main(train_args(smoke_run, tmp_path / "one", ["train.lr=0.02"]))
        train.main(train_args(smoke_run, tmp_path / "init", ["train.lr=0.0"]))  # SGD, lr 0: initial weights

    two, one, init = final_state(ddp_root), final_state(tmp_path / "one"), final_state(tmp_path / "init")
    assert two.keys() == one.keys()
    for name, weights in one.items():
        if not weights.is_floating_point():
            assert torch.equal(two[name], weights), name  # e.g. BatchNorm's num_batches_tracked
            continue
        assert weights.dtype == torch.float64 and two[name].dtype == torch.float64, name
        moved = (weights - init[name]).norm()  # the update of three steps (running statistics included)
        # 1e-12: the pre-BatchNorm biases, whose exact gradient is 0, move by rounding noise alone
        assert (two[name] - weights).norm() <= 1e-6 * moved + 1e-12, name

    ddp_summary = json.loads((ddp_root / "model" / "train_summary.json").read_text())
    assert ddp_summary["steps"] == 3 and ddp_summary["best_epoch"] == 0
    assert json.loads((ddp_root / "live" / "metrics.json").read_text())["step"] == 0
    assert list((ddp_root / "checkpoints").iterdir()) == []
    assert sorted(p.name for p in ddp_root.iterdir()) == ["checkpoints", "live", "model"]


def test_convert_batchnorm_keeps_parameters_buffers_and_frozen_flags() -> None:
    neck = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16))
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), neck)
    model[2][1].bias.requires_grad_(False)  # a BNNeck
    with torch.no_grad():
        model[1].running_mean.fill_(0.5)
        model[1].weight.fill_(2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_batchnorm(model)
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[2][1], GlobalBatchNorm)
    assert all(torch.equal(before[k], v) for k, v in converted.state_dict().items())
    assert converted.state_dict().keys() == before.keys()
    assert not converted[2][1].bias.requires_grad and converted[2][1].weight.requires_grad


def test_global_batchnorm_without_process_group_is_batchnorm() -> None:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    converted = convert_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    images = torch.randn(6, 3, 4, 2)
    for mode in (True, False):
        plain.train(mode)
        converted.train(mode)
        torch.testing.assert_close(converted(images), plain(images))
    torch.testing.assert_close(converted.running_var, plain.running_var)
