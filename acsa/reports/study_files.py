"""The study's files as the ablation report (notebooks/ablations.py) reads them; nothing here trains or
scores. Every input is a committed file (the per-run folders are not read):

  PARAMS `study` and sections   configurations and their overrides, seeds, findings and claims, margin,
                                convergence, sweep and end-to-end plans (acsa.config.study); the protocol
                                (image.*, train.*) and each configuration's settings (acsa.config.loading)
  FINDINGS (findings.json)      per finding and query subset: a - b, raw and Holm-adjusted interval, verdict
  SUMMARY (study_summary.json)  per configuration: mean, std and runs per score kind and metric, trainable
                                parameters, plateau; the subsets' sizes, margin, convergence check
  RUNS (study/runs.json)        every run: configuration, seed, what validation chose, curves, test metrics
  PROBES (probes.json)          linear attribute probes: the frozen backbone and each configuration
  CONVERGENCE (convergence.json)  the longer-budget runs' validation curves
  REFERENCE (reference_points/metrics.json, query_subsets.json)  reference rankers, the text-feature
                                diagnostic and the counts of the test-query subsets
  SWEEP (sweep.json), END_TO_END (end_to_end/findings.json)  the optional pipeline's, when it was run

An absent file is not an error here: its sections say what is not computed, and `StudyData.missing` lists
the required inputs that were not found. A file that exists but lacks what its stage writes is an error
naming the file. No torch import, so the notebook kernel starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acsa import paths
from acsa.analysis.convergence import read_convergence
from acsa.config.loading import load_params
from acsa.config.sections import Params
from acsa.config.study import METRICS, Study, load_study
from acsa.errors import DataError
from acsa.reports.notebook import as_list
from acsa.storage.files import read_json

METRIC_NAMES = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "mAP": "mAP", "mINP": "mINP"}
KINDS = ("global", "local", "fused")
ALL, FINE = "all", "fine_evidence"  # the findings' query subsets (acsa.analysis.findings, acsa.findings)
FINDING_KEYS = ("a", "b", "a_score", "b_score", "seeds_a", "seeds_b", "subsets")
SUBSET_KEYS = ("queries", "mean_a", "mean_b", "difference", "ci_low", "ci_high", "p_holm")
SUBSET_KEYS += ("adjusted_low", "adjusted_high", "verdict")
RUN_KEYS = ("configuration", "seed", "best_epoch", "fusion_weight", "validation_curve", "test")
RERUN = "rerun dvc repro findings"


@dataclass(frozen=True)
class Reference:
    """The reference_points stage's output, as far as the report uses it."""

    rankers: dict[str, str]  # name -> what it scores, in the stage's order
    test: dict[str, dict[str, float]]  # ranker -> metric -> test value (percent)
    text_features: dict[str, Any] | None  # the frozen text-feature diagnostic (acsa/analysis/text_binding.py)


