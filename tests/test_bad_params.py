"""Bad parameter values (issue 13, items 3 and 6): every value is checked for its range and kind when params
are loaded, so a stage refuses it with one line naming the key, exit status 2, before any work starts.
tests/test_config.py covers the loader's types and structure."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from conftest import REPO, with_every_section
from stage_runs import cli_error, stage_args, train_argv

from acsa import embed_text, evaluate, prepare, train
from acsa.config.explain import ExplainConfig
from acsa.config.loading import load_params
from acsa.config.rules import RULES
from acsa.config.sections import Params
from acsa.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(with_every_section(text))
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=-4", "train.batch_size: must be >= 1, got -4"),
        ("train.batch_size=0", "train.batch_size: must be >= 1, got 0"),
        ("text.batch_size=0", "text.batch_size: must be >= 1, got 0"),
        ("evaluate.batch_size=-1", "evaluate.batch_size: must be >= 1, got -1"),
        ("evaluate.chunk_size=0", "evaluate.chunk_size: must be >= 1, got 0"),
        (
            "train.images_per_id=4 & train.batch_size=6",
            "train.batch_size: must be a multiple of train.images_per_id (4), got 6",
        ),
        ("train.lr=.nan", "train.lr: expected a finite float, got nan"),
        ("train.lr=nan", "train.lr: expected a finite float, got nan"),
        ("train.lr=.inf", "train.lr: expected a finite float, got inf"),
        ("train.lr=-1", "train.lr: must be in [0, 1], got -1.0"),
        ("train.lr=1e30", "train.lr: must be in [0, 1], got 1e+30"),
        ("text.lr=-1e-5", "text.lr: must be in [0, 1], got -1e-05"),
        ("train.backbone_lr=-1", "train.backbone_lr: must be in [0, 1], got -1.0"),
        ("train.gamma=10", "train.gamma: must be in (0, 1], got 10.0"),
        ("train.weight_decay=-0.1", "train.weight_decay: must be >= 0, got -0.1"),
        ("model.dropout=1.5", "model.dropout: must be in [0, 1), got 1.5"),
        ("model.dropout=1", "model.dropout: must be in [0, 1), got 1.0"),
        ("model.dropout=-0.1", "model.dropout: must be in [0, 1), got -0.1"),
        ("image.window_grid=[0, 1]", "image.window_grid[0]: must be >= 1, got 0"),
        ("image.window_grid=[2]", "image.window_grid: must hold 2 values, got 1"),
        ("image.height=0", "image.height: must be >= 1, got 0"),
        ("image.width=-64", "image.width: must be >= 1, got -64"),
        ("image.translate=1.5", "image.translate: must be in [0, 1), got 1.5"),
        ("evaluate.fusion_weights=[]", "evaluate.fusion_weights: must not be empty"),
        (
            "evaluate.fusion_weights=[0.0, .nan]",
            "evaluate.fusion_weights[1]: expected a finite float, got nan",
        ),
        ("evaluate.rerank_k=0", "evaluate.rerank_k: must be >= 1, got 0"),
        ("data.num_phrases=0", "data.num_phrases: must be >= 1, got 0"),
        ("data.caption_max_tokens=1", "data.caption_max_tokens: must be >= 2, got 1"),
        ("train.device=tpu", "train.device: 'tpu' is not auto, cpu, mps, cuda or cuda:N"),
        ("train.device=cuda:x", "train.device: 'cuda:x' is not auto, cpu, mps, cuda or cuda:N"),
        ("train.epochs=0", "train.epochs: must be >= 1, got 0"),
        ("train.max_steps=0", "train.max_steps: must be >= 1, got 0"),
        ("train.seed=-1", "train.seed: must be in [0, 4294967295], got -1"),
        ("train.num_workers=-2", "train.num_workers: must be >= 0, got -2"),
        ("train.nproc_per_node=0", "train.nproc_per_node: must be >= 1, got 0"),
        ("loss.cmpm_eps=0", "loss.cmpm_eps: must be > 0, got 0.0"),
        ("loss.local_weight=-1", "loss.local_weight: must be >= 0, got -1.0"),
        ("model.attention_scale=0", "model.attention_scale: must be > 0, got 0.0"),
        ("model.embed_dim=0", "model.embed_dim: must be >= 1, got 0"),
        ("synthetic.occlusion_rate=2", "synthetic.occlusion_rate: must be in [0, 1], got 2.0"),
        ("synthetic.height=8", "synthetic.height: must be >= 32, got 8"),
        ("synthetic.images_per_id=1", "synthetic.images_per_id: must be >= 2, got 1"),
        ("text.encoder=''", "text.encoder: must not be empty"),
        ("image.pretrained_path=''", "image.pretrained_path: must not be empty"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(override, message):
    """`override`: one or more --set values joined by " & "."""
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", overrides=[*override.split(" & ")])
    assert f"params.yaml: {message}" in str(err.value)
    assert "\n" not in str(err.value)


def test_every_key_has_a_rule():
    """A new key gets its rule in acsa.config.rules.RULES (one line): a stage must refuse a bad value at
    once."""
    keys = {
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(Params)
        for f in dataclasses.fields(typing.get_type_hints(Params)[section.name])
    }
    keys |= {f"explain.{f.name}" for f in dataclasses.fields(ExplainConfig)}  # read apart, same rules
    assert sorted(keys - set(RULES)) == [], "add a rule for these keys to acsa.config.rules.RULES"
    assert sorted(set(RULES) - keys) == [], "RULES names keys that Params does not have"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset: [paper]\n", "preset: expected the name of a preset, got ['paper']"),
        ("preset: paper\npresets: {paper: {train.lr: -1}}\n", "train.lr: must be in [0, 1], got -1.0"),
        (
            "study:\n  configurations:\n    'a b': {}\n",
            "study.configurations: 'a b' is not a valid name (letters, digits, _ and - only)",
        ),
        (
            "study:\n  optional:\n    \"x'; touch pwned; '\": {}\n",
            "study.optional: \"x'; touch pwned; '\" is not a valid name",
        ),
        ("presets:\n  $(id): {}\n", "presets: '$(id)' is not a valid name"),
        ("train:\n  lr: 0.1\ntrain:\n  epochs: 2\n", "line 3: duplicate key 'train' (first on line 1)"),
        ("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "line 4: duplicate key 'lr' (first on line 2)"),
        ("train: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
)
def test_bad_params_file(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_params(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "params.yaml") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=[1,", "--set train.lr=[1,: the value is not valid YAML"),
        ("train.milestones={a: 1, a: 2}", "--set train.milestones={a: 1, a: 2}: duplicate key 'a'"),
    ],
)
def test_malformed_set_value_is_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", overrides=[override])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_ablation_names_never_reach_a_shell_unchecked():
    """dvc.yaml runs `python -m acsa.config` (every name and value of params.yaml checked) as a command of
    its own before the line that holds an ablation name, and quotes the name there: DVC runs each line of
    a multi-line `cmd` separately and stops at the first that fails."""
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        if "${key}" not in cmd:
            continue
        lines = cmd.splitlines()
        assert lines[0] == "python -m acsa.config", name
        assert "${key}" not in lines[0]
        assert all("${key}" not in part for line in lines[1:] for part in line.split("'")[::2]), (
            f"{name}: ${{key}} outside single quotes"
        )


def test_check_params_command(tmp_path):
    from stage_runs import run_module

    good = run_module("acsa.config", [str(REPO / "params.yaml")], cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    bad = write(tmp_path, "study:\n  configurations:\n    full: {}\n    'x; touch pwned': {}\n")
    result = run_module("acsa.config", [str(bad)], cwd=tmp_path)
    assert result.returncode == 2
    expected = (
        f"error: {bad}: study.configurations: 'x; touch pwned' is not a valid name (letters, digits, _ and - "
        "only)"
    )
    assert result.stderr.strip() == expected
    broken = write(tmp_path, "study:\n  configurations:\n    full: {}\n    slow: {train.lr: -1}\n")
    result = run_module("acsa.config", [str(broken)], cwd=tmp_path)
    assert result.returncode == 2 and "study configuration slow: train.lr: must be in [0, 1]" in result.stderr
    assert not (tmp_path / "pwned").exists()


# ---- every stage refuses before any work ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["evaluate.fusion_weights=[]"], "evaluate.fusion_weights: must not be empty"),
        (["evaluate.fusion_weights=[0, .nan]"], "evaluate.fusion_weights[1]: expected a finite float"),
        (
            ["train.batch_size=40", "train.images_per_id=2"],
            "train.batch_size: 40 / train.images_per_id 2 = 20 identities per batch, but the training split "
            "has 3 identities",
        ),
        (["train.device=tpu"], "train.device: 'tpu' is not"),
        (["train.lr=-1"], "train.lr: must be in [0, 1]"),
        (["model.dropout=1.5"], "model.dropout: must be in [0, 1)"),
        (["image.backbone=no_such_net"], "image.backbone: 'no_such_net' is not a timm model"),
        (["image.backbone_kwargs={no_such_arg: 1}"], "image.backbone_kwargs: resnet10t does not accept"),
        (["image.window_stage=9"], "image.window_stage: 9 outside the 5 feature stages"),
    ],
)
def test_train_refuses_a_bad_value_before_any_epoch(tiny_prepared, tmp_path, capsys, overrides, message):
    error = cli_error(train.main, train_argv(tiny_prepared, tmp_path, overrides), capsys)
    assert message in error
    assert not (tmp_path / "model").exists() and not (tmp_path / "live").exists()
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").glob("*.safetensors"))


def test_train_on_a_missing_gpu_is_one_line(tiny_prepared, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    error = cli_error(train.main, train_argv(tiny_prepared, tmp_path, ["train.device=cuda:1"]), capsys)
    assert "train.device: 'cuda:1' requested but CUDA is not available" in error


def test_prepare_embed_and_evaluate_refuse_before_any_work(tiny_prepared, tmp_path, capsys):
    common = stage_args(tiny_prepared / "bench")
    argv = [*common, "--set", "data.num_phrases=0", "--out", str(tmp_path / "p")]
    error = cli_error(prepare.main, argv, capsys)
    assert "data.num_phrases: must be >= 1, got 0" in error
    places = ["--prepared", str(tiny_prepared / "prepared"), "--out", str(tmp_path / "f")]
    bad_batch = ["--set", "text.batch_size=0", *places]
    assert "text.batch_size: must be >= 1" in cli_error(embed_text.main, [*common, *bad_batch], capsys)
    rerank = ["--set", "evaluate.local_mode=rerank", "--set", "evaluate.rerank_k=0"]
    places = ["--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "e")]
    argv = [*common, *rerank, "--prepared", str(tiny_prepared / "prepared"), *places]
    assert "evaluate.rerank_k: must be >= 1, got 0" in cli_error(evaluate.main, argv, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even a temporary folder


def test_a_preset_given_as_a_list_at_the_command_line(tiny_prepared, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("preset: default", "preset: [paper]", 1))
    error = cli_error(prepare.main, ["--params", str(params), "--out", str(tmp_path / "p")], capsys)
    assert error == f"error: {params}: preset: expected the name of a preset, got ['paper']"
