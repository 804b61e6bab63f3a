"""The study declared in params.yaml's `study` section: which configurations are trained, with which seeds,
which pairs of configurations each finding compares and how a finding is judged.

    study:
      main: full                 # the main model's configuration (models/main: its run with train.seed)
      seeds: [0, 1, 2, 3, 4]     # every configuration is trained once per seed (at least two)
      configurations:            # name -> overrides (section.key: value) of the sections above
        full: {}
        global_only: {model.use_local: false}
      optional:                  # known to --configuration / --study, not trained by dvc repro
        small_swin: {image.backbone: swin_tiny_patch4_window7_224}
      findings:                  # name -> a minus b on `metric`, with the claim of the paper it tests;
        local_alignment:         # a_score / b_score: compare one score kind (global, local, fused)
          {a: full, b: global_only, claim: local alignment}   # instead of each run's final score
      metric: R1                 # the metric of every finding (R1, R5, R10, mAP or mINP)
      confidence: 0.95           # of the intervals (acsa.analysis.intervals); Holm-adjusted across findings
      equivalence_margin: 2.0    # "equivalent" only inside +-this many points (declared before the run)
      convergence:               # the same runs trained with epochs_factor x the budget, validation only
        configurations: [full, global_only]
        epochs_factor: 1.5
      sweep:                     # every configuration's learning rate from one validation grid, one seed
        learning_rates: [1.0e-3, 2.0e-3, 4.0e-3]
        seed: 0
        main_epochs: [12, 24]    # the main configuration also at these budgets
      end_to_end:                # optional confirmation: the backbone trained too (acsa/optional.yaml)
        seeds: [0, 1, 2]
        configurations: [full, global_only]
        overrides: {image.frozen: false}            # applied after each configuration's own
        learning_rates: {full: 2.0e-3, global_only: 4.0e-3}

The section is read apart from the model configuration: changing a finding never invalidates a trained
model or a resumable checkpoint. Names are restricted to letters, digits, `_` and `-`, since they become
folder names and stage names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acsa.config.reading import read_params_file
from acsa.errors import ConfigError
from acsa.paths import PARAMS, seed_dir

METRICS = ("R1", "R5", "R10", "mAP", "mINP")
SCORE_KINDS = ("global", "local", "fused")
NAME = re.compile(r"[A-Za-z0-9_-]+")
SEED_KEY = "train.seed"


@dataclass(frozen=True)
class Finding:
    name: str
    a: str  # the configuration whose advantage is measured ...
    b: str  # ... over this one: difference = a - b
    claim: str | None = None  # the paper's claim it tests (the report's first table groups by it)
    a_score: str | None = None  # a score kind of a to compare (default: each run's final score)
    b_score: str | None = None


@dataclass(frozen=True)
class Convergence:
    """The runs of `configurations` (every seed) also trained with epochs_factor x train.epochs."""

    configurations: tuple[str, ...] = ()
    epochs_factor: float = 1.5


@dataclass(frozen=True)
class Sweep:
    """The learning-rate grid every configuration is trained with on validation (one seed), and the extra
    budgets of the main configuration."""

    learning_rates: tuple[float, ...] = ()
    seed: int = 0
    main_epochs: tuple[int, ...] = ()


@dataclass(frozen=True)
class EndToEnd:
    """The optional confirmation: `configurations` trained end to end (the backbone too) at `seeds`."""

    seeds: tuple[int, ...] = ()
    configurations: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    learning_rates: dict[str, float] = field(default_factory=dict)

    def overrides_of(self, name: str) -> dict[str, Any]:
        return {**self.overrides, "train.lr": self.learning_rates[name]}


@dataclass(frozen=True)
class Study:
    main: str = "full"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    optional: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    metric: str = "R1"
    confidence: float = 0.95
    equivalence_margin: float | None = None
    convergence: Convergence = field(default_factory=Convergence)
    sweep: Sweep = field(default_factory=Sweep)
    end_to_end: EndToEnd = field(default_factory=EndToEnd)

    def overrides(self, name: str) -> dict[str, Any]:
        """The overrides of configuration `name` (trained by the pipeline, or optional)."""
        table = {**self.configurations, **self.optional}
        if name not in table:
            raise ConfigError(f"study: unknown configuration {name!r} (known: {', '.join(table) or 'none'})")
        return dict(table[name])

    def seeds_of(self, name: str, main_seed: int) -> tuple[int, ...]:
        """The seeds a study stage trains for configuration `name`: all, except the main model's own run."""
        return tuple(s for s in self.seeds if not (name == self.main and s == main_seed))

    def run_folder(self, name: str, seed: int, main_seed: int, main_dir: Path, models: Path) -> Path:
        """Where the model of run (name, seed) is: the main model's own run (the main configuration with
        train.seed) is `main_dir`, every other run `models`/<name>/seed-<seed>."""
        if name == self.main and seed == main_seed:
            return Path(main_dir)
        return seed_dir(Path(models) / name, seed)


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{key}: {value!r} is not a name of letters, digits, '_' or '-'")
    return value


def _overrides(key: str, overrides: Any) -> dict[str, Any]:
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{key}: expected a mapping of section.key -> value")
    if SEED_KEY in overrides:
        raise ConfigError(f"{key}: sets {SEED_KEY}; seeds come from study.seeds")
    return dict(overrides)


