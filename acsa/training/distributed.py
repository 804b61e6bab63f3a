"""Multi-process training on PyTorch's own distributed engine: torchrun + DistributedDataParallel.

A run is distributed when its launcher sets WORLD_SIZE > 1 (`torchrun --nproc_per_node N -m acsa.train`, or
`launch` below). Semantics, chosen so that N processes train the model one process would train:
- `train.batch_size` is the global batch; rank r trains on its contiguous slice of every global batch (the
  identity sampler's rank/world_size);
- before the loss, each rank gathers the features and labels of all ranks (`gather_rows`), so CMPM, CMPC and
  the local loss see the same B x B pairs, in the same order, as one process with the whole batch; the
  gather's backward sums the gradients all ranks send to a rank's own rows, and DistributedDataParallel's
  averaging of the parameter gradients then gives exactly the one-process gradient (every rank back-propagates
  the same global loss);
- BatchNorm layers become `GlobalBatchNorm`: statistics over the global batch, on any device and backend
  (torch's SyncBatchNorm refuses CPU tensors, and the CPU is where the tests run);
- rank 0 alone validates, writes checkpoints, DVCLive logs and the model; the other ranks wait for it.

Axes: b rows of a rank's batch, n ranks, c channels.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from acsa.errors import ConfigError
from acsa.runtime import resolve_device

log = logging.getLogger(__name__)

# Rank 0 validates and writes checkpoints while the others wait at a barrier: allow for a long validation.
BARRIER_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched() -> bool:
    """True inside a process started by torchrun (or `launch`) for a run of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_env() -> Dist:
    """Rank, world size and local rank as torchrun sets them (a single process when they are absent)."""
    try:
        return Dist(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as err:
        raise ConfigError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({err})") from None


def device_for(name: str, ctx: Dist) -> torch.device:
    """`train.device` for this rank: with several processes, `auto`/`cuda` mean the GPU of the local rank."""
    device = resolve_device(name)
    if ctx.enabled and device.type == "cuda" and device.index is None:
        if ctx.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: local rank {ctx.local_rank} has no GPU ({torch.cuda.device_count()} "
                "visible); start at most one process per GPU (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[tuple[Dist, torch.device]]:
    """Join the process group torchrun describes (NCCL for GPUs, gloo for the CPU); leave it on exit."""
    ctx = from_env()
    device = device_for(device_name, ctx)
    if not ctx.enabled:
        yield ctx, device
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
    if not ctx.is_main:  # one log, one progress bar: rank 0's
        logging.getLogger("acsa").setLevel(logging.WARNING)
    log.info("rank %d of %d on %s (%s)", ctx.rank, ctx.world_size, device, backend)
    try:
        yield ctx, device
    finally:
        dist.destroy_process_group()


def launch(nproc_per_node: int, module: str, argv: list[str]) -> int:
    """Run `python -m module argv` in `nproc_per_node` processes on this machine, as torchrun would; returns
    the exit status (the first failed process's). For several machines, run torchrun on each (README)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    log.info("starting %d processes: torchrun --standalone -m %s", nproc_per_node, module)
    try:
        torchrun(["--standalone", f"--nproc_per_node={nproc_per_node}", "-m", module, *argv])
    except ChildFailedError as err:
        codes = [failure.exitcode for failure in err.failures.values()]
        log.error("%d of %d processes failed (exit status %s)", len(codes), nproc_per_node, codes)
        return next((code for code in codes if code > 0), 1)
    return 0


# ---- collectives -------------------------------------------------------------------------------------------


class _GatherRows(torch.autograd.Function):
    """All ranks' tensors concatenated along dim 0; the gradient of a rank's rows is summed over all ranks."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        ctx.rows = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)  # [n * b, ...]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on every rank's rows
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_rows(tensor: Tensor, ctx: Dist) -> Tensor:
    """Concatenate the ranks' tensors (equal shapes) in rank order, differentiably for float tensors."""
    if not ctx.enabled:
        return tensor
    if tensor.dtype == torch.bool:  # gloo has no bool all_gather
        return gather_rows(tensor.to(torch.uint8), ctx).bool()
    if tensor.is_floating_point() and tensor.requires_grad:
        return _GatherRows.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_agree(flag: bool, ctx: Dist, device: torch.device) -> bool:
    """True when `flag` holds on every rank (so that all ranks take the same branch)."""
    if not ctx.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)


def broadcast_int(value: int, ctx: Dist, device: torch.device) -> int:
    """Rank 0's `value` on every rank."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


# ---- BatchNorm over the global batch -----------------------------------------------------------------------


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all ranks (any device, any backend).

    Two passes, each one all-reduce of c+1 numbers: the mean, then the variance around it (numerically like
    one process's batch_norm). Outside training, or in a single process, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if not (
            use_batch_stats and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]  # every axis but the channels
        shape = [1, -1] + [1] * (input.dim() - 2)
        # statistics in at least fp32 (the input is bf16 under autocast)
        x = input.to(torch.promote_types(input.dtype, torch.float32))
        count = x.new_tensor([input.numel() / input.shape[1]])
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), count]))  # [c + 1]
        total = sums[-1]
        mean = sums[:-1] / total  # [c]
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims)) / total  # biased, as batch_norm normalises
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (total / (total - 1).clamp_min(1))
                self.running_mean.lerp_(mean.to(self.running_mean), factor)
                self.running_var.lerp_(unbiased.to(self.running_var), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of `module` by a GlobalBatchNorm with the same parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        converted.load_state_dict(module.state_dict())
        if module.affine:
            converted.weight.requires_grad_(module.weight.requires_grad)
            converted.bias.requires_grad_(module.bias.requires_grad)
        converted.train(module.training)
        state = list(module.state_dict().values())
        return converted.to(state[0].device) if state else converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child))
    return module


def wrap(step: nn.Module, ctx: Dist) -> nn.Module:
    """DistributedDataParallel around the module whose forward computes the whole training step.

    No device_ids: DDP would move every input to the GPU, and the step's row indices address CPU tables.
    find_unused_parameters: ablations leave parts of the model out of the loss (model.use_local: false
    leaves the phrase projection without a gradient; use_regions / use_windows their heads).
    """
    if not ctx.enabled:
        return step
    return nn.parallel.DistributedDataParallel(step, find_unused_parameters=True)
