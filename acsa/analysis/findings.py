"""The study's findings: each compares two configurations on one metric, with an interval that covers both the
seed and the query variation, and the per-configuration summary (mean and standard deviation over seeds,
and whether each run's validation curve had flattened).

Inputs are per-query results of every run on the test split (the evaluate stage's per_query.json): for a
metric m and a query q, m_q is the query's share of the metric in percent (R@K: 100 if a match is in the top
K, else 0; mAP: its average precision; mINP: its inverse negative penalty), so a run's metric is the mean of
m_q over queries. Each run is scored with its own final score: fused when it has the local branch, else
global.

The statistic of a finding is the difference of the two configurations' means over seeds,

    D = mean_{s in seeds_a} M_a(s) - mean_{s in seeds_b} M_b(s),    M(s) = mean_q m_q of run s.

Its interval comes from `scipy.stats.bootstrap` with three independently resampled samples: the seeds of a,
the seeds of b, and the test identities. The identity resample is shared by a and b, so the comparison is
paired over identities (both configurations are judged on the same queries), and identities rather than
queries are resampled because the captions and images of one identity are not independent. Resampling the
seeds makes the interval widen with the spread between runs. Percentile intervals; a verdict is "better"
(or "worse") only when the interval excludes zero, "no detectable difference" otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from acsa.config.study import METRICS, Finding, Study

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"
PLATEAU_GAIN = 0.5  # validation R@1 points: a run whose last quarter's line rises less has flattened


@dataclass(frozen=True)
class Run:
    """One trained model's test results."""

    configuration: str
    seed: int
    query_ids: np.ndarray  # [Q] identity of each test query
    per_query: dict[str, dict[str, np.ndarray]]  # score kind -> metric -> [Q] (percent)
    validation_curve: tuple[float, ...] = ()  # validation selection R@1 after each epoch
    config: dict | None = None  # the configuration the run was trained with

    @property
    def final_kind(self) -> str:
        return "fused" if "fused" in self.per_query else "global"

    def values(self, metric: str, kind: str | None = None) -> np.ndarray:
        return np.asarray(self.per_query[kind or self.final_kind][metric], dtype=np.float64)


