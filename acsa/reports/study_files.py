"""The study's files as the ablation report (notebooks/ablations.py) reads them; nothing here trains or
scores.

  PARAMS `study`                               configurations, overrides, seeds, findings (acsa.config.study)
  FINDINGS (reports/findings.json)             per finding: a - b, its interval and verdict (findings stage)
  SUMMARY (reports/study_summary.json)         per configuration: mean, std and every run of each score kind
                                               and metric; per run the validation plateau (findings stage)
  EVAL_MAIN (reports/eval/main)                the main model's run (study.main with train.seed) ...
  STUDY_EVAL/<configuration>/seed-<s>          ... and every other run: metrics.json, fusion_curve.json
  LIVE/main, LIVE/study/<configuration>/seed-<s>   per-epoch curves (DVCLive, train stages)
  REFERENCE (reports/reference_points/metrics.json)  reference rankers and the text-feature diagnostic
                                               (reference_points stage; optional)

An absent file is not an error here: the run or section is left out and `StudyData.missing` says what was
not found, so the page states what is not computed instead of failing. A file that exists but lacks what the
stage writes is an error naming the file. No torch import, so the notebook kernel starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from acsa import paths
from acsa.config.loading import load_params
from acsa.config.study import METRICS, Study, load_study
from acsa.errors import DataError
from acsa.reports.notebook import as_list
from acsa.storage.files import read_json

METRIC_NAMES = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "mAP": "mAP", "mINP": "mINP"}
KINDS = ("global", "local", "fused")
SELECTION_CURVE = "val/selection_R1"  # DVCLive: validation R@1 of the final score, which picks the epoch
FINDING_KEYS = ("name", "a", "b", "metric", "seeds_a", "seeds_b", "mean_a", "mean_b", "difference")
FINDING_KEYS += ("ci_low", "ci_high", "verdict")


@dataclass(frozen=True)
class RunPlace:
    """Where one trained run's files are."""

    configuration: str
    seed: int
    eval_dir: Path
    live_dir: Path


@dataclass(frozen=True)
class Reference:
    """The reference_points stage's output, as far as the report uses it."""

    rankers: dict[str, str]  # name -> what it scores, in the stage's order
    test: dict[str, dict[str, float]]  # ranker -> metric -> test value (percent)
    text_features: dict[str, Any] | None  # the frozen text-feature diagnostic (acsa/analysis/text_binding.py)


@dataclass
class StudyData:
    study: Study
    main_seed: int
    shown: tuple[str, ...]  # the configurations the page shows, in params order
    metric: str  # the page's headline metric
    runs: tuple[RunPlace, ...] = ()
    metrics: dict[tuple[str, int], dict] = field(default_factory=dict)  # run -> its metrics.json
    fusion_curves: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    curves: pd.DataFrame | None = None  # configuration, seed, epoch (1-based), value: validation R@1
    findings: dict[str, dict] | None = None  # findings.json, the shown findings only
    summary: dict[str, dict] | None = None  # study_summary.json, the shown configurations only
    reference: Reference | None = None
    reference_missing: str | None = None  # why there are no reference points
    missing: list[str] = field(default_factory=list)  # one line per input not found

    def overrides(self, name: str) -> dict[str, Any]:
        return self.study.overrides(name)

    def seeds(self, name: str) -> list[int]:
        return sorted(run.seed for run in self.runs if run.configuration == name)


def run_places(study: Study, main_seed: int, eval_main: Path, study_eval: Path, live: Path) -> list[RunPlace]:
    """Every run of every configuration (the findings stage reads the same): the main model's run is the
    main configuration with train.seed; every other seed lies under study_eval/<configuration>/seed-<s>."""
    places = []
    for name in study.configurations:
        if name == study.main:
            places.append(
                RunPlace(name, main_seed, Path(eval_main), Path(live) / paths.run_name(paths.MODEL))
            )
        for seed in study.seeds_of(name, main_seed):
            run = paths.seed_dir(Path(name), seed)
            places.append(
                RunPlace(
                    name, seed, Path(study_eval) / run, Path(live) / paths.run_name(paths.STUDY_MODELS / run)
                )
            )
    return sorted(places, key=lambda p: (list(study.configurations).index(p.configuration), p.seed))


def read_curve(path: Path) -> pd.DataFrame | None:
    """A DVCLive tsv (step[, timestamp], value) as epoch (1-based), value; None if absent."""
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t")
    value = [c for c in table.columns if c not in ("step", "timestamp")]
    if "step" not in table.columns or len(value) != 1:
        raise DataError(f"{path}: expected the columns step and one value (a DVCLive plot)")
    return pd.DataFrame({"epoch": table["step"].astype(int) + 1, "value": table[value[0]].astype(float)})


def _check_findings(path: Path, raw: Any) -> dict[str, dict]:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object of finding name -> record")
    for name, record in raw.items():
        absent = [key for key in FINDING_KEYS if not isinstance(record, dict) or key not in record]
        if absent:
            raise DataError(f"{path}: finding {name!r} lacks {', '.join(absent)} (rerun dvc repro findings)")
    return raw


