"""Backbone weights from a local file (`image.pretrained_path`): read without unpickling code, unwrapped from
common checkpoint wrappers, and renamed to timm's keys when the file is in a known foreign layout.

timm's own checkpoint filters then adapt what they know (e.g. Swin's relative-position tables for another
window size, the original Microsoft Swin checkpoints, a classifier of another size): see
`acsa.model.image_encoder.create_backbone`.

Known foreign layouts (CONVERTERS): torchvision's MobileNetV2 (`torchvision.models.mobilenet_v2`, e.g. the
ImageNet file `mobilenet_v2-b0353104.pth`) onto timm's `mobilenetv2_100`. The two networks are the same
(same convolutions, ReLU6, BatchNorm eps 1e-5, symmetric padding); only the names differ:

    torchvision                          timm
    features.0.0 / features.0.1          conv_stem / bn1                       the 3x3 stem and its BN
    features.1.conv.0.0 / .0.1           blocks.0.0.conv_dw / bn1              first block: depthwise
    features.1.conv.1 / .2               blocks.0.0.conv_pw / bn2              ... then pointwise
    features.i.conv.0.0 / .0.1           blocks.s.b.conv_pw / bn1              i = 2..17: expand 1x1
    features.i.conv.1.0 / .1.1           blocks.s.b.conv_dw / bn2              depthwise 3x3
    features.i.conv.2 / .3               blocks.s.b.conv_pwl / bn3             project 1x1 (linear)
    features.18.0 / features.18.1        conv_head / bn2                       the 1x1 head to 1280
    classifier.1                         classifier                            (dropout is classifier.0)

where block i (1..17) is block b of stage s in stage order, stages holding 1, 2, 3, 4, 3, 3, 1 blocks.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from acsa.errors import ConfigError, one_line

MOBILENET_V2_STAGES = (1, 2, 3, 4, 3, 3, 1)  # inverted-residual blocks per stage (width 1.0)
_FIRST_BLOCK = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_BLOCK = {
    "conv.0.0": "conv_pw",
    "conv.0.1": "bn1",
    "conv.1.0": "conv_dw",
    "conv.1.1": "bn2",
    "conv.2": "conv_pwl",
    "conv.3": "bn3",
}
_OUTER = {"features.0.0": "conv_stem", "features.0.1": "bn1", "features.18.0": "conv_head"}
_OUTER |= {"features.18.1": "bn2", "classifier.1": "classifier"}


def _mobilenet_v2_module(name: str) -> str:
    """timm's name of torchvision MobileNetV2 module `name` (a parameter's key without its last part)."""
    if name in _OUTER:
        return _OUTER[name]
    _, index, rest = name.split(".", 2)  # features.<i>.<rest>
    block = int(index) - 1
    for stage, count in enumerate(MOBILENET_V2_STAGES):
        if block < count:
            table = _FIRST_BLOCK if stage == 0 else _BLOCK
            return f"blocks.{stage}.{block}.{table[rest]}"
        block -= count
    raise KeyError(name)


def torchvision_mobilenet_v2_to_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision MobileNetV2 (width 1.0) weights under timm `mobilenetv2_100`'s keys (module docstring)."""
    out = {}
    for key, value in state.items():
        module, field = key.rsplit(".", 1)
        try:
            out[f"{_mobilenet_v2_module(module)}.{field}"] = value
        except (KeyError, ValueError):
            raise ConfigError(f"{key}: not a key of torchvision's MobileNetV2") from None
    return out


# timm architecture -> (a key that only the foreign layout has, its converter)
CONVERTERS: dict[str, tuple[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]]] = {
    "mobilenetv2_100": ("features.0.0.weight", torchvision_mobilenet_v2_to_timm),
}


def _read(path: Path) -> object:
    """The file's contents; anything that is not a readable weights file (garbage, a truncated file, a
    pickle that would run code: torch's weights-only loader refuses it) is a one-line ConfigError."""
    from safetensors import SafetensorError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, ValueError, EOFError, OSError) as err:
        reason = one_line(str(err).split("\n", 1)[0] or err)[:200]  # torch's messages run to a page
        kind = "safetensors" if path.suffix == ".safetensors" else "torch (.pth) weights"
        raise ConfigError(
            f"image.pretrained_path: {path} is not a readable {kind} file ({type(err).__name__}: {reason})"
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A local weights file (.safetensors, or a torch file of tensors, never unpickling code) as a flat state
    dict, unwrapped from a `state_dict` or `model` entry."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"image.pretrained_path: {path} not found")
    state = _read(path)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ConfigError(f"image.pretrained_path: {path} holds no weights (not a dict of named tensors)")
    return state


def load_backbone_weights(path: str | Path, architecture: str) -> dict[str, Tensor]:
    """The weights in `path` for timm model `architecture`, renamed from a known foreign layout."""
    state = load_state_dict_file(path)
    marker, convert = CONVERTERS.get(architecture, ("", None))
    if convert is not None and marker in state:
        try:
            return convert(state)
        except ConfigError as err:
            raise ConfigError(f"image.pretrained_path: {path}: {err}") from None
    return state
