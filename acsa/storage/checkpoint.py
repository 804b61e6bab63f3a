"""The checkpoint file format: one safetensors file each, written atomically, never a pickle.

File format (format version 1): a standard safetensors file whose string metadata holds

    "acsa.format"          "checkpoint"
    "acsa.format_version"  "1"
    "acsa.structure"       JSON of {"model": ..., "optimizer": ..., "meta": ...}

In the structure JSON every tensor is replaced by {"__tensor__": name} and stored in the file under that name:
model weights as "model.<key>", optimizer tensors as "optim.state.<param id>.<key>", tensors in meta as
"meta.<path>". JSON cannot express tuples or non-string dict keys (AdamW's betas, the
optimizer's integer param ids), so they are tagged as {"__tuple__": [...]} and {"__items__": [[key, value]]}.
Floats round-trip exactly (Python writes the shortest repr that reads back to the same double).

Every file training writes has this format: the per-epoch checkpoints (model, optimizer, meta), the best
epoch's weights (optimizer None) and the trained model (optimizer None; meta holds the configuration, the
number of identities, the text hidden size and the training summary).
Nothing here calls pickle or torch.load: a pickle or torch.save file is refused before it is read.
Which files a training run keeps, and when it continues from one, is acsa.training.resume's business.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from acsa.errors import CheckpointError, NonFiniteError, one_line
from acsa.storage.files import durable_file, save_tensors

FORMAT_VERSION = "1"
_FORMAT, _VERSION, _STRUCTURE = "acsa.format", "acsa.format_version", "acsa.structure"
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


@dataclass(frozen=True)
class Checkpoint:
    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None
    meta: dict[str, Any]


# ---- writing -----------------------------------------------------------------------------------------------


def save_checkpoint(
    path: Path, model_state: dict[str, Tensor], optimizer_state: dict | None, meta: dict
) -> None:
    """Write model, optimizer state and meta (config, epoch, step, RNG state, metrics...) to one file."""
    tensors: dict[str, Tensor] = {}
    structure = {
        "model": _encode(model_state, "model", tensors),
        "optimizer": _encode(optimizer_state, "optim", tensors),
        "meta": _encode(meta, "meta", tensors),
    }
    metadata = {_FORMAT: "checkpoint", _VERSION: FORMAT_VERSION, _STRUCTURE: json.dumps(structure)}
    _atomic_save(Path(path), tensors, metadata)


def _encode(value: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-ready copy of `value`; tensors move into `tensors` under `name` (their path in the structure)."""
    if isinstance(value, Tensor):
        while name in tensors:  # a dict key containing "." could repeat a path
            name += "_"
        tensors[name] = value
        return {_TENSOR: name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]
        return items if isinstance(value, list) else {_TUPLE: items}
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: _encode(v, f"{name}.{key}", tensors) for key, v in value.items()}
        if any(isinstance(key, Tensor) for key in value):
            raise TypeError(f"checkpoint: {name} has a tensor as a dict key")
        return {
            _ITEMS: [
                [_encode(key, name, tensors), _encode(v, f"{name}.{key}", tensors)]
                for key, v in value.items()
            ]
        }
    raise TypeError(
        f"checkpoint: cannot store {type(value).__name__} at {name} (tensor or JSON value expected)"
    )