def _check_summary(path: Path, raw: Any) -> dict[str, dict]:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object of configuration -> summary")
    for name, entry in raw.items():
        absent = [
            key for key in ("seeds", "final_kind", "kinds") if not isinstance(entry, dict) or key not in entry
        ]
        if absent:
            raise DataError(
                f"{path}: configuration {name!r} lacks {', '.join(absent)} (rerun dvc repro findings)"
            )
    return raw


def load_reference(path: Path) -> tuple[Reference | None, str | None]:
    """(the reference points, None) or (None, why there are none)."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path} not found: the reference points are not computed (dvc repro reference_points)"
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object")
    if raw.get("available") is False:
        why = raw.get("reason", "no reason given")
        return None, f"no reference points on the {raw.get('dataset', 'chosen')} benchmark: {why}"
    test = raw.get("test")
    if not isinstance(test, dict) or not test:
        return None, f"{path}: no test figures of the reference rankers"
    described = raw.get("rankers") if isinstance(raw.get("rankers"), dict) else {}
    rankers = {
        name: str((described.get(name) or {}).get("description", "")) for name in described if name in test
    }
    rankers.update({name: "" for name in test if name not in rankers})
    test = {name: {m: float(v) for m, v in test[name].items() if m in METRICS} for name in rankers}
    text = raw.get("text_features") if isinstance(raw.get("text_features"), dict) else None
    return Reference(rankers, test, text), None


def _selected(study: Study, configurations: Any) -> tuple[str, ...]:
    wanted = as_list(configurations)
    if wanted is None:
        return tuple(study.configurations)
    unknown = [name for name in wanted if name not in study.configurations]
    if unknown:
        raise ValueError(
            f"configurations: unknown {unknown}; the study has {', '.join(study.configurations)}"
        )
    return tuple(name for name in study.configurations if name in wanted)


def load_study_data(
    params_file: str | Path = paths.PARAMS,
    findings_file: str | Path = paths.FINDINGS,
    summary_file: str | Path = paths.STUDY_SUMMARY,
    eval_main: str | Path = paths.EVAL,
    study_eval: str | Path = paths.STUDY_EVAL,
    live_dir: str | Path = paths.LIVE_ROOT,
    reference_file: str | Path | None = paths.REFERENCE_POINTS / "metrics.json",
    configurations: Any = None,
    metric: str | None = None,
) -> StudyData:
    """Everything the page shows, for the configurations picked (names, or None for every one)."""
    study = load_study(params_file)
    main_seed = load_params(params_file).train.seed
    shown = _selected(study, configurations)
    metric = metric or study.metric
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    data = StudyData(study, main_seed, shown, metric)
    places, curves = [], []
    for place in run_places(study, main_seed, Path(eval_main), Path(study_eval), Path(live_dir)):
        if place.configuration not in shown:
            continue
        key = (place.configuration, place.seed)
        places.append(place)
        metrics_file = place.eval_dir / "metrics.json"
        if metrics_file.is_file():
            data.metrics[key] = read_json(metrics_file)
            curve_file = place.eval_dir / "fusion_curve.json"
            data.fusion_curves[key] = read_json(curve_file) if curve_file.is_file() else []
        else:
            data.missing.append(f"{metrics_file} (not evaluated)")
        curve = read_curve(place.live_dir / "plots" / "metrics" / f"{SELECTION_CURVE}.tsv")
        if curve is None:
            data.missing.append(f"{place.live_dir} (no validation curve)")
        else:
            curves.append(curve.assign(configuration=place.configuration, seed=place.seed))
    data.runs = tuple(places)
    columns = ["configuration", "seed", "epoch", "value"]
    data.curves = pd.concat(curves, ignore_index=True)[columns] if curves else pd.DataFrame(columns=columns)
    findings_file, summary_file = Path(findings_file), Path(summary_file)
    if findings_file.is_file():
        records = _check_findings(findings_file, read_json(findings_file))
        data.findings = {
            f.name: records[f.name] for f in study.findings if f.name in records and {f.a, f.b} <= set(shown)
        }
        absent = [f.name for f in study.findings if f.name not in records]
        if absent:
            data.missing.append(
                f"{findings_file}: no record of {', '.join(absent)} (rerun dvc repro findings)"
            )
    else:
        data.missing.append(f"{findings_file} (the findings stage has not run)")
    if summary_file.is_file():
        summary = _check_summary(summary_file, read_json(summary_file))
        data.summary = {name: summary[name] for name in shown if name in summary}
        absent = [name for name in shown if name not in summary]
        if absent:
            data.missing.append(
                f"{summary_file}: no summary of {', '.join(absent)} (rerun dvc repro findings)"
            )
    else:
        data.missing.append(f"{summary_file} (the findings stage has not run)")
    if reference_file is not None:
        data.reference, data.reference_missing = load_reference(Path(reference_file))
        if data.reference_missing:
            data.missing.append(data.reference_missing)
    return data
