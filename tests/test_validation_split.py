"""A benchmark without a validation split (ICFG-PEDES), end to end: prepare carves one from the training
identities (data.val_ids_from_train), so training chooses the epoch and the fusion weight on it; with none
carved, training warns loudly and keeps the last epoch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import END_TO_END, REPO
from fixtures_benchmarks import write_icfg_pedes

from acsa import embed_text, prepare, train
from acsa.config.loading import load_params

LAYOUT = {"train": (list(range(8)), 2, 1), "test": ([8, 9], 2, 1)}
TINY = [
    *END_TO_END,  # the backbone trained too: no cached backbone outputs to prepare
    "data.dataset=icfg-pedes",
    "text.batch_size=64",
    "train.epochs=2",
    "train.batch_size=4",
    "train.images_per_id=2",
    "train.warmup_steps=1",
    "train.threads=2",
    "evaluate.rerank_k=4",
]
# the released code's training choices (docs/presets.md), at this size
RELEASED_CODE = [
    "train.sampler=random",
    "model.attention=both",
    "model.mask_padding=false",
    "image.parts=channels",
    "loss.cmpm_target_norm=l2",
    "loss.drop_cmpm_below=0.5",
]


def run(tmp_path: Path, overrides: list[str]) -> tuple[dict, dict]:
    """prepare, embed_text and train on an ICFG-PEDES copy; returns (summary.json, the model's summary)."""
    sets = [*TINY, f"data.root={tmp_path / 'icfg'}", *overrides]
    common = ["--params", str(REPO / "params.yaml"), *[arg for o in sets for arg in ("--set", o)]]
    prepared, features = tmp_path / "prepared", tmp_path / "features"
    prepare.main([*common, "--out", str(prepared)])
    embed_text.main([*common, "--prepared", str(prepared), "--out", str(features)])
    train.main(
        [*common, "--prepared", str(prepared), "--features", str(features), "--out", str(tmp_path / "model"),
         "--checkpoints", str(tmp_path / "ck"), "--live", str(tmp_path / "live")]
    )  # fmt: skip
    summary = json.loads((prepared / "summary.json").read_text())
    return summary, json.loads((tmp_path / "model" / "train_summary.json").read_text())


def test_carved_val_split_chooses_epoch_and_fusion_weight(tmp_path: Path) -> None:
    write_icfg_pedes(tmp_path / "icfg", layout=LAYOUT)
    summary, chosen = run(tmp_path, ["data.val_ids_from_train=3", *RELEASED_CODE])
    assert summary["train"]["ids"] == 5 and summary["val"] == {
        "ids": 3, "images": 6, "captions": 6, "from_train": True
    }  # fmt: skip
    train_records = json.loads((tmp_path / "prepared" / "train" / "records.json").read_text())
    val_records = json.loads((tmp_path / "prepared" / "val" / "records.json").read_text())
    assert not set(train_records["original_ids"]) & set(val_records["image_ids"])
    assert val_records["dataset"] == "icfg-pedes" and val_records["split"] == "val"
    weights = load_params(REPO / "params.yaml").evaluate.fusion_weights
    assert chosen["chosen_on"] == "val" and len(chosen["fusion_curve"]) == len(weights)
    assert chosen["fusion_weight"] in weights


def test_without_a_val_split_training_warns_and_keeps_the_last_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_icfg_pedes(tmp_path / "icfg", layout=LAYOUT)
    with caplog.at_level(logging.WARNING):
        summary, chosen = run(tmp_path, ["data.val_ids_from_train=0"])
    assert "val" not in summary and not (tmp_path / "prepared" / "val").exists()
    assert "NO VALIDATION SPLIT" in caplog.text and "data.val_ids_from_train" in caplog.text
    assert chosen["chosen_on"].startswith("none") and chosen["best_epoch"] == 1
