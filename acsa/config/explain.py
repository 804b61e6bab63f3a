"""The `explain` section of params.yaml, read apart from the model configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from acsa.config.loading import build_section
from acsa.config.reading import read_params_file
from acsa.errors import ConfigError
from acsa.paths import PARAMS


@dataclass(frozen=True)
class ExplainConfig:
    """params.yaml `explain`: what the explain stage shows besides the test captions. Read apart from the
    model configuration (as `study` is), so that changing a query never touches a trained model, a resumable
    checkpoint or a search index made with the model."""

    free_queries: list[str] = field(default_factory=list)  # plain-English queries run through acsa.search
    free_top_k: int = 5  # results kept (and drawn) per free query


def load_explain_config(path: str | Path = PARAMS) -> ExplainConfig:
    """The `explain` section of a params file, validated strictly; a file without one is an error."""
    raw = read_params_file(path)
    if "explain" not in raw:
        raise ConfigError(f"{path}: no explain section (the explain stage reads it)")
    try:
        config = build_section("explain", ExplainConfig, raw["explain"] or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config

