"""The study's evaluated runs in one compact form, the findings' whole input (committed with the study, so
that a reviewer recomputes every interval from the repository without training: README, The study).

FOLDER/runs.json       one record per run: configuration, seed, the configuration it was trained with, what
                       validation chose (epoch, fusion weight and its curve, the validation R@1 after every
                       epoch), trainable parameters, test metrics per score kind
FOLDER/per_query.npz   `query_ids` [Q] and, per run, score kind and metric, each test query's share of the
                       metric in percent (float32 [Q]) under `<configuration>/seed-<seed>/<kind>/<metric>`;
                       numbers only (read with allow_pickle=False)

Reading checks what a hand-edited or damaged file could hold (`read_study_runs`): every record and array
present and well formed, values within [0, 100], and no two runs of one configuration with identical
per-query results (a run copied under another seed). That a run's recorded configuration is the one its
name and seed imply is checked against the params file by the findings stage (acsa.findings).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acsa.config.study import METRICS
from acsa.errors import DataError
from acsa.storage.files import atomic_output_file, read_json, write_json

RUNS_FILE = "runs.json"
PER_QUERY_FILE = "per_query.npz"
KINDS = ("global", "local", "fused")


@dataclass(frozen=True)
class Run:
    """One trained model's test results."""

    configuration: str
    seed: int
    query_ids: np.ndarray  # [Q] identity of each test query
    per_query: dict[str, dict[str, np.ndarray]]  # score kind -> metric -> [Q] (percent)
    validation_curve: tuple[float, ...] = ()  # validation selection R@1 after each epoch
    config: dict | None = None  # the configuration the run was trained with
    record: dict = field(default_factory=dict)  # its runs.json record (metrics, fusion curve, parameters)

    @property
    def final_kind(self) -> str:
        """The score a user of the model ranks by: fused when it has a second score, else global."""
        return "fused" if "fused" in self.per_query else "global"

    def values(self, metric: str, kind: str | None = None) -> np.ndarray:
        return np.asarray(self.per_query[kind or self.final_kind][metric], dtype=np.float64)


def run_key(configuration: str, seed: int) -> str:
    return f"{configuration}/seed-{seed}"


def run_record(configuration: str, seed: int, model_dir: Path, config: dict, summary: dict, results: dict):
    """A run's runs.json record from its model's configuration and training summary and its test results."""
    return {
        "configuration": configuration,
        "seed": seed,
        "model": str(model_dir),
        "config": config,
        "best_epoch": summary.get("best_epoch"),
        "fusion_weight": results["fusion_weight"],
        "fusion_curve": summary.get("fusion_curve", []),
        "validation_curve": summary.get("validation_curve", []),
        "trainable_parameters": summary.get("trainable_parameters"),
        "threads": summary.get("threads"),
        "val": results["val"],
        "test": results["test"],
    }


def write_study_runs(
    folder: Path,
    records: list[dict],
    query_ids: np.ndarray,
    per_query: dict[tuple[str, int], dict[str, dict[str, np.ndarray]]],
) -> None:
    """Write FOLDER/runs.json and FOLDER/per_query.npz (each atomically)."""
    arrays = {"query_ids": np.asarray(query_ids, dtype=np.int64)}
    for (configuration, seed), kinds in per_query.items():
        for kind, metrics in kinds.items():
            for metric, values in metrics.items():
                key = f"{run_key(configuration, seed)}/{kind}/{metric}"
                arrays[key] = np.asarray(values, dtype=np.float32)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output_file(folder / PER_QUERY_FILE) as temporary:
        with open(temporary, "wb") as out:
            np.savez_compressed(out, **arrays)
    write_json(folder / RUNS_FILE, records)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the evaluate_study stage: dvc repro)")
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz of numbers ({type(err).__name__}: {err})") from None


def _checked_values(path: Path, key: str, values: np.ndarray, count: int) -> np.ndarray:
    if values.shape != (count,) or not np.issubdtype(values.dtype, np.floating):
        got = f"{values.dtype} {list(values.shape)}"
        raise DataError(f"{path}: {key}: expected {count} float values, got {got}")
    if not np.isfinite(values).all() or values.min(initial=0) < 0 or values.max(initial=0) > 100:
        raise DataError(f"{path}: {key}: values outside [0, 100] (a metric's share is a percentage)")
    return values.astype(np.float64)


def read_study_runs(folder: Path) -> list[Run]:
    """Every run of FOLDER/runs.json with its per-query results, checked (module docstring)."""
    folder = Path(folder)
    runs_path, arrays_path = folder / RUNS_FILE, folder / PER_QUERY_FILE
    records = read_json(runs_path)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{runs_path}: expected a list of run records")
    arrays = _load_arrays(arrays_path)
    query_ids = arrays.get("query_ids")
    if query_ids is None or query_ids.ndim != 1 or not np.issubdtype(query_ids.dtype, np.integer):
        raise DataError(f"{arrays_path}: no integer query_ids [Q]")
    runs: list[Run] = []
    seen: dict[str, str] = {}
    for index, record in enumerate(records):
        where = f"{runs_path}: record {index}"
        configuration, seed = record.get("configuration"), record.get("seed")
        if not isinstance(configuration, str) or not isinstance(seed, int) or isinstance(seed, bool):
            raise DataError(f"{where}: no configuration name and integer seed")
        key = run_key(configuration, seed)
        if key in seen:
            raise DataError(f"{where}: {key} appears twice")
        seen[key] = where
        curve = record.get("validation_curve", [])
        if not isinstance(curve, list) or not all(isinstance(v, (int, float)) for v in curve):
            raise DataError(f"{where}: validation_curve: expected a list of numbers")
        kinds: dict[str, dict[str, np.ndarray]] = {}
        for kind in KINDS:
            names = [f"{key}/{kind}/{metric}" for metric in METRICS]
            present = [name in arrays for name in names]
            if not any(present):
                continue
            if not all(present):
                raise DataError(f"{arrays_path}: {key}/{kind}: not every metric of {', '.join(METRICS)}")
            kinds[kind] = {
                metric: _checked_values(arrays_path, name, arrays[name], len(query_ids))
                for metric, name in zip(METRICS, names, strict=True)
            }
        if "global" not in kinds:
            raise DataError(f"{arrays_path}: no per-query results of {key}")
        config = record.get("config")
        config = config if isinstance(config, dict) else None
        runs.append(Run(configuration, seed, query_ids, kinds, tuple(curve), config, record))
    _refuse_copies(runs, arrays_path)
    return runs


def _refuse_copies(runs: list[Run], path: Path) -> None:
    """Two seeds of one configuration with identical per-query results are one run counted twice."""
    by_configuration: dict[str, list[Run]] = {}
    for run in runs:
        by_configuration.setdefault(run.configuration, []).append(run)
    for configuration, group in by_configuration.items():
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                same = first.per_query.keys() == second.per_query.keys() and all(
                    np.array_equal(first.per_query[k][m], second.per_query[k][m])
                    for k in first.per_query
                    for m in METRICS
                )
                if same:
                    raise DataError(
                        f"{path}: {configuration} seeds {first.seed} and {second.seed} have identical "
                        "per-query results: one run copied under two seeds (retrain it: dvc repro)"
                    )


def runs_by_configuration(runs: list[Run]) -> dict[str, list[Run]]:
    grouped: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.configuration, r.seed)):
        grouped.setdefault(run.configuration, []).append(run)
    return grouped

