"""Which runs a pool trains (acsa.training.runs): the study's, the convergence check's, the learning-rate
sweep's and the optional end-to-end confirmation's, each a list of planned runs read off params.yaml's
`study` section. A planned run is a configuration of the study, a seed, overrides of its own and the folder
(under the stage's output) it is trained into.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from acsa import paths
from acsa.config.loading import load_params
from acsa.config.study import Study

PLANS = ("study", "convergence", "sweep", "end_to_end")


@dataclass(frozen=True)
class Planned:
    configuration: str
    seed: int
    overrides: tuple[str, ...]  # section.key=value, applied after the configuration's own
    folder: Path  # relative to the stage's output folder


def study_plan(study: Study, names: list[str], main_seed: int) -> list[Planned]:
    """Every seed of every configuration of `names`, but the main model's own run (models/main)."""
    return [
        Planned(name, seed, (), paths.seed_dir(Path(name), seed))
        for name in names
        for seed in study.seeds_of(name, main_seed)
    ]


def convergence_plan(study: Study, params_file: Path, overrides: list[str]) -> list[Planned]:
    """Every seed of study.convergence.configurations at epochs_factor x the configuration's budget."""
    planned = []
    for name in study.convergence.configurations:
        epochs = load_params(params_file, configuration=name, overrides=overrides).train.epochs
        longer = (f"train.epochs={round(epochs * study.convergence.epochs_factor)}",)
        planned += [Planned(name, seed, longer, paths.seed_dir(Path(name), seed)) for seed in study.seeds]
    return planned


def sweep_plan(study: Study, params_file: Path, overrides: list[str]) -> list[Planned]:
    """Every configuration at every learning rate of the grid (study.sweep.seed, the configured budget),
    and the main configuration at its own learning rate with the budgets of study.sweep.main_epochs."""
    sweep = study.sweep
    planned = [
        Planned(name, sweep.seed, (f"train.lr={lr}",), Path(name) / f"lr-{lr:g}")
        for name in study.configurations
        for lr in sweep.learning_rates
    ]
    main_lr = load_params(params_file, configuration=study.main, overrides=overrides).train.lr
    for epochs in sweep.main_epochs:
        folder = Path(study.main) / f"lr-{main_lr:g}-epochs-{epochs}"
        budget = (f"train.lr={main_lr}", f"train.epochs={epochs}")
        planned.append(Planned(study.main, sweep.seed, budget, folder))
    return planned


def end_to_end_plan(study: Study) -> list[Planned]:
    """The optional confirmation: study.end_to_end's configurations at its seeds, end to end."""
    e2e = study.end_to_end
    return [
        Planned(
            name,
            seed,
            tuple(f"{key}={json.dumps(value)}" for key, value in e2e.overrides_of(name).items()),
            paths.seed_dir(Path(name), seed),
        )
        for name in e2e.configurations
        for seed in e2e.seeds
    ]


def plan(kind: str, study: Study, params_file: Path, overrides: list[str], main_seed: int) -> list[Planned]:
    """The runs of plan `kind` (one of PLANS)."""
    if kind == "study":
        return study_plan(study, list(study.configurations), main_seed)
    if kind == "convergence":
        return convergence_plan(study, params_file, overrides)
    if kind == "sweep":
        return sweep_plan(study, params_file, overrides)
    if kind == "end_to_end":
        return end_to_end_plan(study)
    raise ValueError(f"unknown plan {kind!r} (known: {', '.join(PLANS)})")
