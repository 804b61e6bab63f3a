"""Stage `findings`: every run's test results -> the study's findings with intervals, and its summary.

Inputs:  params.yaml `study` (configurations, seeds, findings, metric, confidence, equivalence margin) and
         the sections every run's configuration is derived from;
         STUDY_EVAL/runs.json and STUDY_EVAL/per_query.npz (default reports/study: the evaluate_study stage's
         compact record of every run, committed with the study);
         SUBSETS (default reports/reference_points/query_subsets.json, when the benchmark has attribute
         records): which test queries need fine evidence;
         CONVERGENCE (default reports/convergence.json, when present): the same runs at a longer budget.
Outputs: FINDINGS (default reports/findings.json, a DVC metrics file): one record per finding, by name: a, b,
           the claim it tests, the score kinds compared, the seeds, and per query subset (all, fine_evidence)
           mean_a, mean_b, difference (a - b), its standard error and degrees of freedom, the raw interval
           (ci_low, ci_high), p-value, Holm-adjusted p-value and interval (adjusted_low, adjusted_high) and
           the verdict ("better", "worse", "equivalent" within study.equivalence_margin, "inconclusive")
         SUMMARY (default reports/study_summary.json, a DVC metrics file): per configuration, the seeds, the
           trainable parameters, the mean and standard deviation of every metric for each score kind, each
           run's validation plateau; the convergence check; how the intervals are computed
Every input is checked first (one line naming the file): a run whose recorded configuration is not the one
its name and seed imply, a missing run, two seeds with identical results, values outside [0, 100].
With --end-to-end FOLDER (the optional confirmation's evaluate output): the findings among its configurations
at its seeds, and how the two protocols agree (acsa/analysis/protocols.py) -> FOLDER/findings.json.
How the intervals are computed: acsa/analysis/intervals.py. This stage trains nothing and chooses nothing: on
a fresh clone it recomputes every interval from the committed files in seconds.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from acsa import paths
from acsa.analysis.convergence import convergence_check, read_convergence
from acsa.analysis.findings import ALL, missing_configurations, study_findings, summarise
from acsa.analysis.protocols import configuration_means, protocol_agreement
from acsa.analysis.study_runs import Run, read_study_runs, runs_by_configuration
from acsa.cli import add_path, run_stage, stage_parser
from acsa.config.loading import load_params
from acsa.config.sections import params_to_dict
from acsa.config.study import load_study
from acsa.errors import DataError
from acsa.storage.files import read_json, write_json
from acsa.training.plans import end_to_end_plan
from acsa.training.resume import config_differences

log = logging.getLogger(__name__)
FINE_EVIDENCE = "fine_evidence"


def check_runs(
    params_file: Path, runs: list[Run], expected: list[tuple[str, int, tuple[str, ...]]], source: Path
) -> dict[str, list[Run]]:
    """Every expected run (configuration, seed, overrides) is there, trained as its name, seed and
    overrides say (the settings that change only speed aside)."""
    grouped = runs_by_configuration(runs)
    checked: dict[str, list[Run]] = {}
    for name, seed, overrides in expected:
        found = [run for run in grouped.get(name, []) if run.seed == seed]
        if not found:
            raise DataError(f"{source}: no run of {name} with seed {seed} (run dvc repro)")
        run = found[0]
        config = load_params(params_file, configuration=name, overrides=[*overrides, f"train.seed={seed}"])
        differing = config_differences(run.config or {}, params_to_dict(config))
        if differing:
            raise DataError(
                f"{source}: the run recorded as {name} seed {seed} was trained with other "
                f"{', '.join(differing[:4])} than params.yaml gives it (rerun dvc repro)"
            )
        checked.setdefault(name, []).append(run)
    return checked


def query_subsets(path: Path, query_ids: np.ndarray) -> dict[str, np.ndarray]:
    """{fine_evidence: mask [Q]} from the reference points' classification of the test queries; {} when
    the benchmark has none (a public benchmark has no attribute records)."""
    if not path.is_file():
        log.info("%s not found: findings on all queries only", path)
        return {}
    raw = read_json(path)
    if not isinstance(raw, dict) or raw.get("available") is False:
        return {}
    try:
        ids = np.asarray(raw["query_ids"], dtype=np.int64)
        mask = np.asarray(raw[FINE_EVIDENCE], dtype=bool)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: malformed ({err})") from None
    if ids.shape != query_ids.shape or not np.array_equal(ids, query_ids) or mask.shape != ids.shape:
        raise DataError(f"{path}: classifies other test queries than the runs were scored on (dvc repro)")
    if not mask.any():
        raise DataError(f"{path}: no test query needs fine evidence: nothing to compare on")
    return {FINE_EVIDENCE: mask}


def findings(
    params_file: Path,
    study_eval: Path,
    subsets_file: Path,
    convergence_file: Path,
    out: Path,
    summary_out: Path,
) -> dict:
    study = load_study(params_file)
    source = study_eval / "runs.json"
    expected = [(name, seed, ()) for name in study.configurations for seed in study.seeds]
    runs = check_runs(params_file, read_study_runs(study_eval), expected, source)
    missing = missing_configurations(study.findings, runs)
    if missing:
        raise DataError(f"{source}: no evaluated runs of {', '.join(missing)} (run dvc repro)")
    subsets = query_subsets(subsets_file, next(iter(runs.values()))[0].query_ids)
    results = study_findings(study, {name: runs[name] for name in study.configurations}, subsets)
    summary = {
        "configurations": {name: summarise(runs[name], subsets) for name in study.configurations},
        "subsets": {ALL: len(next(iter(runs.values()))[0].query_ids)}
        | {name: int(mask.sum()) for name, mask in subsets.items()},
        "equivalence_margin": study.equivalence_margin,
        "confidence": study.confidence,
        "convergence": convergence_check(study, runs, read_convergence(convergence_file)),
    }
    write_json(out, results)
    write_json(summary_out, summary)
    for record in results.values():
        for subset, r in record["subsets"].items():
            log.info(
                "%s (%s): %s - %s = %+.2f [%+.2f, %+.2f], Holm [%+.2f, %+.2f]: %s",
                record["name"], subset, record["a"], record["b"], r["difference"], r["ci_low"], r["ci_high"],
                r["adjusted_low"], r["adjusted_high"], r["verdict"],
            )  # fmt: skip
    return results


def end_to_end_findings(params_file: Path, e2e_eval: Path, study_eval: Path, out: Path) -> dict:
    """The optional confirmation: the findings among the end-to-end configurations (at its seeds, Holm across
    them) and how the two protocols agree (acsa.analysis.protocols)."""
    study = load_study(params_file)
    expected = [(r.configuration, r.seed, r.overrides) for r in end_to_end_plan(study)]
    source = e2e_eval / "runs.json"
    runs = check_runs(params_file, read_study_runs(e2e_eval), expected, source)
    names = set(study.end_to_end.configurations)
    family = tuple(f for f in study.findings if f.a in names and f.b in names)
    subsets = query_subsets(paths.QUERY_SUBSETS, next(iter(runs.values()))[0].query_ids)
    results = study_findings(replace(study, findings=family), runs, subsets)
    two_stage = runs_by_configuration(read_study_runs(study_eval))
    agreement = protocol_agreement(
        read_json(paths.FINDINGS),
        results,
        configuration_means({n: two_stage[n] for n in names if n in two_stage}, study.metric),
        configuration_means(runs, study.metric),
    )
    record = {"seeds": list(study.end_to_end.seeds), "findings": results, "agreement": agreement}
    write_json(out, record)
    log.info("end to end: Kendall's tau %s; %s", agreement["ranking"]["kendall_tau"], agreement["ranking"])
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    add_path(parser, "--params", paths.PARAMS, "params file (its study section)")
    add_path(parser, "--study-eval", paths.STUDY_EVAL, "the evaluate_study stage's output")
    add_path(parser, "--subsets", paths.QUERY_SUBSETS, "the reference points' query subsets")
    add_path(parser, "--convergence", paths.CONVERGENCE, "the convergence runs' validation record")
    add_path(parser, "--out", paths.FINDINGS, "findings file")
    add_path(parser, "--summary", paths.STUDY_SUMMARY, "summary file")
    add_path(parser, "--end-to-end", None, "instead: the end-to-end confirmation's evaluate output")
    args = parser.parse_args(argv)
    if args.end_to_end is not None:
        out = args.out if args.out != paths.FINDINGS else args.end_to_end / "findings.json"
        end_to_end_findings(args.params, args.end_to_end, args.study_eval, out)
        return
    findings(args.params, args.study_eval, args.subsets, args.convergence, args.out, args.summary)


if __name__ == "__main__":
    run_stage(main)
