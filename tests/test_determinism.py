"""Determinism: the smoke pipeline run twice with the same seed on the CPU gives identical outputs.

The second run goes through every stage again in a fresh folder and is compared with the session's smoke run:
every metrics file, the rankings, the text features and the model weights. Only wall-clock measurements
(`seconds`, `pairs_per_second`) may differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import REPO, SMOKE_OVERRIDES, smoke_data
from safetensors.torch import load_file

from acsa import embed_images, embed_text, evaluate, prepare, train
from acsa.storage.checkpoint import load_checkpoint

TIMING = ("pairs_per_second", "seconds")


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def run_smoke_pipeline(root: Path) -> None:
    """The stages as tests/conftest.py's smoke_run runs them."""
    common = ["--params", str(REPO / "params.yaml")] + [a for o in SMOKE_OVERRIDES for a in ("--set", o)]
    prepare.main([*common, "--out", str(root / "prepared"), "--contact-sheet", str(root / "contact.png")])
    embed_text.main([*common, "--prepared", str(root / "prepared"), "--out", str(root / "features")])
    embed_images.main([*common, "--prepared", str(root / "prepared"), "--out", str(root / "image_features")])
    data = smoke_data(root)
    train.main([*common, *data, "--out", str(root / "model"), "--checkpoints", str(root / "checkpoints"),
                "--live", str(root / "live")])  # fmt: skip
    evaluate.main([*common, *data, "--model", str(root / "model"), "--out", str(root / "eval")])


def test_same_seed_same_outputs(smoke_run: Path, tmp_path: Path) -> None:
    run_smoke_pipeline(tmp_path)

    metrics_files = [
        "prepared/summary.json",
        "features/info.json",
        "live/metrics.json",
        "model/train_summary.json",
        "eval/metrics.json",
        "eval/fusion_curve.json",
    ]
    for name in metrics_files:
        first, second = (json.loads((root / name).read_text()) for root in (smoke_run, tmp_path))
        assert without_timing(second) == without_timing(first), name
    texts = ["eval/rankings.json", "eval/per_query.json"]
    splits, files = ("train", "val", "test"), ("records.json", "phrases.json")
    texts += [f"prepared/{split}/{f}" for split in splits for f in files]
    for name in texts:
        assert (tmp_path / name).read_text() == (smoke_run / name).read_text(), name  # no absolute paths
    tensors = [f"prepared/{split}/tokens.safetensors" for split in ("train", "val", "test")]
    tensors += [f"features/{split}.safetensors" for split in ("train", "val", "test")]
    for name in tensors:
        first, second = load_file(str(smoke_run / name)), load_file(str(tmp_path / name))
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first), name
    first, second = (load_checkpoint(root / "model" / "model.safetensors") for root in (smoke_run, tmp_path))
    assert all(torch.equal(weights, second.model_state[key]) for key, weights in first.model_state.items())
    assert (tmp_path / "contact.png").read_bytes() == (smoke_run / "contact.png").read_bytes()
