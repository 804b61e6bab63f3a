"""The study's findings: each compares two configurations on one metric, on every test query and on the
queries that need fine evidence, with an interval that treats seeds as the unit of replication
(acsa.analysis.intervals), Holm-adjusted across the whole family of findings x query subsets, and a verdict
read from the adjusted interval; and the per-configuration summary.

Inputs are the per-query results of every run on the test split (acsa.analysis.study_runs): for a metric m
and a query q, m_q is the query's share of the metric in percent (R@K: 100 if a match is in the top K, else
0; mAP: its average precision; mINP: its inverse negative penalty), so a run's metric is the mean of m_q over
queries. Each run is scored with its own final score (fused when it has a second score, else global) unless
the finding names a score kind (`a_score`, `b_score`: e.g. full ACSA's local score alone).

Query subsets (acsa.analysis.reference_points: the rankers that read the benchmark's attribute records):
`all` queries, and `fine_evidence`, those a reader of gender, garment types and colours alone ranks wrong
while one that reads every stated attribute ranks right: where local, fine alignment is supposed to matter.
"""

from __future__ import annotations

import math

import numpy as np

from acsa.analysis.intervals import adjusted_confidence, estimate, holm, holm_ranks, verdict
from acsa.analysis.study_runs import Run
from acsa.config.study import METRICS, Finding, Study

PLATEAU_GAIN = 0.5  # validation R@1 points: a run whose last quarter's line rises less has flattened
ALL = "all"


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


def compare_on(
    runs_a: list[Run],
    runs_b: list[Run],
    metric: str,
    kinds: tuple[str | None, str | None],
    subset: np.ndarray,
) -> dict:
    """The raw comparison of a minus b on the queries of `subset` (a boolean mask [Q]): means, difference,
    standard error, degrees of freedom, p-value."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    query_ids = _check_same_queries(runs_a + runs_b)[subset]

    def sums(runs: list[Run], kind: str | None) -> np.ndarray:
        return np.stack([identity_sums(r.values(metric, kind)[subset], query_ids)[0] for r in runs])

    counts = identity_sums(np.zeros(len(query_ids)), query_ids)[1]
    result = estimate(sums(runs_a, kinds[0]), sums(runs_b, kinds[1]), counts)
    return {
        "queries": int(subset.sum()),
        "identities": len(counts),
        "mean_a": float(np.mean([r.values(metric, kinds[0])[subset].mean() for r in runs_a])),
        "mean_b": float(np.mean([r.values(metric, kinds[1])[subset].mean() for r in runs_b])),
        "difference": result.difference,
        "standard_error": result.standard_error,
        "df": result.df,
        "p_value": result.p_value,
        "variance_parts": result.components,
        "_estimate": result,
    }


def study_findings(
    study: Study, runs: dict[str, list[Run]], subsets: dict[str, np.ndarray] | None = None
) -> dict[str, dict]:
    """Every finding of the study on every query subset ({name: mask [Q]}; `all` is added), raw and
    Holm-adjusted across the family of every finding on every subset, with its verdict."""
    first = next(iter(runs.values()))[0]
    subsets = {ALL: np.ones(len(first.query_ids), dtype=bool), **(subsets or {})}
    alpha = 1 - study.confidence
    results: dict[str, dict] = {}
    family = []  # (finding name, subset name) in a fixed order
    for finding in study.findings:
        results[finding.name] = _header(finding, runs, study.metric)
        for subset, mask in subsets.items():
            record = compare_on(
                runs[finding.a], runs[finding.b], study.metric, (finding.a_score, finding.b_score), mask
            )
            low, high = record["_estimate"].interval(study.confidence)
            record.update(ci_low=low, ci_high=high, confidence=study.confidence)
            results[finding.name]["subsets"][subset] = record
            family.append((finding.name, subset))
    p_values = [results[name]["subsets"][subset]["p_value"] for name, subset in family]
    for (name, subset), p, adjusted, factor in zip(
        family, p_values, holm(p_values, alpha), holm_ranks(p_values), strict=True
    ):
        record = results[name]["subsets"][subset]
        level = adjusted_confidence(p, adjusted, alpha, factor)
        low, high = record.pop("_estimate").interval(level)
        record.update(
            p_holm=adjusted,
            adjusted_confidence=level,
            adjusted_low=low,
            adjusted_high=high,
            verdict=verdict(low, high, study.equivalence_margin),
        )
    return results


def _header(finding: Finding, runs: dict[str, list[Run]], metric: str) -> dict:
    def kind(side: str, score: str | None) -> str:
        return score or runs[side][0].final_kind

    return {
        "name": finding.name,
        "claim": finding.claim,
        "a": finding.a,
        "b": finding.b,
        "a_score": kind(finding.a, finding.a_score),
        "b_score": kind(finding.b, finding.b_score),
        "metric": metric,
        "seeds_a": [r.seed for r in runs[finding.a]],
        "seeds_b": [r.seed for r in runs[finding.b]],
        "interval": "t over seed means with test-identity variance (acsa.analysis.intervals)",
        "subsets": {},
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


def _kind_tables(runs: list[Run], kinds: list[str], mask: np.ndarray | None) -> dict:
    """{kind: {metric: {mean, std, runs}}} over the queries of `mask` (all when None)."""
    tables = {}
    for kind in kinds:
        table = {}
        for metric in METRICS:
            values = [
                float(r.values(metric, kind)[mask if mask is not None else slice(None)].mean()) for r in runs
            ]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            table[metric] = {"mean": float(np.mean(values)), "std": std, "runs": values}
        tables[kind] = table
    return tables


def summarise(runs: list[Run], subsets: dict[str, np.ndarray] | None = None) -> dict:
    """Mean and sample standard deviation over a configuration's seeds, per score kind and metric, on every
    query and on each query subset; each run's trainable parameters and its validation plateau gain."""
    kinds = [kind for kind in ("global", "local", "fused") if all(kind in r.per_query for r in runs)]
    summary: dict = {"seeds": [r.seed for r in runs], "final_kind": runs[0].final_kind}
    summary["kinds"] = _kind_tables(runs, kinds, None)
    summary["subsets"] = {name: _kind_tables(runs, kinds, mask) for name, mask in (subsets or {}).items()}
    summary["trainable_parameters"] = runs[0].record.get("trainable_parameters")
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


def missing_configurations(findings: tuple[Finding, ...], runs: dict[str, list[Run]]) -> list[str]:
    return sorted({c for f in findings for c in (f.a, f.b) if not runs.get(c)})
