"""The training step's speed-ups leave what is learned unchanged, and `train.compile` falls back to eager.

The default model fed channels_last images, with torch's fused AdamW (the training loop's step) gives the
losses of the plain step (contiguous layout, torch's default AdamW) on the same batches, up to float32
rounding.

How close is "up to rounding": from the same weights, one forward differs by ~1e-7 (the channels_last
convolutions sum in another order); every update then amplifies the difference (a from-scratch network, faster
at a larger learning rate). So the first two steps' losses (before and after one update) are held within 1e-5
of each loss, and four steps' within 1%: a wrong layout or optimizer would move them far more. Dropout and
augmentation are off.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import torch

from acsa.model.acsa import ACSA
from acsa.storage.checkpoint import load_checkpoint, save_checkpoint
from acsa.training import step
from acsa.training.schedule import make_optimizer as training_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of the repository
from benchmarks.training import (  # noqa: E402
    TRAIN_IDS,
    BatchText,
    build_model,
    load_config,
    make_optimizer,
    random_batch,
)

STEPS, BATCH = 4, 8
CPU = torch.device("cpu")
NO_RANDOMNESS = ["model.dropout=0.0", "image.hflip=false", "image.translate=0.0"]
# the end-to-end step (the backbone trained: channels_last matters for its convolutions), the previous
# default's backbone at its size
END_TO_END_STEP = [
    "image.backbone=resnet10t",
    "image.backbone_kwargs={channels: [32, 64, 128, 256], stem_width: 16}",
    "image.init=scratch",
    "image.pretrained_path=null",
    "image.frozen=false",
    "image.height=128",
    "image.width=64",
]


def losses_of_steps(model: ACSA, optimizer: torch.optim.Optimizer, batches, params) -> torch.Tensor:
    """[STEPS, terms] loss terms of optimizer steps on `batches`, in float64."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.arange(BATCH)
    out = []
    for batch in batches:
        step_fn = step.TrainStep(model, BatchText(batch.text, False), batch.labels, params.loss)
        losses = step.training_step(step_fn, optimizer, batch.images, rows, params.image, generator, CPU)
        out.append(torch.stack([value.detach().double() for value in losses.values()]))
    return torch.stack(out)


def test_channels_last_and_fused_adamw_give_the_plain_steps_losses() -> None:
    params = load_config("default", False, overrides=[*END_TO_END_STEP, *NO_RANDOMNESS])
    torch.manual_seed(0)
    initial = build_model(params, TRAIN_IDS["default"]).train()
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(params, BATCH, generator) for _ in range(STEPS)]

    fast = copy.deepcopy(initial)  # the training loop's step
    assert fast.image_encoder.memory_format == torch.channels_last
    fast_optimizer = training_optimizer(fast, params.train, params.text.lr)
    assert fast_optimizer.defaults["fused"]
    fast_losses = losses_of_steps(fast, fast_optimizer, batches, params)

    plain = copy.deepcopy(initial)
    plain.image_encoder.memory_format = torch.contiguous_format
    plain_losses = losses_of_steps(plain, make_optimizer(plain, params, fused=False), batches, params)

    assert torch.isfinite(fast_losses).all()
    torch.testing.assert_close(fast_losses[0], plain_losses[0], rtol=1e-5, atol=1e-6)
    # the second step's losses show the first update: a wrong optimizer would move them by far more than 1e-5
    relative = (fast_losses - plain_losses).abs() / plain_losses.abs()
    assert relative[1].max() <= 1e-5, (fast_losses, plain_losses)
    # later steps drift apart: training amplifies the float32 rounding of the two convolution orders (at
    # train.lr 2e-3 the fourth step's local loss differs by ~0.15% of itself, at 1e-3 by ~0.02%)
    assert relative.max() <= 1e-2, (fast_losses, plain_losses)


def test_steps_after_a_checkpoint_round_trip_are_the_uninterrupted_steps(tmp_path: Path) -> None:
    """The optimizer state comes back from a checkpoint contiguous: it must still pair with its parameters
    element for element (fused AdamW reads a parameter and its state as flat buffers of one layout)."""
    params = load_config("default", False, overrides=END_TO_END_STEP)
    torch.manual_seed(0)
    model = build_model(params, TRAIN_IDS["default"]).train()
    optimizer = training_optimizer(model, params.train, params.text.lr)
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(params, BATCH, generator) for _ in range(3)]
    losses_of_steps(model, optimizer, batches[:2], params)
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), optimizer.state_dict(), {})
    checkpoint = load_checkpoint(tmp_path / "c.safetensors")
    resumed = build_model(params, TRAIN_IDS["default"]).train()
    resumed.load_state_dict(checkpoint.model_state)
    resumed_optimizer = training_optimizer(resumed, params.train, params.text.lr)
    resumed_optimizer.load_state_dict(checkpoint.optimizer_state)
    torch.manual_seed(1)  # dropout
    losses_of_steps(model, optimizer, batches[2:], params)
    torch.manual_seed(1)
    losses_of_steps(resumed, resumed_optimizer, batches[2:], params)
    resumed_state = resumed.state_dict()
    for name, weights in model.state_dict().items():
        assert torch.equal(weights, resumed_state[name]), name


def test_compile_step_falls_back_to_eager_without_a_compiler(monkeypatch, caplog) -> None:
    monkeypatch.setattr(step, "cpp_compiler", lambda: None)
    module = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING, logger="acsa.training.step"):
        assert step.compile_step(module) is module
    assert module._compiled_call_impl is None  # eager
    assert "no C++ compiler" in caplog.text


def test_compile_step_compiles_the_forward_where_a_compiler_exists(monkeypatch) -> None:
    monkeypatch.setattr(step, "cpp_compiler", lambda: "c++")
    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)  # compile_step sets it
    module = step.compile_step(torch.nn.Linear(2, 2))
    assert module._compiled_call_impl is not None  # compiled lazily, on the first call
    assert torch._dynamo.config.suppress_errors  # a failed compilation falls back to eager
