"""Bad inputs, end to end (tests/test_readers.py covers the annotation formats one record at a time).

Odd but usable inputs (grayscale, RGBA, CMYK, palette and 16-bit images, a 2,000-word caption, non-ASCII
and emoji captions, an image listed twice, an identity in two splits) go through every stage with a warning
where something was changed. Broken inputs (a truncated JPEG, bad params, a checkpoint of another
configuration) stop the stage with exit status 2 and one line, and leave the previous output as it was.
Files that could run code when loaded (pickles in place of checkpoints, features, tokens, weights, or a YAML
object tag) are refused without running it.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SMOKE_OVERRIDES
from fixtures_benchmarks import write_cuhk_pedes, write_image
from PIL import Image

from acsa import embed_text, evaluate, prepare, train
from acsa.cli import run_stage
from acsa.config import TextConfig, load_params
from acsa.errors import ConfigError

LONG_CAPTION = " ".join(["a man in a red jacket with a black backpack and blue jeans walking"] * 160)
EMOJI_CAPTIONS = ["Eine Frau mit roter Jacke, ça va? 😀 穿红色夹克的女人", "👕👖🎒"]
TINY = [
    "text.batch_size=64",
    "train.epochs=1",
    "train.batch_size=4",
    "train.images_per_id=2",
    "train.warmup_steps=1",
    "train.threads=2",
    "evaluate.rerank_k=4",
]


def stage_args(root: Path, overrides: list[str] = ()) -> list[str]:
    """--params and --set for a CUHK-PEDES copy in `root`, at the smallest training size."""
    sets = ["data.dataset=cuhk-pedes", f"data.root={root}", *TINY, *overrides]
    return ["--params", str(REPO / "params.yaml"), *[arg for o in sets for arg in ("--set", o)]]


def cli_error(main, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run a stage's command line in-process: it must exit 2 with one `error:` line and no traceback."""
    with pytest.raises(SystemExit) as exited:
        run_stage(main, argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def odd_benchmark(root: Path) -> None:
    """A CUHK-PEDES copy whose images and captions are odd in every way a usable benchmark can be."""
    records = write_cuhk_pedes(root)
    images = root / "imgs"
    train, test = [r for r in records if r["split"] == "train"], [r for r in records if r["split"] == "test"]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 8), dtype=np.uint8)).save(images / train[0]["file_path"])
    Image.fromarray(rng.integers(0, 256, (16, 8, 4), dtype=np.uint8), "RGBA").save(
        images / train[1]["file_path"]
    )
    Image.fromarray(rng.integers(0, 65536, (16, 8), dtype=np.uint16)).save(images / train[2]["file_path"])
    Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).convert("P").save(
        images / test[0]["file_path"]
    )
    (images / train[3]["file_path"]).unlink()
    train[3]["file_path"] = train[3]["file_path"].replace(".png", ".jpg")
    Image.new("CMYK", (8, 16), (0, 80, 80, 0)).save(images / train[3]["file_path"])
    train[4]["captions"].append(LONG_CAPTION)
    train[5]["captions"] = list(EMOJI_CAPTIONS)
    records.append({**train[0], "captions": ["the same image, listed again"]})  # merged, with a warning
    records.append({**test[0], "id": train[0]["id"], "file_path": "Market/shared_id.png"})  # a train identity
    write_image(images / "Market" / "shared_id.png", seed=99)
    (root / "reid_raw.json").write_text(json.dumps(records))


def test_odd_images_and_captions_go_through_every_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    odd_benchmark(tmp_path / "bench")
    common = stage_args(tmp_path / "bench")
    prepared, features = tmp_path / "prepared", tmp_path / "features"
    data = ["--prepared", str(prepared), "--features", str(features)]
    with caplog.at_level(logging.WARNING):
        prepare.main([*common, "--out", str(prepared)])
        embed_text.main([*common, "--prepared", str(prepared), "--out", str(features)])
        train.main([*common, *data, "--out", str(tmp_path / "model"), "--checkpoints", str(tmp_path / "ck"),
                    "--live", str(tmp_path / "live")])  # fmt: skip
        evaluate.main([*common, *data, "--model", str(tmp_path / "model"), "--out", str(tmp_path / "eval")])

    warnings = caplog.text
    assert "texts were truncated to 64 tokens" in warnings and "a man in a red jacket" in warnings
    assert "1 records repeat an image listed before; their captions were merged" in warnings
    assert "1 identities appear in both train and test" in warnings
    summary = json.loads((tmp_path / "prepared" / "summary.json").read_text())
    assert summary["train"] == {"ids": 3, "images": 6, "captions": 12 + 1 + 1}
    assert summary["test"] == {"ids": 3, "images": 5, "captions": 10}
    assert summary["phrases"]["captions_without_phrases"] >= 1  # the emoji-only caption
    train_records = json.loads((tmp_path / "prepared" / "train" / "records.json").read_text())
    assert EMOJI_CAPTIONS[0] in train_records["captions"]  # kept as written, not mangled

    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert all(math.isfinite(value) for value in live["train"].values())
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for kind in ("global", "local", "fused"):
        assert all(math.isfinite(value) for value in metrics["test"][kind].values()), kind


