"""A params file read strictly: safe YAML in which a repeated key is an error, a mapping of sections whose
preset, preset names and study configuration names are checked (they become folder and stage names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from acsa.config.rules import NAME_PATTERN
from acsa.errors import ConfigError, one_line

# Top-level keys that are not sections: the preset to apply, and tables of named override sets.
NAMED_TABLES = ("presets",)
# `study` and `explain` are read apart (acsa.config.study, acsa.config.explain): they never change a model
META_KEYS = ("preset", *NAMED_TABLES, "study", "explain")


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
    if study is not None:  # its other keys are checked by acsa.config.study
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

