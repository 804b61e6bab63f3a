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
from conftest import REPO, SMOKE_OVERRIDES, smoke_data, with_every_section
from fixtures_benchmarks import write_cuhk_pedes, write_image
from PIL import Image
from stage_runs import cli_error, last_stderr_line, run_module, stage_args, train_argv

from acsa import embed_text, evaluate, prepare, train
from acsa.config.loading import load_params
from acsa.config.sections import TextConfig
from acsa.errors import ConfigError, DataError

LONG_CAPTION = " ".join(["a man in a red jacket with a black backpack and blue jeans walking"] * 160)
EMOJI_CAPTIONS = ["Eine Frau mit roter Jacke, ça va? 😀 穿红色夹克的女人", "👕👖🎒"]


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
    header = (REPO / "params.yaml").read_text().split("\ndata:")[0]
    params.write_text(with_every_section(header + "\n" + section))
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
        "--features", str(smoke_run / "features"), "--image-features", str(smoke_run / "image_features"),
        "--out", str(out),
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
    common += ["--image-features", str(smoke_run / "image_features")]
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
    from acsa.data.text_features import open_text_source
    from acsa.model.backbone_weights import load_state_dict_file
    from acsa.model.text_encoder import TextEncoder
    from acsa.paths import resolve_text_encoder

    marker = tmp_path / "marker"
    write_pickle(tmp_path / "prepared" / "train" / "tokens.safetensors", marker)
    with pytest.raises(DataError, match="not a readable safetensors"):  # read with safetensors only
        embed_text.embed_text(load_params(REPO / "params.yaml"), tmp_path / "prepared", tmp_path / "features")
    with pytest.raises(Exception, match="not a readable safetensors file"):  # text.finetune reads them too
        open_text_source(True, tmp_path / "prepared" / "train", tmp_path / "f", {"phrase_index": []}, "train")

    write_pickle(tmp_path / "backbone.pth", marker, torch_save=True)  # image.pretrained_path
    with pytest.raises(ConfigError, match="image.pretrained_path: .*backbone.pth"):  # one line, never run
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


# ---- issue 13: the smaller probes ----------------------------------------------------------------------