def test_truncated_jpeg_stops_prepare_and_keeps_the_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    records = write_cuhk_pedes(tmp_path / "bench")
    cut = tmp_path / "bench" / "imgs" / records[0]["file_path"]
    write_image(cut, size=(64, 128))
    Image.open(cut).save(cut, format="JPEG")  # a JPEG under a .png name: PIL reads the content
    cut.write_bytes(cut.read_bytes()[:-200])
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "summary.json").write_text('{"previous": true}')

    error = cli_error(prepare.main, [*stage_args(tmp_path / "bench"), "--out", str(out)], capsys)
    assert "1 of 14 images missing or unreadable (0 missing, 1 unreadable" in error
    assert records[0]["file_path"] in error and "truncated" in error
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert (out / "summary.json").read_text() == '{"previous": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "prepared"]  # no temporary folder left


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("train:\n  lrr: 0.1\n", "train.lrr: unknown key (known: "),
        ("train:\n  epochs: ten\n", "train.epochs: expected int, got 'ten'"),
        ("model:\n  dropout: [0.5]\n", "model.dropout: expected float, got [0.5]"),
    ],
)
def test_bad_params_file_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, section: str, message: str
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().split("\ndata:")[0] + "\n" + section)
    error = cli_error(train.main, ["--params", str(params), "--out", str(tmp_path / "model")], capsys)
    assert error.startswith(f"error: {params}: {message}")
    assert not (tmp_path / "model").exists()


def test_evaluating_a_model_of_another_configuration_names_the_keys(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "eval"
    shutil.copytree(smoke_run / "eval", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    overrides = [*SMOKE_OVERRIDES, "model.embed_dim=128", "image.window_grid=[3, 1]", "evaluate.rerank_k=2"]
    argv = [
        "--params", str(REPO / "params.yaml"), *[arg for o in overrides for arg in ("--set", o)],
        "--model", str(smoke_run / "model"), "--prepared", str(smoke_run / "prepared"),
        "--features", str(smoke_run / "features"), "--out", str(out),
    ]  # fmt: skip
    error = cli_error(evaluate.main, argv, capsys)
    assert "was trained with a different configuration (image.window_grid, model.embed_dim)" in error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ---- safe loading ------------------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this writes a file: the code execution a malicious file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def write_pickle(path: Path, marker: Path, torch_save: bool = False) -> None:
    payload = {"weight": torch.zeros(2), "evil": RunsCode(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if torch_save:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))


def test_pickled_features_and_model_are_refused_at_the_command_line(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "marker"
    features = tmp_path / "features"
    write_pickle(features / "train.safetensors", marker)
    write_pickle(features / "test.safetensors", marker)
    sets = [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    common = ["--params", str(REPO / "params.yaml"), *sets, "--prepared", str(smoke_run / "prepared")]
    out = ["--out", str(tmp_path / "out")]
    error = cli_error(train.main, [*common, "--features", str(features), *out], capsys)
    assert error.startswith(f"error: {features / 'train.safetensors'}: not a readable safetensors file")
    model = ["--model", str(smoke_run / "model")]
    error = cli_error(evaluate.main, [*common, "--features", str(features), *model, *out], capsys)
    assert error.startswith(f"error: {features / 'test.safetensors'}: not a readable safetensors file")

    write_pickle(tmp_path / "model" / "model.safetensors", marker, torch_save=True)
    error = cli_error(evaluate.main, [*common, "--model", str(tmp_path / "model"), *out], capsys)
    assert "a zip archive (torch.save output?); refusing to unpickle it" in error
    assert not marker.exists()


def test_pickled_tokens_weights_and_text_encoder_are_refused(tmp_path: Path) -> None:
    from safetensors import SafetensorError

    from acsa.data.text_features import open_text_source
    from acsa.model.backbone_weights import load_state_dict_file
    from acsa.model.text_encoder import TextEncoder
    from acsa.paths import resolve_text_encoder

    marker = tmp_path / "marker"
    write_pickle(tmp_path / "prepared" / "train" / "tokens.safetensors", marker)
    with pytest.raises(SafetensorError):  # embed_text reads tokens with safetensors only
        embed_text.embed_text(load_params(REPO / "params.yaml"), tmp_path / "prepared", tmp_path / "features")
    with pytest.raises(Exception, match="not a readable safetensors file"):  # text.finetune reads them too
        open_text_source(True, tmp_path / "prepared" / "train", tmp_path / "f", {"phrase_index": []}, "train")

    write_pickle(tmp_path / "backbone.pth", marker, torch_save=True)  # image.pretrained_path
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state_dict_file(tmp_path / "backbone.pth")

    encoder = tmp_path / "encoder"  # text.encoder as a local folder: a real config, pickled weights
    encoder.mkdir()
    shutil.copy(Path(resolve_text_encoder("minilm")) / "config.json", encoder / "config.json")
    write_pickle(encoder / "pytorch_model.bin", marker, torch_save=True)
    with pytest.raises(Exception, match="(?i)weights only load failed|unpickl"):
        TextEncoder(TextConfig(encoder=str(encoder)))
    assert not marker.exists()


def test_yaml_object_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    params = tmp_path / "params.yaml"
    params.write_text(f"train: !!python/object/apply:pathlib.Path.write_text [{str(marker)!r}, 'code ran']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(params)
    assert not marker.exists()
