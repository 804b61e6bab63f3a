"""Stage `findings`: every run's test results -> the study's findings with intervals, and its summary.

Inputs:  params.yaml `study` (configurations, seeds, findings, metric, bootstrap settings);
         EVAL/per_query.json of the main model (reports/eval/main: the run of study.main with train.seed) and
         STUDY_EVAL/<configuration>/seed-<s>/per_query.json of every other run (evaluate stages);
         the validation curves of every run (DVCLive: dvclive/main, dvclive/study/<configuration>/seed-<s>).
Outputs: FINDINGS (default reports/findings.json, a DVC metrics file): one record per finding, by name:
           name, a, b, metric, seeds_a, seeds_b, mean_a, mean_b, difference (a - b), ci_low, ci_high,
           verdict ("better", "worse" or "no detectable difference")
         SUMMARY (default reports/study_summary.json, a DVC metrics file): per configuration, the seeds, the
           mean and standard deviation of every metric for each score kind, and per run the validation R@1
           gained over the last quarter of its epochs, by a least-squares line (the plateau check)
How the intervals are computed: acsa/analysis/findings.py. Nothing here is chosen: this stage only reads the
final evaluation's results.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from acsa import paths
from acsa.analysis.findings import (
    Run,
    missing_configurations,
    settings_differences,
    study_findings,
    summarise,
)
from acsa.cli import add_path, run_stage, stage_parser
from acsa.config.loading import load_params
from acsa.config.study import Study, load_study
from acsa.errors import DataError
from acsa.storage.files import read_json, write_json

log = logging.getLogger(__name__)

SELECTION_CURVE = Path("plots/metrics/val/selection_R1.tsv")  # inside a run's DVCLive folder


def validation_curve(live_dir: Path) -> tuple[float, ...]:
    """The validation selection R@1 after each epoch (DVCLive's tsv: step, value); () if absent."""
    path = live_dir / SELECTION_CURVE
    if not path.is_file():
        return ()
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return tuple(float(value) for _, value in rows)


def read_run(configuration: str, seed: int, eval_dir: Path, live_dir: Path) -> Run:
    raw = read_json(eval_dir / "per_query.json")
    try:
        kinds = {
            kind: {metric: np.asarray(values, dtype=np.float64) for metric, values in table.items()}
            for kind, table in raw["kinds"].items()
        }
        query_ids = np.asarray(raw["query_ids"])
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError(f"{eval_dir}/per_query.json: malformed ({err})") from None
    return Run(configuration, seed, query_ids, kinds, validation_curve(live_dir), raw.get("config"))


def read_runs(study: Study, main_seed: int, eval_main: Path, study_eval: Path) -> dict[str, list[Run]]:
    """Every run of every configuration, the main model first among the main configuration's."""
    runs: dict[str, list[Run]] = {}
    for name in study.configurations:
        found = []
        if name == study.main:
            found.append(read_run(name, main_seed, eval_main, paths.live_for(paths.MODEL)))
        for seed in study.seeds_of(name, main_seed):
            run_dir = paths.seed_dir(Path(name), seed)
            live = paths.live_for(paths.STUDY_MODELS / run_dir)
            found.append(read_run(name, seed, study_eval / run_dir, live))
        runs[name] = sorted(found, key=lambda r: r.seed)
        differing = settings_differences(runs[name])
        if differing:
            raise DataError(
                f"the runs of {name} were trained with different settings besides the seed "
                f"({', '.join(differing[:5])}): retrain them alike (dvc repro) before comparing"
            )
    return runs


def findings(params_file: Path, eval_main: Path, study_eval: Path, out: Path, summary_out: Path) -> dict:
    study = load_study(params_file)
    main_seed = load_params(params_file).train.seed
    runs = read_runs(study, main_seed, eval_main, study_eval)
    missing = missing_configurations(study.findings, runs)
    if missing:
        raise DataError(f"no evaluated runs of {', '.join(missing)} (run dvc repro)")
    results = study_findings(study, runs)
    summary = {name: summarise(found) for name, found in runs.items()}
    write_json(out, results)
    write_json(summary_out, summary)
    for record in results.values():
        log.info(
            "%s: %s - %s = %+.2f [%+.2f, %+.2f] %s: %s",
            record["name"],
            record["a"],
            record["b"],
            record["difference"],
            record["ci_low"],
            record["ci_high"],
            record["metric"],
            record["verdict"],
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    add_path(parser, "--params", paths.PARAMS, "params file (its study section)")
    add_path(parser, "--eval", paths.EVAL, "the main model's evaluate output")
    add_path(parser, "--study-eval", paths.STUDY_EVAL, "the study's evaluate outputs")
    add_path(parser, "--out", paths.FINDINGS, "findings file")
    add_path(parser, "--summary", paths.STUDY_SUMMARY, "summary file")
    args = parser.parse_args(argv)
    findings(args.params, args.eval, args.study_eval, args.out, args.summary)


if __name__ == "__main__":
    run_stage(main)
