"""Resume after a crash: kill -9 mid-epoch, run the same command again, get the uninterrupted run's result.

The reference is the session's smoke run (tests/conftest.py), trained without interruption with the same
arguments; a continued run on the CPU must reproduce its weights bit for bit. Also: the resume decisions
(other configuration or data, missing best weights), and a non-finite loss stopping the run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, SMOKE_OVERRIDES
from safetensors.torch import save_file
from torch import nn

from acsa import train
from acsa.cli import run_stage
from acsa.data.sampler import IdentityBatchSampler
from acsa.storage.checkpoint import check_checkpoint, load_checkpoint, save_checkpoint
from acsa.training.resume import CheckpointFolder, RunState, resume_checkpoint, save_epoch

TIMING = ("pairs_per_second", "seconds")  # wall-clock measurements: the only values allowed to differ

# Runs acsa.train's command line, but blocks for good right before the optimizer step ACSA_TEST_PAUSE_AT_STEP
# after writing ACSA_TEST_MARKER: the test then kills the process there, mid-epoch.
PAUSE_HOOK = """
import os, sys, time
from pathlib import Path

import acsa.training.loop as loop

pause_at, marker = int(os.environ["ACSA_TEST_PAUSE_AT_STEP"]), Path(os.environ["ACSA_TEST_MARKER"])
check_finite = loop.check_finite


def check_then_pause(losses, **where):
    check_finite(losses, **where)
    if where["step"] == pause_at:
        marker.write_text(f"epoch {where['epoch']} step {where['step']}")
        time.sleep(3600)


loop.check_finite = check_then_pause
from acsa import train
from acsa.cli import run_stage

run_stage(train.main, sys.argv[1:])
"""


def train_args(smoke_run: Path, root: Path, overrides: list[str] = ()) -> list[str]:
    sets = [arg for o in [*SMOKE_OVERRIDES, *overrides] for arg in ("--set", o)]
    return [
        "--params", str(REPO / "params.yaml"), *sets,
        "--prepared", str(smoke_run / "prepared"),
        "--features", str(smoke_run / "features"),
        "--image-features", str(smoke_run / "image_features"),
        "--out", str(root / "model"),
        "--checkpoints", str(root / "checkpoints"),
        "--live", str(root / "live"),
    ]  # fmt: skip


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    return value


def live_curves(live: Path) -> dict[str, list[list[str]]]:
    """DVCLive's per-epoch TSV files as rows of (step, value), timestamps and timings left out."""
    curves = {}
    for tsv in sorted((live / "plots" / "metrics").rglob("*.tsv")):
        name = tsv.relative_to(live).as_posix()
        if not any(t in name for t in TIMING):
            rows = [line.split("\t") for line in tsv.read_text().splitlines()]
            columns = [rows[0].index("step"), len(rows[0]) - 1]
            curves[name] = [[row[c] for c in columns] for row in rows]
    return curves


def steps_per_epoch(smoke_run: Path) -> int:
    labels = json.loads((smoke_run / "prepared" / "train" / "records.json").read_text())["labels"]
    return len(IdentityBatchSampler(labels, batch_size=8, images_per_id=2, seed=0))


def run_until_paused(args: list[str], step: int, tmp_path: Path) -> None:
    """Start `python -m acsa.train args` (through PAUSE_HOOK), wait until it blocks at `step`, kill -9 it."""
    hook, marker, log_file = tmp_path / "pause_hook.py", tmp_path / "paused", tmp_path / "killed_run.log"
    hook.write_text(PAUSE_HOOK)
    env = {**os.environ, "ACSA_TEST_PAUSE_AT_STEP": str(step), "ACSA_TEST_MARKER": str(marker)}
    with open(log_file, "w") as output:
        process = subprocess.Popen(
            [sys.executable, str(hook), *args], cwd=tmp_path, env=env, stdout=output, stderr=output
        )
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert process.poll() is None, f"training ended before step {step}:\n{log_file.read_text()}"
                assert time.monotonic() < deadline, "training did not reach the pause step in 300 s"
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL


