"""Checkpoints: exact resume (model, AdamW); broken, foreign and pickled files refused; atomic writes."""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import acsa.storage.checkpoint as ckpt
from acsa.errors import CheckpointError
from acsa.storage.checkpoint import load_checkpoint, save_checkpoint
from acsa.training.resume import CheckpointFolder, latest_good_checkpoint


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 3))


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, start: int, steps: int) -> None:
    """Data and dropout are seeded by the step (as training seeds them by the epoch), so model and optimizer
    state are all a resumed run needs."""
    for step in range(start, start + steps):
        seed_all(step)
        inputs = torch.randn(5, 6) + float(np.random.rand()) + random.random()
        loss = model(inputs).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def make_run(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = make_model()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.05)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def save_trained(path: Path, steps: int = 3) -> Path:
    model, optimizer = make_run(0)
    train_steps(model, optimizer, 0, steps)
    meta = {"epoch": steps}
    save_checkpoint(path, model.state_dict(), optimizer.state_dict(), meta)
    return path


def test_resume_from_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    uninterrupted, optimizer = make_run(0)
    train_steps(uninterrupted, optimizer, 0, 6)

    first, optimizer = make_run(0)
    train_steps(first, optimizer, 0, 3)
    meta = {
        "config": {"train": {"lr": 0.01, "milestones": [8, 15], "note": None}},
        "epoch": 3,
        "step": 3,
        "metrics": {"R1": 0.1, "loss": float("inf")},
    }
    save_checkpoint(tmp_path / "epoch-3.safetensors", first.state_dict(), optimizer.state_dict(), meta)
    expected_optimizer_state = optimizer.state_dict()
    seed_all(99)  # a fresh process would start from other RNG states

    loaded = load_checkpoint(tmp_path / "epoch-3.safetensors")
    resumed, optimizer = make_run(42)  # different initial weights, overwritten by the checkpoint
    resumed.load_state_dict(loaded.model_state)
    optimizer.load_state_dict(loaded.optimizer_state)
    assert loaded.meta["config"] == meta["config"] and loaded.meta["metrics"] == meta["metrics"]
    assert optimizer.state_dict()["param_groups"] == expected_optimizer_state["param_groups"]
    assert loaded.optimizer_state["param_groups"][0]["betas"] == (0.8, 0.95)  # a tuple again

    train_steps(resumed, optimizer, 3, 3)
    resumed_state = resumed.state_dict()
    for name, want in uninterrupted.state_dict().items():
        assert torch.equal(want, resumed_state[name]), name


def test_meta_round_trips_tuples_int_keys_and_exact_floats(tmp_path: Path) -> None:
    meta = {
        "floats": [0.1, 1 / 3, -0.0, 1e-300, float("inf")],
        "by_int": {3: "three", 7: (1, 2)},
        "__dunder": True,
        "nested": {"tensor": torch.arange(4, dtype=torch.int16), "big": 2**62},
    }
    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(2)}, None, meta)
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    assert loaded.optimizer_state is None
    assert loaded.meta["floats"] == meta["floats"] and str(loaded.meta["floats"][2]) == "-0.0"
    assert loaded.meta["by_int"] == meta["by_int"] and loaded.meta["__dunder"] is True
    assert torch.equal(loaded.meta["nested"]["tensor"], meta["nested"]["tensor"])
    assert loaded.meta["nested"]["big"] == 2**62


def test_unstorable_meta_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"cannot store PosixPath at meta\.root|cannot store WindowsPath"):
        save_checkpoint(tmp_path / "c.safetensors", {}, None, {"root": tmp_path})
    assert not list(tmp_path.iterdir())


def test_truncated_checkpoint_is_refused_and_the_previous_one_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_trained(tmp_path / "epoch-9.safetensors")
    newest = tmp_path / "epoch-10.safetensors"  # numerically newer, though "epoch-9" sorts after it as text
    save_trained(newest)
    newest.write_bytes(newest.read_bytes()[:-100])

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(newest)
    message = str(err.value)
    assert str(newest) in message and "\n" not in message
    assert "not fully covered" in message or "truncated" in message

    with caplog.at_level(logging.WARNING):
        assert latest_good_checkpoint(tmp_path) == tmp_path / "epoch-9.safetensors"
    assert any("epoch-10.safetensors" in record.getMessage() for record in caplog.records)


