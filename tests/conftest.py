"""Shared fixtures: the smoke-size configuration and a smoke pipeline run once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/fixtures_benchmarks.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A tiny synthetic benchmark and one short epoch: the whole pipeline in well under a minute.
SECTIONS = ("data", "synthetic", "text", "image", "model", "loss", "train", "evaluate")


def with_every_section(text: str) -> str:
    """A params file's text with an empty mapping for each section it leaves out: a params file must hold
    every section (its keys then take the built-in defaults, which are params.yaml's own values)."""
    import yaml

    try:
        raw = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError):
        return text  # not YAML (or nested too deeply): the test is about that
    if not isinstance(raw, dict):
        return text
    missing = [name for name in SECTIONS if name not in raw]
    return text.rstrip("\n") + "\n" + "".join(f"{name}: {{}}\n" for name in missing)


SMOKE_OVERRIDES = [
    "synthetic.train_ids=16",
    "synthetic.val_ids=4",
    "synthetic.test_ids=4",
    "synthetic.images_per_id=2",
    "text.batch_size=64",
    "image.height=64",  # the default protocol (frozen ImageNet MobileNetV2, cached outputs) at a small size
    "image.width=32",
    "train.epochs=2",
    "train.batch_size=8",
    "train.images_per_id=2",
    "train.warmup_steps=1",
    "train.threads=2",
    "evaluate.rerank_k=4",
]


def scratch_image(**overrides):
    """An ImageConfig of the end-to-end protocol: the narrow resnet10t from random weights at 128x64 (the
    built-in defaults are the default pipeline's frozen, pretrained MobileNetV2)."""
    from acsa.config.sections import ImageConfig

    settings = {
        "backbone": "resnet10t",
        "backbone_kwargs": {"channels": [32, 64, 128, 256], "stem_width": 16},
        "init": "scratch",
        "pretrained_path": None,
        "frozen": False,
        "height": 128,
        "width": 64,
    }
    return ImageConfig(**{**settings, **overrides})


# The end-to-end protocol (the backbone trained too: the paper presets, study.end_to_end) at a small size.
END_TO_END = [
    "image.backbone=resnet10t",
    "image.backbone_kwargs={channels: [16, 32, 64, 96], stem_width: 8}",
    "image.init=scratch",
    "image.pretrained_path=null",
    "image.frozen=false",
    "image.height=64",
    "image.width=32",
]


def smoke_data(root: Path) -> list[str]:
    """The data options of a stage run on the smoke run's outputs in `root`."""
    return [
        "--prepared", str(root / "prepared"),
        "--features", str(root / "features"),
        "--image-features", str(root / "image_features"),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Run prepare -> embed_text -> embed_images -> train -> evaluate at smoke size; returns the folder of
    outputs (prepared/, features/, image_features/, model/, eval/, ...)."""
    from acsa import embed_images, embed_text, evaluate, prepare, train

    root = tmp_path_factory.mktemp("smoke")
    params = str(REPO / "params.yaml")
    common = ["--params", params] + [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    prepare.main([*common, "--out", str(root / "prepared"), "--contact-sheet", str(root / "contact.png")])
    embed_text.main([*common, "--prepared", str(root / "prepared"), "--out", str(root / "features")])
    embed_images.main([*common, "--prepared", str(root / "prepared"), "--out", str(root / "image_features")])
    data = smoke_data(root)
    train.main([*common, *data, "--out", str(root / "model"), "--checkpoints", str(root / "checkpoints"),
                "--live", str(root / "live")])
    evaluate.main([*common, *data, "--model", str(root / "model"), "--out", str(root / "eval")])
    return root


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """The tiny CUHK-PEDES copy of tests/fixtures_benchmarks.py (bench/), prepared (prepared/) and embedded
    (features/) at the smallest size (tests/stage_runs.py): inputs for the stages after prepare."""
    from fixtures_benchmarks import write_cuhk_pedes
    from stage_runs import stage_args

    from acsa import embed_text, prepare

    root = tmp_path_factory.mktemp("tiny")
    write_cuhk_pedes(root / "bench")
    common = stage_args(root / "bench")
    prepare.main([*common, "--out", str(root / "prepared")])
    embed_text.main([*common, "--prepared", str(root / "prepared"), "--out", str(root / "features")])
    return root


@pytest.fixture(scope="session")
def explained(smoke_run, tmp_path_factory):
    """The explain stage's outputs for the smoke run's model (what the visualisation report reads)."""
    from acsa import explain

    out = tmp_path_factory.mktemp("explain") / "main"
    features = smoke_run / "features"
    explain.main(
        ["--model", str(smoke_run / "model"), "--eval", str(smoke_run / "eval"), "--prepared",
         str(smoke_run / "prepared"), "--features", str(features), "--out", str(out)]
    )  # fmt: skip
    return out