def test_killed_run_continues_to_the_uninterrupted_result(
    smoke_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = train_args(smoke_run, tmp_path)
    per_epoch = steps_per_epoch(smoke_run)
    run_until_paused(args, step=per_epoch + 3, tmp_path=tmp_path)  # epoch 1, after 3 of its steps

    folder = CheckpointFolder(tmp_path / "checkpoints")
    assert folder.epoch_path(0).is_file() and not folder.epoch_path(1).exists()
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["step"] == 0
    assert not (tmp_path / "model").exists()
    # Newer files the next run must not trust: cut short, foreign, and a write the kill interrupted.
    folder.epoch_path(1).write_bytes(folder.epoch_path(0).read_bytes()[:-1000])
    save_file({"w": torch.zeros(2)}, str(folder.epoch_path(2)))
    (folder.root / ".epoch-001.safetensors.x1y2.tmp").write_bytes(b"half a checkpoint")

    with caplog.at_level(logging.INFO):
        train.main(args)  # the same command again (in-process: the process boundary was the kill)
    messages = caplog.text
    assert "epoch-002.safetensors: a safetensors file without acsa metadata" in messages
    assert "epoch-001.safetensors: truncated" in messages or "not fully covered" in messages
    assert f"resuming from {folder.epoch_path(0)}" in messages

    resumed = load_checkpoint(tmp_path / "model" / "model.safetensors")
    uninterrupted = load_checkpoint(smoke_run / "model" / "model.safetensors")
    assert resumed.model_state.keys() == uninterrupted.model_state.keys()
    for name, weights in uninterrupted.model_state.items():
        assert torch.equal(resumed.model_state[name], weights), name
    summary = resumed.meta["summary"]
    assert summary["resumed_after_epoch"] == 0
    assert without_timing(summary) == without_timing(
        {**uninterrupted.meta["summary"], "resumed_after_epoch": 0}
    )
    live_metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    reference_metrics = json.loads((smoke_run / "live" / "metrics.json").read_text())
    assert without_timing(live_metrics) == without_timing(reference_metrics)
    assert live_curves(tmp_path / "live") == live_curves(smoke_run / "live")  # one row per epoch, no repeats
    assert list((tmp_path / "checkpoints").iterdir()) == []  # finished: the next run starts afresh


def test_nonfinite_loss_stops_with_one_line_and_keeps_the_last_checkpoint(
    smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from acsa.model.acsa import ACSA

    per_epoch, calls = steps_per_epoch(smoke_run), []
    losses = ACSA.losses

    def diverging(self, *args):
        out = losses(self, *args)
        calls.extend([1] if self.training else [])  # not the eval-mode pass that counts trained weights
        if len(calls) > per_epoch + 1:  # from the second step of epoch 1
            out["cmpm_loss"] = out["cmpm_loss"] * float("nan")
        return out

    monkeypatch.setattr(ACSA, "losses", diverging)
    with pytest.raises(SystemExit) as exited:
        run_stage(train.main, train_args(smoke_run, tmp_path))
    assert exited.value.code == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    kept = tmp_path / "checkpoints" / "epoch-000.safetensors"
    assert errors == [
        f"error: cmpm_loss is nan at epoch 1, step {per_epoch + 1}: training stopped ({kept} is kept); "
        "lower train.lr or check the data"
    ]
    check_checkpoint(kept)
    assert load_checkpoint(kept).meta["step"] == per_epoch
    assert not (tmp_path / "checkpoints" / "epoch-001.safetensors").exists()
    assert not (tmp_path / "model").exists()


# ---- resume decisions, without training -------------------------------------------------------------------


CONFIG = {"train": {"lr": 0.1, "threads": 2, "epochs": 4}, "model": {"embed_dim": 8}}


def write_epochs(folder: CheckpointFolder, r1_per_epoch: list[float], config: dict = CONFIG) -> RunState:
    """What `fit` writes after each epoch, for a tiny model whose validation R1 is given per epoch."""
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    state = RunState()
    for epoch, r1 in enumerate(r1_per_epoch):
        with torch.no_grad():
            model.weight.fill_(epoch)
        state.epoch, state.step = epoch, 10 * (epoch + 1)
        save_epoch(folder, model, optimizer, state, {"val/selection_R1": r1}, config, "data-1")
    return state


def test_best_weights_outlive_every_epoch_file_that_names_them(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path)
    state = write_epochs(folder, [10.0, 30.0, 20.0, 25.0])
    assert state.best == {"epoch": 1, "val/selection_R1": 30.0}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best-epoch-001.safetensors", "epoch-002.safetensors", "epoch-003.safetensors"]

    # Killed after writing a new best but before the epoch file that names it: epoch 3's best is intact.
    save_checkpoint(folder.best_path(4), {"weight": torch.full((2, 2), 4.0)}, None, {})
    checkpoint = resume_checkpoint(folder, CONFIG, "data-1")
    assert checkpoint.meta["epoch"] == 3 and checkpoint.meta["best"]["epoch"] == 1
    assert load_checkpoint(folder.best_path(1)).model_state["weight"].eq(1).all()
    assert RunState.from_meta(checkpoint.meta) == RunState(4, 40, state.best, state.history)


@pytest.mark.parametrize(
    ("config", "data", "why"),
    [
        ({**CONFIG, "train": {**CONFIG["train"], "lr": 0.2}}, "data-1", "another configuration (train.lr)"),
        ({**CONFIG, "model": {"embed_dim": 8, "extra": 1}}, "data-1", "another configuration (model.extra)"),
        (CONFIG, "data-2", "other data"),
    ],
)
def test_other_configuration_or_data_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: dict, data: str, why: str
) -> None:
    folder = CheckpointFolder(tmp_path)
    write_epochs(folder, [1.0, 2.0])
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(folder, config, data) is None
    assert why in caplog.text and "starting afresh" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_speed_settings_and_half_written_files_do_not_block_resume(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path)
    write_epochs(folder, [1.0])
    (tmp_path / ".epoch-001.safetensors.abc.tmp").write_bytes(b"partial")
    faster = {**CONFIG, "train": {**CONFIG["train"], "num_workers": 8, "parallel_runs": 4}}
    assert resume_checkpoint(folder, faster, "data-1").meta["epoch"] == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_another_thread_count_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The thread count changes how float sums are split, so the results: no run continues under another."""
    folder = CheckpointFolder(tmp_path)
    write_epochs(folder, [1.0])
    other = {**CONFIG, "train": {**CONFIG["train"], "threads": 16}}
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(folder, other, "data-1") is None
    assert "train.threads" in caplog.text


def test_missing_best_weights_fall_back_to_the_resumed_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = CheckpointFolder(tmp_path)
    write_epochs(folder, [5.0, 1.0])
    folder.best_path(0).unlink()
    with caplog.at_level(logging.WARNING):
        checkpoint = resume_checkpoint(folder, CONFIG, "data-1")
    assert "taking epoch 1 as the best so far" in caplog.text
    assert checkpoint.meta["best"] == {"epoch": 1, "val/selection_R1": 1.0}
    assert load_checkpoint(folder.best_path(1)).model_state["weight"].eq(1).all()


def test_checkpoint_of_an_older_format_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = CheckpointFolder(tmp_path)
    old_meta = {"config": CONFIG, "epoch": 0, "step": 8, "best": {"epoch": 0}, "rng": {}, "metrics": {}}
    save_checkpoint(folder.epoch_path(0), {"w": torch.zeros(1)}, {"state": {}, "param_groups": []}, old_meta)
    save_checkpoint(tmp_path / "best.safetensors", {"w": torch.zeros(1)}, None, old_meta)
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(folder, CONFIG, "data-1") is None
    assert "older version of acsa: starting afresh" in caplog.text
    assert list(tmp_path.iterdir()) == []