def test_header_cut_short_and_empty_folder(tmp_path: Path) -> None:
    path = tmp_path / "epoch-1.safetensors"
    save_trained(path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    assert latest_good_checkpoint(tmp_path) is None
    assert latest_good_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not a safetensors file"),
        (b"hello, world, this is text", "not a safetensors file"),
    ],
)
def test_foreign_bytes_are_refused(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(path)


def test_foreign_safetensors_and_wrong_kind_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="without acsa metadata"):
        load_checkpoint(foreign)

    other = tmp_path / "other.safetensors"
    save_file(
        {"w": torch.zeros(2)},
        str(other),
        metadata={"acsa.format": "model_weights", "acsa.format_version": "1"},
    )
    with pytest.raises(
        CheckpointError, match="holds acsa 'model_weights' version '1', expected 'checkpoint'"
    ):
        load_checkpoint(other)


class WritesMarker:
    """Unpickling this writes a file: the code execution a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_is_refused_without_running_it(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "epoch-1.safetensors"
    payload = {"model": {"w": torch.zeros(2)}, "evil": WritesMarker(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)

    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(path)
    assert latest_good_checkpoint(tmp_path) is None
    assert not marker.exists()

    if writer == "pickle":  # the payload is real: unpickling it does run the code
        pickle.loads(path.read_bytes())
        assert marker.read_text() == "code ran"


def test_failed_write_leaves_the_previous_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "epoch-1.safetensors"
    save_trained(path)
    before = path.read_bytes()

    def fail_half_way(tensors: dict, filename: Path, metadata: dict) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt, "save_tensors", fail_half_way)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"w": torch.zeros(2)}, None, {})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]
    load_checkpoint(path)


def test_failed_fsync_cleans_up_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", fail)  # the file writer (acsa.storage.files.durable_file) flushes
    with pytest.raises(OSError, match="I/O error"):
        save_checkpoint(tmp_path / "model.safetensors", {"w": torch.zeros(2)}, None, {})
    assert os.listdir(tmp_path) == []


def test_model_round_trip_with_shared_tensors(tmp_path: Path) -> None:
    model = make_model()
    state = model.state_dict()
    state["tied"] = state["0.weight"]  # tied weights share storage, which safetensors refuses as is
    config = {"name": "acsa-tiny", "dims": (6, 8, 3), "dropout": 0.3}
    save_checkpoint(tmp_path / "model.safetensors", state, None, {"config": config})
    loaded = load_checkpoint(tmp_path / "model.safetensors")
    loaded_state = loaded.model_state
    assert loaded.meta["config"] == config
    assert set(loaded_state) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded_state[key], value), key


def test_malformed_structure_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "epoch-1.safetensors"
    bad_meta = {"x": {"__items__": 5}}  # not a list of pairs
    structure = json.dumps({"model": {"w": {"__tensor__": "model.w"}}, "optimizer": None, "meta": bad_meta})
    metadata = {"acsa.format": "checkpoint", "acsa.format_version": "1", "acsa.structure": structure}
    save_file({"model.w": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="malformed structure"):
        load_checkpoint(path)
    save_file({"other": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="'model.w' named in the structure is not stored"):
        load_checkpoint(path)


# ---- the checkpoint folder of a training run ---------------------------------------------------------------


def test_folder_lock_refuses_a_second_run(tmp_path: Path) -> None:
    """(A lock held by a process that dies, even by SIGKILL, goes with it: tests/test_resume.py kills one.)"""
    folder = CheckpointFolder(tmp_path / "checkpoints")
    with folder.lock():
        with pytest.raises(CheckpointError, match="another training run is writing checkpoints here"):
            with CheckpointFolder(tmp_path / "checkpoints").lock():
                pass
    with folder.lock():  # released on exit
        pass


def test_folder_prune_clear_and_temporary_files(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path)
    for epoch in range(4):
        save_checkpoint(folder.epoch_path(epoch), {"w": torch.zeros(1)}, None, {"epoch": epoch})
        save_checkpoint(folder.best_path(epoch), {"w": torch.zeros(1)}, None, {})
    (tmp_path / ".epoch-004.safetensors.abc.tmp").write_bytes(b"partial")
    (tmp_path / ".lock").touch()
    folder.prune(keep_epochs=2, best_epochs={1, 3})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        ".epoch-004.safetensors.abc.tmp", ".lock", "best-epoch-001.safetensors", "best-epoch-003.safetensors",
        "epoch-002.safetensors", "epoch-003.safetensors",
    ]  # fmt: skip
    assert folder.latest() == folder.epoch_path(3)
    folder.remove_temporary_files()
    folder.clear()
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]
    folder.clear(lock=True)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []  # DVC needs the declared output folder