@dataclass
class StudyData:
    study: Study
    params: Params  # params.yaml without any configuration's overrides: the protocol they share
    settings: dict[str, Params]  # per shown configuration: params.yaml after its overrides
    shown: tuple[str, ...]  # the configurations the page shows, in params order
    metric: str  # the metric of the figures and placements (the findings use study.metric)
    findings: dict[str, dict] | None = None  # findings.json, the findings between shown configurations
    family: int = 0  # the intervals Holm adjusted together: every finding of the file x its subsets
    summary: dict[str, dict] | None = None  # study_summary.json's configurations, the shown ones
    subsets: dict[str, int] = field(default_factory=dict)  # query subset -> number of test queries
    convergence: dict | None = None  # study_summary.json's convergence check
    margin: float | None = None  # the equivalence margin the verdicts were read with
    runs: list[dict] = field(default_factory=list)  # runs.json records of the shown configurations
    longer_runs: list[dict] | None = None  # convergence.json: the same runs at a longer budget
    probes: dict | None = None
    probes_missing: str | None = None  # why there are no probes
    reference: Reference | None = None
    reference_missing: str | None = None  # why there are no reference points
    query_counts: dict[str, int] | None = None  # query_subsets.json's counts
    sweep: list[dict] | None = None  # the optional learning-rate sweep's records
    end_to_end: dict | None = None  # the optional end-to-end confirmation's findings and agreement
    missing: list[str] = field(default_factory=list)  # one line per required input not found
    files: dict[str, str] = field(default_factory=dict)  # input -> the path it was read from

    def overrides(self, name: str) -> dict[str, Any]:
        return self.study.overrides(name)

    def seeds(self, name: str) -> list[int]:
        return sorted(run["seed"] for run in self.runs if run["configuration"] == name)

    def final_kind(self, name: str) -> str | None:
        """The score configuration `name` ranks by (fused with a second score, else global): the summary's,
        else its runs'; None when neither file knows it."""
        if name in (self.summary or {}):
            return (self.summary or {})[name]["final_kind"]
        tests = [run["test"] for run in self.runs if run["configuration"] == name]
        return None if not tests else "fused" if "fused" in tests[0] else "global"


def _require(path: Path, record: Any, keys: tuple[str, ...], what: str) -> None:
    """A record of `path` that lacks any of `keys` is an error naming the file and the record."""
    absent = [key for key in keys if not isinstance(record, dict) or key not in record]
    if absent:
        raise DataError(f"{path}: {what} lacks {', '.join(absent)} ({RERUN})")


def check_findings(path: Path, raw: Any) -> dict[str, dict]:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object of finding name -> record")
    for name, record in raw.items():
        _require(path, record, FINDING_KEYS, f"finding {name!r}")
        if ALL not in record["subsets"]:
            raise DataError(f"{path}: finding {name!r} has no result on all queries ({RERUN})")
        for subset, result in record["subsets"].items():
            _require(path, result, SUBSET_KEYS, f"finding {name!r} on {subset!r}")
    return raw


def check_summary(path: Path, raw: Any) -> dict[str, Any]:
    _require(path, raw, ("configurations",), "the summary")
    for name, entry in raw["configurations"].items():
        _require(path, entry, ("seeds", "final_kind", "kinds"), f"configuration {name!r}")
    return raw


def check_runs(path: Path, raw: Any) -> list[dict]:
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a list of run records")
    for index, record in enumerate(raw):
        _require(path, record, RUN_KEYS, f"record {index}")
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


def load_probes(path: Path) -> tuple[dict | None, str | None]:
    """(probes.json, None) or (None, why there are none)."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path} not found: the probes were not computed (dvc repro probe)"
    raw = read_json(path)
    if isinstance(raw, dict) and raw.get("available") is False:
        return None, f"no probes: {raw.get('reason', 'no reason given')}"
    _require(path, raw, ("backbone", "configurations", "attributes"), "the probes")
    return raw, None


def load_query_counts(path: Path) -> dict[str, int] | None:
    """query_subsets.json's counts (queries, coarse_solved, fine_evidence, neither); None if absent."""
    path = Path(path)
    if not path.is_file():
        return None
    raw = read_json(path)
    if isinstance(raw, dict) and raw.get("available") is False:
        return None
    _require(path, raw, ("counts",), "the query subsets")
    return {key: int(value) for key, value in raw["counts"].items()}


def load_optional(path: Path | None, keys: tuple[str, ...]) -> Any:
    """An output of the optional pipeline (optional/dvc.yaml), or None when it was not run."""
    if path is None or not Path(path).is_file():
        return None
    raw = read_json(path)
    for index, record in enumerate(raw if isinstance(raw, list) else [raw]):
        _require(Path(path), record, keys, f"record {index}" if isinstance(raw, list) else "the file")
    return raw


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


def _found(data: StudyData, path: Path, stage: str) -> bool:
    """Whether `path` exists; when not, the page's list of inputs not found says which stage writes it."""
    if not path.is_file():
        data.missing.append(f"{path} (the {stage} stage has not run)")
    return path.is_file()


