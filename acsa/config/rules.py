"""The value rule of every key of Params (RULES), the rules that relate keys (CROSS_RULES), and the check
that a pretrained backbone's weights file is named (acsa.config's docstring: how to write a rule)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from acsa.config.sections import DATASETS, ImageConfig, Params
from acsa.errors import ConfigError
from acsa.paths import resolve_backbone_weights

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
    "image.frozen": ANY,
    "image.views": POSITIVE,
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
    "model.twin_global": ANY,
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


def _twin_needs_the_second_score_free(p: Params) -> str | None:
    if p.model.twin_global and p.model.use_local:
        return "the twin's score and the local score cannot both be the second score: set use_local: false"
    return None


def _frozen_needs_pretrained_weights(image: ImageConfig) -> str | None:
    if image.frozen and image.init != "pretrained":
        return (
            "a frozen backbone keeps its weights, so they must be pretrained ones: set image.init: "
            "pretrained (and image.pretrained_path), or image.frozen: false"
        )
    return None


# (the key named in the error, a rule over the whole Params)
CROSS_RULES: list[tuple[str, Callable[[Params], str | None]]] = [
    ("image.pretrained_path", lambda p: _weights_without_pretrained_init(p.image)),
    ("train.batch_size", _whole_identities),
    ("model.use_image_token", _some_image_token),
    ("model.attention", _attention_needs_the_local_branch),
    ("model.twin_global", _twin_needs_the_second_score_free),
    ("image.frozen", lambda p: _frozen_needs_pretrained_weights(p.image)),
]

# Top-level keys that are not sections: the preset to apply, and tables of named override sets.
def _failed(key: str, why: str) -> ConfigError:
    return ConfigError(f"{key}{'' if why.startswith('[') else ': '}{why}")



def check_section(name: str, section: Any) -> Any:
    """Raise ConfigError naming the first key of the section dataclass `section` (params.yaml section `name`)
    whose value breaks its rule; return `section`."""
    for f in dataclasses.fields(section):
        why = RULES[f"{name}.{f.name}"](getattr(section, f.name))
        if why is not None:
            raise _failed(f"{name}.{f.name}", why)
    return section


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
    if not resolve_backbone_weights(image.pretrained_path).is_file():
        raise ConfigError(f"image.pretrained_path: {image.pretrained_path} not found")