def _configurations(key: str, table: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{key}: expected a mapping of name -> overrides")
    return {_name(key, name): _overrides(f"{key}.{name}", overrides) for name, overrides in table.items()}


def _seeds(key: str, seeds: Any, least: int) -> tuple[int, ...]:
    if (
        not isinstance(seeds, list)
        or len(seeds) < least
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(f"{key}: expected a list of at least {least} distinct non-negative integers")
    return tuple(seeds)


def _names_of(key: str, names: Any, known: dict) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{key}: expected a list of configuration names")
    for name in names:
        if name not in known:
            raise ConfigError(f"{key}: {name!r} is not one of study.configurations")
    return tuple(names)


def _keys(key: str, raw: Any, known: set[str]) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a mapping")
    for name in raw:
        if name not in known:
            raise ConfigError(f"{key}.{name}: unknown key (known: {', '.join(sorted(known))})")
    return raw


def _number(key: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise ConfigError(f"{key}: expected a number in ({low}, {high}), got {value!r}")
    return float(value)


def _findings(key: str, raw: Any, configurations: dict) -> tuple[Finding, ...]:
    findings = []
    for name, spec in _keys(key, raw or {}, set(raw or {})).items():
        _name(key, name)
        where = f"{key}.{name}"
        if not isinstance(spec, dict) or not {"a", "b"} <= set(spec):
            raise ConfigError(f"{where}: expected {{a: CONFIGURATION, b: CONFIGURATION, claim: TEXT}}")
        _keys(where, spec, {"a", "b", "claim", "a_score", "b_score"})
        for side in ("a", "b"):
            if spec[side] not in configurations:
                raise ConfigError(f"{where}.{side}: {spec[side]!r} is not a configuration")
            kind = spec.get(f"{side}_score")
            if kind is not None and kind not in SCORE_KINDS:
                raise ConfigError(f"{where}.{side}_score: {kind!r} is not one of {', '.join(SCORE_KINDS)}")
        claim = spec.get("claim")
        if claim is not None and (not isinstance(claim, str) or not claim.strip()):
            raise ConfigError(f"{where}.claim: expected the text of a claim")
        findings.append(Finding(name, spec["a"], spec["b"], claim, spec.get("a_score"), spec.get("b_score")))
    return tuple(findings)


def _convergence(key: str, raw: Any, configurations: dict) -> Convergence:
    raw = _keys(key, raw or {}, {"configurations", "epochs_factor"})
    names = _names_of(f"{key}.configurations", raw.get("configurations", []), configurations)
    return Convergence(names, _number(f"{key}.epochs_factor", raw.get("epochs_factor", 1.5), 1.0))


def _sweep(key: str, raw: Any) -> Sweep:
    raw = _keys(key, raw or {}, {"learning_rates", "seed", "main_epochs"})
    rates = raw.get("learning_rates", [])
    if not isinstance(rates, list):
        raise ConfigError(f"{key}.learning_rates: expected a list of learning rates")
    epochs = raw.get("main_epochs", [])
    whole = all(isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in epochs or [])
    if not isinstance(epochs, list) or not whole:
        raise ConfigError(f"{key}.main_epochs: expected a list of epoch budgets (whole numbers > 0)")
    seed = _seeds(f"{key}.seed", [raw.get("seed", 0)], 1)[0]
    rates = tuple(_number(f"{key}.learning_rates[{i}]", r, 0.0, 1.0) for i, r in enumerate(rates))
    return Sweep(rates, seed, tuple(epochs))


def _end_to_end(key: str, raw: Any, configurations: dict) -> EndToEnd:
    raw = _keys(key, raw or {}, {"seeds", "configurations", "overrides", "learning_rates"})
    if not raw:
        return EndToEnd()
    names = _names_of(f"{key}.configurations", raw.get("configurations", []), configurations)
    rates = _keys(f"{key}.learning_rates", raw.get("learning_rates") or {}, set(names))
    for name in names:
        if name not in rates:
            raise ConfigError(f"{key}.learning_rates: no learning rate for {name}")
        _number(f"{key}.learning_rates.{name}", rates[name], 0.0, 1.0)
    return EndToEnd(
        _seeds(f"{key}.seeds", raw.get("seeds"), 2),
        names,
        _overrides(f"{key}.overrides", raw.get("overrides")),
        {name: float(rates[name]) for name in names},
    )


def study_from_dict(raw: Any, origin: str = "study") -> Study:
    """Validate the `study` section (a mapping) into a Study; each problem is one line naming the key."""
    known = {
        "main",
        "seeds",
        "configurations",
        "optional",
        "findings",
        "metric",
        "confidence",
        "equivalence_margin",
        "convergence",
        "sweep",
        "end_to_end",
    }
    raw = _keys(origin, raw, known)
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
    metric = raw.get("metric", "R1")
    if metric not in METRICS:
        raise ConfigError(f"{origin}.metric: {metric!r} is not one of {', '.join(METRICS)}")
    confidence = raw.get("confidence", 0.95)
    if not isinstance(confidence, float) or not 0.5 <= confidence < 1.0:
        raise ConfigError(f"{origin}.confidence: expected a float in [0.5, 1), got {confidence!r}")
    margin = raw.get("equivalence_margin")
    return Study(
        main=main,
        seeds=_seeds(f"{origin}.seeds", raw.get("seeds", [0, 1, 2, 3, 4]), 2),
        configurations=checked,
        optional=optional,
        findings=_findings(f"{origin}.findings", raw.get("findings"), checked),
        metric=metric,
        confidence=confidence,
        equivalence_margin=None if margin is None else _number(f"{origin}.equivalence_margin", margin, 0.0),
        convergence=_convergence(f"{origin}.convergence", raw.get("convergence"), checked),
        sweep=_sweep(f"{origin}.sweep", raw.get("sweep")),
        end_to_end=_end_to_end(f"{origin}.end_to_end", raw.get("end_to_end"), checked),
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
