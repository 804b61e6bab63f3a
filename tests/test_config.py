"""The strict params loader: defaults, presets, study configurations, overrides and one-line errors naming the
key; the study section's own validation."""

import dataclasses

import pytest
from conftest import REPO, with_every_section

from acsa.config.explain import load_explain_config
from acsa.config.loading import load_params, params_from_dict
from acsa.config.sections import Params, params_to_dict
from acsa.config.study import load_study
from acsa.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(with_every_section(text))
    return path


def test_repository_params_load_and_match_schema():
    params = load_params("params.yaml")
    assert params.data.dataset == "synthetic"
    assert dataclasses.is_dataclass(params) and isinstance(params, Params)


def test_preset_paper_applies(tmp_path):
    path = write(
        tmp_path, "preset: paper\npresets:\n  paper:\n    image.height: 384\n    text.pooling: cls\n"
    )
    params = load_params(path)
    assert params.image.height == 384 and params.text.pooling == "cls"


STUDY = "study:\n  main: full\n  configurations:\n    full: {}\n    slow: {train.lr: 0.01}\n"


def test_configuration_then_override_order(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.1\n" + STUDY + "  optional:\n    tiny: {train.lr: 0.2}\n")
    assert load_params(path).train.lr == 0.1
    assert load_params(path, configuration="slow").train.lr == 0.01
    assert load_params(path, configuration="tiny").train.lr == 0.2  # optional configurations too
    assert load_params(path, configuration="slow", overrides=["train.lr=0.5"]).train.lr == 0.5
    with pytest.raises(ConfigError, match="unknown name 'fast'"):
        load_params(path, configuration="fast")


def test_study_section_and_the_seeds_of_a_configuration(tmp_path):
    study = load_study(
        write(tmp_path, STUDY + "  seeds: [0, 1, 2]\n  findings:\n    f: {a: slow, b: full}\n")
    )
    assert study.seeds_of("full", main_seed=0) == (1, 2)  # seed 0 of the main configuration is models/main
    assert study.seeds_of("slow", main_seed=0) == (0, 1, 2)
    assert [(f.name, f.a, f.b) for f in study.findings] == [("f", "slow", "full")]
    assert load_study("params.yaml").main in load_study("params.yaml").configurations


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  seeds: []\n", "study.seeds: expected a list of at least 2 distinct"),
        ("  seeds: [1, 1]\n", "study.seeds: expected a list of at least 2 distinct"),
        ("  seeds: [0]\n", "study.seeds: expected a list of at least 2 distinct"),  # no interval from one
        ("  findings:\n    f: {a: slow, b: fast}\n", "study.findings.f.b: 'fast' is not a configuration"),
        ("  findings:\n    'a b': {a: slow, b: full}\n", "'a b' is not a name of letters"),
        ("  metric: accuracy\n", "study.metric: 'accuracy' is not one of"),
        ("  findings:\n    g: {a: full}\n", "study.findings.g: expected {a: CONFIGURATION, b:"),
        ("  confidence: 95\n", "study.confidence: expected a float in [0.5, 1)"),
        ("  colour: red\n", "study.colour: unknown key"),
    ],
)
def test_bad_study_sections_name_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        load_study(write(tmp_path, STUDY + extra))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_configuration_names_must_be_safe_in_commands(tmp_path):
    with pytest.raises(ConfigError, match="'x; rm -rf /' is not a valid name"):
        load_study(write(tmp_path, "study:\n  configurations:\n    'x; rm -rf /': {}\n    full: {}\n"))
    with pytest.raises(ConfigError, match="study.main: 'other' is not one of study.configurations"):
        load_study(write(tmp_path, "study:\n  main: other\n  configurations:\n    full: {}\n"))
    with pytest.raises(ConfigError, match="sets train.seed"):
        load_study(write(tmp_path, "study:\n  configurations:\n    full: {train.seed: 3}\n"))