def identity_sums(values: np.ndarray, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per identity (sorted ids): the sum of its queries' values and their number."""
    _, inverse = np.unique(query_ids, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    return sums, counts


def _check_same_queries(runs: list[Run]) -> np.ndarray:
    first = runs[0].query_ids
    for run in runs[1:]:
        if run.query_ids.shape != first.shape or not np.array_equal(run.query_ids, first):
            raise ValueError(
                f"{run.configuration} seed {run.seed} was evaluated on other test queries than "
                f"{runs[0].configuration} seed {runs[0].seed} (stale evaluation: rerun dvc repro)"
            )
    return first


def compare(
    name: str,
    runs_a: list[Run],
    runs_b: list[Run],
    metric: str,
    confidence: float,
    resamples: int,
    seed: int,
) -> dict:
    """One finding: a minus b on `metric`, with its bootstrap interval and verdict (module docstring)."""
    from scipy.stats import bootstrap

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    if not runs_a or not runs_b:
        raise ValueError(f"finding {name}: a configuration without runs")
    query_ids = _check_same_queries(runs_a + runs_b)
    sums_a = np.stack([identity_sums(r.values(metric), query_ids)[0] for r in runs_a])  # [seeds_a, ids]
    sums_b = np.stack([identity_sums(r.values(metric), query_ids)[0] for r in runs_b])  # [seeds_b, ids]
    counts = identity_sums(np.zeros(len(query_ids)), query_ids)[1]  # [ids]

    def difference(seeds_a, seeds_b, ids, axis=-1):
        # every argument [..., n] holds resampled indices; the result is D for each resample [...]
        seeds_a, seeds_b, ids = (np.asarray(x, dtype=np.int64) for x in (seeds_a, seeds_b, ids))
        total = counts[ids].sum(axis=-1)[..., None]  # [..., 1] queries in the resampled identities
        a = np.take_along_axis(sums_a[seeds_a], ids[..., None, :], axis=-1).sum(axis=-1) / total
        b = np.take_along_axis(sums_b[seeds_b], ids[..., None, :], axis=-1).sum(axis=-1) / total
        return a.mean(axis=-1) - b.mean(axis=-1)

    samples = (np.arange(len(runs_a)), np.arange(len(runs_b)), np.arange(len(counts)))
    observed = float(difference(*(s[None] for s in samples))[0])
    interval = bootstrap(
        samples,
        difference,
        paired=False,
        vectorized=True,
        n_resamples=resamples,
        batch=max(1, min(resamples, 1000)),
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    low, high = float(interval.low), float(interval.high)
    verdict = BETTER if low > 0 else WORSE if high < 0 else NO_DIFFERENCE
    return {
        "name": name,
        "a": runs_a[0].configuration,
        "b": runs_b[0].configuration,
        "metric": metric,
        "seeds_a": [r.seed for r in runs_a],
        "seeds_b": [r.seed for r in runs_b],
        "mean_a": float(np.mean([r.values(metric).mean() for r in runs_a])),
        "mean_b": float(np.mean([r.values(metric).mean() for r in runs_b])),
        "difference": observed,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "resampled": "seeds of a, seeds of b, test identities (paired)",
        "verdict": verdict,
    }


def plateau_gain(curve: tuple[float, ...] | list[float]) -> float | None:
    """Validation R@1 gained over the last quarter of the epochs (at least two): the least-squares line
    through the quarter's values, its slope times the quarter's epochs (None for fewer than two epochs).

    A line rather than the best value of the quarter minus the one before it: each epoch's validation R@1
    carries about a point of noise, and the best of several noisy values sits above a flat curve's level, so
    that difference called flat curves rising."""
    if len(curve) < 2:
        return None
    last = min(len(curve), max(2, math.ceil(len(curve) / 4)))
    values = np.asarray(curve[-last:], dtype=float)
    epochs = np.arange(last, dtype=float)
    slope = np.polyfit(epochs, values, 1)[0]
    return float(slope * last)


def summarise(runs: list[Run]) -> dict:
    """Mean and sample standard deviation over a configuration's seeds, per score kind and metric; each run's
    final metrics and its validation plateau gain."""
    kinds = [kind for kind in ("global", "local", "fused") if all(kind in r.per_query for r in runs)]
    summary: dict = {"seeds": [r.seed for r in runs], "final_kind": runs[0].final_kind, "kinds": {}}
    for kind in kinds:
        table = {}
        for metric in METRICS:
            values = [float(r.values(metric, kind).mean()) for r in runs]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            table[metric] = {"mean": float(np.mean(values)), "std": std, "runs": values}
        summary["kinds"][kind] = table
    summary["plateau"] = [
        {
            "seed": r.seed,
            "epochs": len(r.validation_curve),
            "gain_last_quarter": plateau_gain(r.validation_curve),
            "flattened": (g := plateau_gain(r.validation_curve)) is not None and g < PLATEAU_GAIN,
        }
        for r in runs
    ]
    return summary


def study_findings(study: Study, runs: dict[str, list[Run]]) -> dict[str, dict]:
    """Every finding of the study, by name, from the runs of each configuration."""
    return {
        finding.name: compare(
            finding.name,
            runs[finding.a],
            runs[finding.b],
            study.metric,
            study.confidence,
            study.resamples,
            study.bootstrap_seed,
        )
        for finding in study.findings
    }


def settings_differences(runs: list[Run]) -> list[str]:
    """Keys (dotted) in which the runs of one configuration were trained differently, their seeds and the
    settings that only change speed aside: such runs are not repeats of one configuration."""
    from acsa.training.resume import config_differences

    known = [r for r in runs if r.config is not None]
    differing: set[str] = set()
    for run in known[1:]:
        differing |= set(config_differences(known[0].config, run.config))
    return sorted(differing - {"train.seed"})


def missing_configurations(findings: tuple[Finding, ...], runs: dict[str, list[Run]]) -> list[str]:
    return sorted({c for f in findings for c in (f.a, f.b) if not runs.get(c)})