def _lacking(data: StudyData, path: Path, what: str, names: list[str], rerun: str = RERUN) -> None:
    """Lists the records of `path` that the page looks for and the file lacks (a stale or partial file)."""
    if names:
        data.missing.append(f"{path}: no {what} of {', '.join(names)} ({rerun})")


def _read_findings(data: StudyData, path: Path) -> None:
    if not _found(data, path, "findings"):
        return
    records = check_findings(path, read_json(path))
    data.family = sum(len(record["subsets"]) for record in records.values())
    shown = set(data.shown)
    data.findings = {
        f.name: records[f.name] for f in data.study.findings if f.name in records and {f.a, f.b} <= shown
    }
    _lacking(data, path, "record", [f.name for f in data.study.findings if f.name not in records])


def _read_summary(data: StudyData, path: Path) -> None:
    if not _found(data, path, "findings"):
        return
    raw = check_summary(path, read_json(path))
    table = raw["configurations"]
    data.summary = {name: table[name] for name in data.shown if name in table}
    data.subsets = {name: int(n) for name, n in (raw.get("subsets") or {}).items()}
    data.convergence = raw.get("convergence")
    data.margin = raw.get("equivalence_margin", data.margin)
    _lacking(data, path, "summary", [name for name in data.shown if name not in table])


def _read_runs(data: StudyData, path: Path) -> None:
    if not _found(data, path, "evaluate_study"):
        return
    records = [r for r in check_runs(path, read_json(path)) if r["configuration"] in data.shown]
    order = {name: i for i, name in enumerate(data.shown)}
    data.runs = sorted(records, key=lambda r: (order[r["configuration"]], r["seed"]))
    found = {(r["configuration"], r["seed"]) for r in data.runs}
    absent = [f"{n} seed {s}" for n in data.shown for s in data.study.seeds if (n, s) not in found]
    _lacking(data, path, "run", absent, "dvc repro")


def load_study_data(
    params_file: str | Path = paths.PARAMS,
    findings_file: str | Path = paths.FINDINGS,
    summary_file: str | Path = paths.STUDY_SUMMARY,
    runs_file: str | Path = paths.STUDY_EVAL / "runs.json",
    probes_file: str | Path = paths.PROBES,
    convergence_file: str | Path = paths.CONVERGENCE,
    reference_file: str | Path = paths.REFERENCE_POINTS / "metrics.json",
    subsets_file: str | Path = paths.QUERY_SUBSETS,
    sweep_file: str | Path | None = None,
    end_to_end_file: str | Path | None = None,
    configurations: Any = None,
    metric: str | None = None,
) -> StudyData:
    """Everything the page shows, for the configurations picked (names, or None for every one)."""
    study = load_study(params_file)
    shown = _selected(study, configurations)
    metric = metric or study.metric
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    settings = {name: load_params(params_file, configuration=name) for name in shown}
    data = StudyData(
        study, load_params(params_file), settings, shown, metric, margin=study.equivalence_margin
    )
    _read_findings(data, Path(findings_file))
    _read_summary(data, Path(summary_file))
    _read_runs(data, Path(runs_file))
    data.longer_runs = read_convergence(Path(convergence_file))
    data.probes, data.probes_missing = load_probes(Path(probes_file))
    data.reference, data.reference_missing = load_reference(Path(reference_file))
    data.query_counts = load_query_counts(Path(subsets_file))
    data.sweep = load_optional(sweep_file, ("configuration", "overrides", "best_val_selection_R1"))
    data.end_to_end = load_optional(end_to_end_file, ("seeds", "findings", "agreement"))
    optional = {"sweep": sweep_file, "end_to_end": end_to_end_file}
    data.files = {key: str(path) for key, path in optional.items() if path is not None}
    for why in (data.probes_missing, data.reference_missing):
        if why:
            data.missing.append(why)
    return data
