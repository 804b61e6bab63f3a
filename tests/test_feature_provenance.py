"""Text features record which tokens they encode (the SHA-256 of the split's tokens.safetensors): features of
other tokens, stale or from another benchmark, are refused with one line by every stage that reads them, even
when their row counts match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, SMOKE_OVERRIDES
from safetensors.torch import load_file, save_file

from acsa import evaluate, explain, train
from acsa.cli import run_stage


def foreign_features(smoke_run: Path, root: Path) -> Path:
    """The smoke run's features with every split's file replaced by one encoding other tokens: the same
    tensors (same rows) whose recorded token hash is another file's."""
    features = root / "features"
    shutil.copytree(smoke_run / "features", features)
    for split in ("train", "val", "test"):
        path = features / f"{split}.safetensors"
        save_file(load_file(str(path)), str(path), metadata={"acsa.tokens_sha256": "0" * 64})
    return features


def one_line_error(main, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_stage(main, argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in lines)
    return lines[-1]


@pytest.mark.parametrize("stage", ["train", "evaluate", "explain"])
def test_features_of_other_tokens_are_refused(
    stage: str, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    features = foreign_features(smoke_run, tmp_path)
    common = ["--params", str(REPO / "params.yaml")] + [a for o in SMOKE_OVERRIDES for a in ("--set", o)]
    data = ["--prepared", str(smoke_run / "prepared"), "--features", str(features)]
    images = ["--image-features", str(smoke_run / "image_features")]  # explain reads the pixels
    out = ["--out", str(tmp_path / "out")]
    argv = {
        "train": (train.main, [*common, *data, *images, *out, "--checkpoints", str(tmp_path / "ck")]),
        "evaluate": (evaluate.main, [*common, *data, *images, *out, "--model", str(smoke_run / "model")]),
        "explain": (
            explain.main,
            [*data, *out, "--model", str(smoke_run / "model"), "--eval", str(smoke_run / "eval")],
        ),
    }
    main, args = argv[stage]
    line = one_line_error(main, args, capsys)
    assert line.startswith("error: ") and "encodes other tokens than" in line and "tokens.safetensors" in line
    assert not (tmp_path / "out").exists()