def test_float_written_without_dot_is_accepted(tmp_path):
    assert load_params(write(tmp_path, "train:\n  lr: 1e-4\n")).train.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  lrr: 0.1\n", "train.lrr: unknown key"),
        ("trian:\n  lr: 0.1\n", "trian: unknown section"),
        ("train:\n  lr: fast\n", "train.lr: expected float, got 'fast'"),
        ("train:\n  epochs: 2.5\n", "train.epochs: expected int"),
        ("model:\n  use_local: 'yes'\n", "model.use_local: expected bool"),
        ("image:\n  parts: grid\n", "image.parts: 'grid' is not one of stripes, channels"),
        ("data:\n  dataset: market\n", "data.dataset: 'market' is not one of"),
        ("model:\n  attention: mutual\n", "model.attention: 'mutual' is not one of image_queries, phrase_q"),
        ("model:\n  global_text: tokens\n", "model.global_text: 'tokens' is not one of sentence, "),
        (
            "model:\n  use_image_token: false\n  use_regions: false\n  use_windows: false\n",
            "model.use_image_token: with model.use_regions and model.use_windows also false, the image would",
        ),
        (
            "model:\n  use_local: false\n  attention: both\n",
            "model.attention: 'both' has no effect with model.use_local: false",
        ),
        ("image:\n  init: imagenet\n", "image.init: 'imagenet' is not one of scratch, pretrained"),
        (
            "image:\n  init: scratch\n  frozen: false\n  pretrained_path: w.pth\n",
            "image.pretrained_path: is set, but image.init is scratch",
        ),
        ("image:\n  init: scratch\n  pretrained_path: null\n", "image.frozen: a frozen backbone keeps its"),
        ("model:\n  twin_global: true\n", "model.twin_global: the twin's score and the local score"),
        ("train:\n  sampler: shuffle\n", "train.sampler: 'shuffle' is not one of identity, random"),
        ("data:\n  val_ids_from_train: -1\n", "data.val_ids_from_train: must be >= 0, got -1"),
        ("data:\n  val_ids_from_train: 1.5\n", "data.val_ids_from_train: expected int"),
        ("data:\n  val_split_seed: -3\n", "data.val_split_seed: must be in [0, 4294967295], got -3"),
        ("train: 3\n", "train: expected a mapping"),
        ("[1, 2]\n", "expected a mapping of sections"),
    ],
)
def test_bad_params_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_params(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_override(tmp_path):
    path = write(tmp_path, STUDY)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_params(path, overrides=["train.lr"])
    with pytest.raises(ConfigError, match="'lr' is not a section.key"):
        load_params(path, overrides=["lr=3"])


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_round_trip_through_dict():
    params = load_params("params.yaml")
    assert params_from_dict(params_to_dict(params)) == params


def test_repository_paper_preset_is_the_paper_configuration(tmp_path):
    text = open("params.yaml").read().replace("preset: default", "preset: paper", 1)
    params = load_params(write(tmp_path, text))
    assert params.image.backbone.startswith("swin_tiny")
    assert (params.image.height, params.image.width) == (384, 128)
    assert params.text.encoder == "bert-base-uncased" and params.data.dataset == "cuhk-pedes"


def test_explain_section_is_read_apart_from_the_model_configuration(tmp_path):
    """The repository's free queries each name what the synthetic benchmark draws (several noun phrases);
    the section never reaches Params (a trained model's configuration), and its errors name the key."""
    from acsa.data.phrases import extract_noun_phrases

    config = load_explain_config("params.yaml")
    assert len(config.free_queries) >= 3 and 1 <= config.free_top_k <= 10
    assert all(len(extract_noun_phrases(q, 10)) >= 3 for q in config.free_queries)
    assert "explain" not in params_to_dict(load_params("params.yaml"))
    with pytest.raises(ConfigError, match=r"no explain section"):  # never silent defaults
        load_explain_config(write(tmp_path, "train:\n  lr: 0.1\n"))
    with pytest.raises(ConfigError, match=r"explain\.free_top_k: must be >= 1, got 0"):
        load_explain_config(write(tmp_path, "explain:\n  free_top_k: 0\n"))
    with pytest.raises(ConfigError, match=r"explain\.queries: unknown key"):
        load_explain_config(write(tmp_path, "explain:\n  queries: [a man]\n"))
    with pytest.raises(ConfigError, match=r"explain\.free_queries\[1\]: expected str"):
        load_explain_config(write(tmp_path, "explain:\n  free_queries: [a man, 3]\n"))


def test_a_params_file_holds_every_section(tmp_path):
    """An empty or partial file is refused, naming the missing sections: the stages never run on built-in
    defaults the user did not see."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"no data, synthetic, text, image, model, loss, train, evaluate"):
        load_params(empty)
    partial = tmp_path / "partial.yaml"
    partial.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"no data, synthetic, text, image, model, loss, evaluate sections"):
        load_params(partial)


def test_built_in_defaults_are_the_repository_params():
    """Every section's defaults (used for keys a file leaves out) equal params.yaml's values."""
    assert params_to_dict(Params()) == params_to_dict(load_params(REPO / "params.yaml", preset="default"))
