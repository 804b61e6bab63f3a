"""The study declared in params.yaml's `study` section: which configurations are trained, with which seeds,
and which pairs of configurations each finding compares.

    study:
      main: full                 # the main model's configuration (models/main: its run with train.seed)
      seeds: [0, 1, 2]           # every configuration is trained once per seed
      configurations:            # name -> overrides (section.key: value) of the sections above
        full: {}
        global_only: {model.use_local: false}
      optional:                  # known to --configuration / --study, not trained by dvc repro
        small_swin: {image.backbone: swin_tiny_patch4_window7_224}
      findings:                  # name -> the two configurations compared (a minus b) on `metric`
        local_alignment: {a: full, b: global_only}
      metric: R1                 # the metric of every finding (R1, R5, R10, mAP or mINP)
      confidence: 0.95           # of the bootstrap intervals
      resamples: 10000           # bootstrap resamples
      bootstrap_seed: 0

The section is read apart from the model configuration (acsa.config): changing a finding never invalidates
a trained model or a resumable checkpoint. Names are restricted to letters, digits, `_` and `-`, since they
become folder names and stage names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acsa.config.reading import read_params_file
from acsa.errors import ConfigError
from acsa.paths import PARAMS

METRICS = ("R1", "R5", "R10", "mAP", "mINP")
NAME = re.compile(r"[A-Za-z0-9_-]+")
SEED_KEY = "train.seed"


@dataclass(frozen=True)
class Finding:
    name: str
    a: str  # the configuration whose advantage is measured ...
    b: str  # ... over this one: difference = a - b


@dataclass(frozen=True)
class Study:
    main: str = "full"
    seeds: tuple[int, ...] = (0, 1, 2)
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    optional: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    metric: str = "R1"
    confidence: float = 0.95
    resamples: int = 10_000
    bootstrap_seed: int = 0

    def overrides(self, name: str) -> dict[str, Any]:
        """The overrides of configuration `name` (trained by the pipeline, or optional)."""
        table = {**self.configurations, **self.optional}
        if name not in table:
            raise ConfigError(f"study: unknown configuration {name!r} (known: {', '.join(table) or 'none'})")
        return dict(table[name])

    def seeds_of(self, name: str, main_seed: int) -> tuple[int, ...]:
        """The seeds a study stage trains for configuration `name`: all, except the main model's own run."""
        return tuple(s for s in self.seeds if not (name == self.main and s == main_seed))


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{key}: {value!r} is not a name of letters, digits, '_' or '-'")
    return value


def _configurations(key: str, table: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{key}: expected a mapping of name -> overrides")
    checked: dict[str, dict[str, Any]] = {}
    for name, overrides in table.items():
        _name(key, name)
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{key}.{name}: expected a mapping of section.key -> value")
        if SEED_KEY in overrides:
            raise ConfigError(f"{key}.{name}: sets {SEED_KEY}; seeds come from study.seeds")
        checked[name] = dict(overrides)
    return checked


def study_from_dict(raw: Any, origin: str = "study") -> Study:
    """Validate the `study` section (a mapping) into a Study; each problem is one line naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping, got {raw!r}")
    known = {
        "main",
        "seeds",
        "configurations",
        "optional",
        "findings",
        "metric",
        "confidence",
        "resamples",
        "bootstrap_seed",
    }
    for key in raw:
        if key not in known:
            raise ConfigError(f"{origin}.{key}: unknown key (known: {', '.join(sorted(known))})")
    configurations = raw.get("configurations") or {}
    if not isinstance(configurations, dict) or not configurations:
        raise ConfigError(f"{origin}.configurations: expected a non-empty mapping of name -> overrides")
    checked = _configurations(f"{origin}.configurations", configurations)
    optional = _configurations(f"{origin}.optional", raw.get("optional") or {})
    for name in set(checked) & set(optional):
        raise ConfigError(f"{origin}.optional.{name}: also a name of {origin}.configurations")
    main = _name(f"{origin}.main", raw.get("main", "full"))
    if main not in checked:
        raise ConfigError(f"{origin}.main: {main!r} is not one of {origin}.configurations")
    seeds = raw.get("seeds", [0, 1, 2])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(f"{origin}.seeds: expected a non-empty list of distinct non-negative integers")
    findings = []
    for name, pair in (raw.get("findings") or {}).items():
        _name(f"{origin}.findings", name)
        if not isinstance(pair, dict) or set(pair) != {"a", "b"}:
            raise ConfigError(f"{origin}.findings.{name}: expected {{a: CONFIGURATION, b: CONFIGURATION}}")
        for side in ("a", "b"):
            if pair[side] not in checked:
                raise ConfigError(f"{origin}.findings.{name}.{side}: {pair[side]!r} is not a configuration")
        findings.append(Finding(name, pair["a"], pair["b"]))
    metric = raw.get("metric", "R1")
    if metric not in METRICS:
        raise ConfigError(f"{origin}.metric: {metric!r} is not one of {', '.join(METRICS)}")
    confidence = raw.get("confidence", 0.95)
    if not isinstance(confidence, float) or not 0.5 <= confidence < 1.0:
        raise ConfigError(f"{origin}.confidence: expected a float in [0.5, 1), got {confidence!r}")
    resamples = raw.get("resamples", 10_000)
    if not isinstance(resamples, int) or isinstance(resamples, bool) or resamples < 100:
        raise ConfigError(f"{origin}.resamples: expected an integer >= 100, got {resamples!r}")
    bootstrap_seed = raw.get("bootstrap_seed", 0)
    if not isinstance(bootstrap_seed, int) or isinstance(bootstrap_seed, bool) or bootstrap_seed < 0:
        raise ConfigError(f"{origin}.bootstrap_seed: expected a non-negative integer, got {bootstrap_seed!r}")
    return Study(
        main, tuple(seeds), checked, optional, tuple(findings), metric, confidence, resamples, bootstrap_seed
    )


def load_study(path: str | Path = PARAMS) -> Study:
    """The `study` section of a params file, validated."""
    raw = read_params_file(path)
    if "study" not in raw:
        raise ConfigError(f"{path}: no study section")
    try:
        return study_from_dict(raw["study"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