def prepare_error(
    tmp_path: Path, records: list, capsys: pytest.CaptureFixture, raw: str | None = None
) -> str:
    """Prepare a CUHK-PEDES copy whose annotation file holds `records` (or the text `raw`): one error line."""
    (tmp_path / "bench" / "reid_raw.json").write_text(raw if raw is not None else json.dumps(records))
    out = tmp_path / "prepared"
    error = cli_error(prepare.main, [*stage_args(tmp_path / "bench"), "--out", str(out)], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # nothing written
    return error


@pytest.mark.parametrize("caption", ["\u200b\u200b", "\x00", "\ufeff", " \u2060\u200d ", "\u00ad\u200e"])
def test_a_caption_of_invisible_characters_is_empty(tmp_path, capsys, caption):
    records = write_cuhk_pedes(tmp_path / "bench")
    records[2]["captions"][1] = caption
    error = prepare_error(tmp_path, records, capsys)
    assert (
        "record 2 (id 7, file_path 'CUHK01/0007_0.png'): caption 1 is empty (only invisible characters)"
        in error
    )


def test_a_visible_caption_keeps_its_format_characters(tmp_path):
    """Invisible characters inside a caption with visible ones stay (a zero-width joiner binds emoji)."""
    from acsa.data.readers import parse_records

    records = [
        {
            "split": split,
            "id": i,
            "file_path": f"{i}.png",
            "captions": ["a man 👨\u200d👩\u200d👧 in red\u200b"],
        }
        for i, split in enumerate(["train", "test"])
    ]
    by_split = parse_records(records, Path("reid_raw.json"), "file_path")
    assert by_split["train"][0].captions == ["a man 👨\u200d👩\u200d👧 in red\u200b"]


@pytest.mark.parametrize("ident", [2**63, -(2**63) - 1, 10**30])
def test_an_identity_beyond_64_bits_is_refused_at_prepare(tmp_path, capsys, ident):
    """The probe: an id beyond 64 bits passed prepare and crashed evaluate."""
    records = write_cuhk_pedes(tmp_path / "bench")
    records[-1]["id"] = ident
    error = prepare_error(tmp_path, records, capsys)
    assert f"record {len(records) - 1} (id {ident}, " in error and "'id' must fit in 64 bits" in error


def test_a_lone_surrogate_in_a_caption_is_one_line(tmp_path, capsys):
    """The probe: "\\ud800" (valid JSON, not valid Unicode) crashed tokenisation."""
    records = write_cuhk_pedes(tmp_path / "bench")
    raw = json.dumps(records).replace("A  person 7 in a red jacket", "A  person 7 in a \\ud800 jacket", 1)
    error = prepare_error(tmp_path, records, capsys, raw=raw)
    assert "record 2 (id 7, file_path 'CUHK01/0007_0.png'): caption 0 holds an unpaired surrogate" in error


def test_deeply_nested_annotations_are_one_line(tmp_path, capsys):
    """The probe: deeply nested JSON raised RecursionError."""
    write_cuhk_pedes(tmp_path / "bench")
    error = prepare_error(tmp_path, [], capsys, raw="[" * 100_000 + "]" * 100_000)
    assert error == f"error: {tmp_path / 'bench' / 'reid_raw.json'}: not valid JSON (nested too deeply)"


def test_exif_orientation_is_applied(tmp_path):
    """A phone JPEG stored sideways with an EXIF orientation tag loads upright (the way viewers show it)."""
    from acsa.data.images import load_image
    from acsa.reports.views import Explained

    upright = np.zeros((16, 8, 3), dtype=np.uint8)  # 8 wide, 16 tall: red head, blue feet
    upright[:8, :, 0] = 255
    upright[8:, :, 2] = 255
    stored = Image.fromarray(np.rot90(upright, k=1).copy())  # rotated 90 degrees anticlockwise: 16 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    loaded = np.asarray(load_image(tmp_path / "phone.jpg"))
    assert loaded.shape == (16, 8, 3)
    assert loaded[2, 4, 0] > 200 and loaded[13, 4, 2] > 200  # red on top, blue at the bottom
    gallery = {"image_size": [16, 8], "image_paths": ["phone.jpg"]}
    shown = Explained(gallery, [], None, {}, None, tmp_path).image(0)  # the visualisation report's picture
    assert shown[2, 4, 0] > 200 and shown[13, 4, 2] > 200


@pytest.mark.parametrize("damage", ["truncated", "nested"])
def test_a_truncated_records_file_is_one_line(smoke_run, tmp_path, capsys, damage):
    prepared = tmp_path / "prepared"
    shutil.copytree(smoke_run / "prepared", prepared, ignore=shutil.ignore_patterns("benchmark"))
    for split in ("train", "test"):
        records = prepared / split / "records.json"
        text = records.read_text()
        records.write_text(text[:-100] if damage == "truncated" else "[" * 100_000 + "]" * 100_000)
    splits = prepared / "test" / "records.json"
    sets = [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    features = smoke_data(smoke_run)[2:]  # --features and --image-features
    argv = ["--params", str(REPO / "params.yaml"), *sets, "--prepared", str(prepared), *features]
    error = cli_error(
        evaluate.main, [*argv, "--model", str(smoke_run / "model"), "--out", str(tmp_path / "e")], capsys
    )
    assert error.startswith(f"error: {splits}: not valid JSON (")
    assert ("line 1" if damage == "truncated" else "nested too deeply") in error
    splits = prepared / "train" / "records.json"
    error = cli_error(
        train.main, [*argv, "--out", str(tmp_path / "m"), "--checkpoints", str(tmp_path / "c")], capsys
    )
    assert error.startswith(f"error: {splits}: not valid JSON (")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: {**f, "phrases": f["phrases"][:1]}, "phrases has 1 rows, the split indexes"),
        (lambda f: {k: v for k, v in f.items() if k != "phrases"}, "no 'phrases' features"),
        (lambda f: {**f, "phrases": f["phrases"][:, :10]}, "phrases are 10 wide but sentence 384"),
        (lambda f: {**f, "sentence": f["sentence"].long()}, "sentence: expected float"),
        (lambda f: {**f, "sentence": f["sentence"][:, None]}, "sentence: expected 2 dimensions"),
    ],
)
def test_a_feature_mismatch_is_one_line(tiny_prepared, tmp_path, capsys, change, message):
    """The probe: features whose rows or widths do not fit the prepared splits ended in tracebacks."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = tiny_prepared / "features" / "train.safetensors"
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()  # the hash of the tokens they encode: only the tensors are damaged
    features = tmp_path / "features"
    shutil.copytree(tiny_prepared / "features", features)
    broken = features / "train.safetensors"
    save_file({k: v.contiguous() for k, v in change(load_file(str(source))).items()}, str(broken), metadata)
    argv = [*train_argv(tiny_prepared, tmp_path), "--features", str(features)]
    error = cli_error(train.main, argv, capsys)
    assert error.startswith(f"error: {broken}: ") and message in error


def test_a_text_encoder_with_custom_code_is_refused_without_a_prompt(tmp_path):
    """The probe: a text-encoder folder whose config asks for custom code made transformers ask
    "Do you wish to run the custom code? [y/N]" before refusing."""
    from acsa.paths import resolve_text_encoder

    encoder = tmp_path / "encoder"
    shutil.copytree(resolve_text_encoder("minilm"), encoder)
    config = json.loads((encoder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel", "AutoTokenizer": ["tok_evil.Evil", None]}
    config["model_type"] = "evil"
    (encoder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "marker"
    (encoder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    write_cuhk_pedes(tmp_path / "bench")
    args = [*stage_args(tmp_path / "bench", [f"text.encoder={encoder}"]), "--out", str(tmp_path / "prepared")]
    result = run_module("acsa.prepare", args, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert last_stderr_line(result) == (
        f"error: text.encoder {str(encoder)!r}: {encoder / 'config.json'} asks for custom code (auto_map); "
        "refusing to run code from a model folder"
    )
    assert "[y/N]" not in result.stderr + result.stdout and not marker.exists()
    from acsa.model.text_encoder import TextEncoder

    with pytest.raises(ConfigError, match="asks for custom code"):
        TextEncoder(TextConfig(encoder=str(encoder)))


def test_an_unwritable_contact_sheet_fails_before_the_swap(tmp_path, capsys):
    """The probe: `--contact-sheet` on an unwritable path failed after the prepared folder was replaced."""
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "summary.json").write_text('{"previous": true}')
    (tmp_path / "a-file").write_text("not a folder")
    sheet = tmp_path / "a-file" / "contact.png"
    sets = [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    argv = ["--params", str(REPO / "params.yaml"), *sets, "--out", str(out), "--contact-sheet", str(sheet)]
    error = cli_error(prepare.main, argv, capsys)
    assert error.startswith("error: ") and "a-file" in error
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert (out / "summary.json").read_text() == '{"previous": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "prepared"]


def file_size_limit(limit: int):
    """A preexec_fn: every file the process writes stops at `limit` bytes (EFBIG, as a full disk's ENOSPC)."""

    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    ("stage", "limit"), [("prepare", 4_000), ("embed_text", 10_000), ("train", 1_000_000), ("evaluate", 900)]
)
def test_a_full_disk_is_one_line_and_leaves_nothing_partial(tiny_prepared, smoke_run, tmp_path, stage, limit):
    """The probe: a write failing midway (a full disk) ended in a traceback, in train buried under DVCLive's
    shutdown noise. Each stage's biggest output is over `limit`."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("previous")
    tiny = stage_args(tiny_prepared / "bench")
    prepared = ["--prepared", str(tiny_prepared / "prepared")]
    smoke = ["--params", str(REPO / "params.yaml"), *[arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]]
    features = smoke_data(smoke_run)[2:]  # --features and --image-features
    args = {
        "prepare": [*tiny, "--out", str(out)],
        "embed_text": [*tiny, *prepared, "--out", str(out)],
        "train": [*train_argv(tiny_prepared, tmp_path), "--out", str(out)],
        "evaluate": [
            *smoke,
            "--prepared",
            str(smoke_run / "prepared"),
            *features,
            "--model",
            str(smoke_run / "model"),
            "--out",
            str(out),
        ],  # fmt: skip
    }[stage]
    result = run_module(f"acsa.{stage}", args, cwd=tmp_path, preexec_fn=file_size_limit(limit))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = last_stderr_line(result)
    assert last.startswith("error: ") and "File too large" in last, last
    assert [p.name for p in out.iterdir()] == ["previous.txt"]  # the previous output, as it was
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_safetensors_outputs_have_the_permissions_of_json_outputs(smoke_run):
    """The probe: safetensors files were written 0600 while JSON files were 0644 (umask 022)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    outputs = [
        smoke_run / "prepared" / "train" / "tokens.safetensors",
        smoke_run / "prepared" / "train" / "records.json",
        smoke_run / "features" / "train.safetensors",
        smoke_run / "model" / "model.safetensors",
        smoke_run / "model" / "train_summary.json",
        smoke_run / "eval" / "metrics.json",
    ]
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in outputs} == {
        path.name: oct(expected) for path in outputs
    }