def _atomic_save(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path` (atomic on POSIX)."""
    with durable_file(path) as tmp:
        save_tensors(_storable(tensors), tmp, metadata=metadata)


def _storable(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, detached tensors; tensors sharing storage are copied (safetensors refuses them)."""
    out: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages and tensor.numel():
            tensor = tensor.clone()
            storage = tensor.untyped_storage().data_ptr()
        storages.add(storage)
        out[name] = tensor
    return out


# ---- reading -----------------------------------------------------------------------------------------------


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a file written by `save_checkpoint`; anything else raises `CheckpointError`.

    Keep the default "cpu" when resuming: `optimizer.load_state_dict` moves state to the parameters' device
    itself, and a non-capturable AdamW expects its `step` tensors on the CPU.
    """
    path = Path(path)
    with _open(path, "checkpoint", map_location) as (f, metadata):
        structure = _parse_json(path, metadata, _STRUCTURE)
        decoded = _decode_all(path, structure, set(f.keys()), f.get_tensor)
    if not isinstance(decoded, dict) or set(decoded) != {"model", "optimizer", "meta"}:
        raise CheckpointError(f"{path}: structure is not {{model, optimizer, meta}}")
    return Checkpoint(decoded["model"], decoded["optimizer"], decoded["meta"])


class NonFiniteWeightsError(CheckpointError, NonFiniteError):
    """A checkpoint whose weights hold a NaN or an infinity: a CheckpointError (the file is unusable) that
    exits with the non-finite status, 3, as README says of non-finite weights."""


def check_finite_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """Raise NonFiniteWeightsError naming the first float tensor of `tensors` (read from `path`) that holds a
    NaN or an infinity: training never saves such weights, so the file is damaged (one flipped bit can make a
    float NaN, and a model of NaN scores would rank every match first)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise NonFiniteWeightsError(
                    f"{path}: tensor {name} holds {bad} NaN or infinite values (a damaged file: retrain it, "
                    "dvc repro)"
                )


def check_checkpoint(path: Path) -> None:
    """Raise CheckpointError unless `path` is a checkpoint that opens and parses (header, structure)."""
    path = Path(path)
    with _open(path, "checkpoint", "cpu") as (f, metadata):
        _decode_all(path, _parse_json(path, metadata, _STRUCTURE), set(f.keys()), lambda name: None)


@contextmanager
def _open(path: Path, kind: str, map_location: str | torch.device) -> Iterator[tuple[Any, dict[str, str]]]:
    """Sniff the file, open it with safetensors and check its acsa format; yields (handle, metadata)."""
    _sniff(path)
    try:
        handle = safe_open(str(path), framework="pt", device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(err)})") from None
    with handle as f:
        metadata = f.metadata() or {}
        if _FORMAT not in metadata:
            raise CheckpointError(f"{path}: a safetensors file without acsa metadata (foreign file)")
        if metadata[_FORMAT] != kind or metadata.get(_VERSION) != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: holds acsa {metadata[_FORMAT]!r} version {metadata.get(_VERSION)!r}, "
                f"expected {kind!r} version {FORMAT_VERSION!r}"
            )
        yield f, metadata


def _sniff(path: Path) -> None:
    """Refuse pickles, zip archives (torch.save) and truncated headers with a message saying which."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({one_line(err)})") from None
    if len(head) < 9 or head[8:9] != b"{":  # safetensors: 8-byte header length, then the JSON header
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(f"{path}: a zip archive (torch.save output?); refusing to unpickle it")
        if head.startswith(b"\x80"):
            raise CheckpointError(f"{path}: a pickle; refusing to unpickle it")
        raise CheckpointError(f"{path}: not a safetensors file ({size} bytes, no JSON header)")
    if 8 + int.from_bytes(head[:8], "little") > size:
        raise CheckpointError(f"{path}: truncated (header longer than the {size}-byte file)")


def _parse_json(path: Path, metadata: dict[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: metadata {key} missing or not JSON ({one_line(err)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: metadata {key} is nested too deeply") from None


def _decode_all(path: Path, structure: Any, stored: set[str], get_tensor: Callable[[str], Any]) -> Any:
    """Rebuild the Python structure; every tensor it names must be stored and every stored tensor named."""
    used: set[str] = set()

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {_TENSOR}:
            name = value[_TENSOR]
            if name not in stored:
                raise CheckpointError(f"{path}: tensor {name!r} named in the structure is not stored")
            used.add(name)
            return get_tensor(name)
        if set(value) == {_TUPLE}:
            return tuple(decode(v) for v in value[_TUPLE])
        if set(value) == {_ITEMS}:
            return {_hashable(decode(k)): decode(v) for k, v in value[_ITEMS]}
        return {k: decode(v) for k, v in value.items()}

    try:
        decoded = decode(structure)
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, SafetensorError) as err:  # a structure this code did not write
        raise CheckpointError(f"{path}: malformed structure ({one_line(err)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: malformed structure (nested too deeply)") from None
    if used != stored:
        raise CheckpointError(f"{path}: {len(stored - used)} stored tensors are not named in the structure")
    return decoded


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key
