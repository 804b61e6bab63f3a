"""The test split is sealed: training and every choice made on validation (the epoch kept, the fusion weight
and its curve) never read a test file. Proof: with the test split's records, tokens, text features, cached
backbone outputs and images deleted, training produces the identical model and validation choices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO, SMOKE_OVERRIDES

from acsa import evaluate, train
from acsa.storage.checkpoint import load_checkpoint


def without_test_split(smoke_run: Path, root: Path) -> tuple[Path, Path, Path]:
    """Copies of the smoke run's prepared folder, text features and cached backbone outputs with everything of
    the test split gone."""
    prepared, features, image_features = root / "prepared", root / "features", root / "image_features"
    shutil.copytree(smoke_run / "prepared", prepared)
    shutil.copytree(smoke_run / "features", features)
    shutil.copytree(smoke_run / "image_features", image_features)
    shutil.rmtree(prepared / "test")
    (features / "test.safetensors").unlink()
    (image_features / "test.safetensors").unlink()
    shutil.rmtree(prepared / "benchmark" / "imgs" / "test")
    remaining = [p for p in prepared.rglob("*") if "test" in p.relative_to(prepared).parts]
    assert remaining == []
    return prepared, features, image_features


def test_training_and_validation_choices_never_read_the_test_split(smoke_run: Path, tmp_path: Path) -> None:
    prepared, features, image_features = without_test_split(smoke_run, tmp_path)
    common = ["--params", str(REPO / "params.yaml")] + [a for o in SMOKE_OVERRIDES for a in ("--set", o)]
    train.main(
        [
            *common,
            "--prepared",
            str(prepared),
            "--features",
            str(features),
            "--image-features",
            str(image_features),
            "--out",
            str(tmp_path / "model"),
            "--checkpoints",
            str(tmp_path / "checkpoints"),
            "--live",
            str(tmp_path / "live"),
        ]  # fmt: skip
    )
    sealed = load_checkpoint(tmp_path / "model" / "model.safetensors")
    original = load_checkpoint(smoke_run / "model" / "model.safetensors")
    assert sealed.model_state.keys() == original.model_state.keys()
    for key, weights in original.model_state.items():
        assert torch.equal(sealed.model_state[key], weights), key
    choices = ("best_epoch", "chosen_on", "fusion_weight", "fusion_curve", "val")
    sealed_summary, original_summary = sealed.meta["summary"], original.meta["summary"]
    assert {k: sealed_summary[k] for k in choices} == {k: original_summary[k] for k in choices}
    assert original_summary["chosen_on"] == "val" and original_summary["fusion_curve"]

    # ... and the final evaluation is where the test split is needed: without it, one line naming it
    with pytest.raises(Exception, match="no 'test' split"):
        evaluate.main([*common, "--prepared", str(prepared), "--features", str(features),
                       "--image-features", str(image_features), "--model", str(tmp_path / "model"),
                       "--out", str(tmp_path / "eval")])  # fmt: skip


def test_evaluation_applies_the_choices_made_on_validation(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    summary = load_checkpoint(smoke_run / "model" / "model.safetensors").meta["summary"]
    assert metrics["fusion_weight"] == summary["fusion_weight"]
    assert metrics["val"] == summary["val"]
    curve = json.loads((smoke_run / "eval" / "fusion_curve.json").read_text())
    assert curve == summary["fusion_curve"]
    assert max(curve, key=lambda row: (row["R1"], row["mAP"], -abs(row["weight"])))[
        "weight"
    ] == pytest.approx(metrics["fusion_weight"])
