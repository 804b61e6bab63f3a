"""Params from a params file: the preset, a study configuration and `--set` overrides applied as dotted keys
(in that order), every value type-checked and ruled (acsa.config.rules). A params file must hold every
section that Params has: a missing one is an error, never a silent default."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from acsa.config.reading import META_KEYS, _DuplicateKey, load_yaml, read_params_file
from acsa.config.rules import CROSS_RULES, _failed, check_section
from acsa.config.sections import Params
from acsa.config.study import load_study
from acsa.errors import ConfigError
from acsa.paths import PARAMS


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


def build_section(name: str, cls: type, raw: Any) -> Any:
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


def params_from_dict(raw: dict[str, Any]) -> Params:
    """Build Params from a plain dict (sections may be partial; defaults fill the rest)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    hints = typing.get_type_hints(Params)
    sections = {}
    for name, value in raw.items():
        if name in META_KEYS:
            continue
        if name not in hints:
            known = ", ".join([*hints, *META_KEYS])
            raise ConfigError(f"{name}: unknown section (known: {known})")
        sections[name] = build_section(name, hints[name], value)
    params = Params(**sections)
    for key, rule in CROSS_RULES:
        why = rule(params)
        if why is not None:
            raise _failed(key, why)
    return params

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
    missing = [name for name in typing.get_type_hints(Params) if name not in raw]
    if missing:
        raise ConfigError(
            f"{path}: no {', '.join(missing)} section{'s' if len(missing) > 1 else ''}: a params file holds "
            "every section the stages read (copy them from the repository's params.yaml)"
        )
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

