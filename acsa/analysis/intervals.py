"""The interval of a difference between two configurations, with seeds as the unit of replication, and the
adjustment of a study's many intervals (Holm). Pure functions of arrays; tested for coverage on simulated
studies whose true difference is known (tests/test_intervals.py).

The data of one finding: for configuration c (a or b) and its seeds s, and each test identity j with n_j
queries, y^c_sj = the sum over j's queries of their metric values (percent). A run's metric is
M^c(s) = sum_j y^c_sj / N (N = sum_j n_j), and the finding's statistic is

    D = mean_s M^a(s) - mean_s M^b(s).

What we want to know is the difference a user would see on average over new training seeds and a new test
set drawn like this one. D varies with both, and they are crossed (every run is scored on the same
identities), as in a two-way layout y^c_sj = identity effect + seed effect + residual (seed x identity):

    Var(D) = V_a + V_b + V_id,
    V_c  = Var_s(M^c(s)) / S_c                 seeds: the spread of the runs' means on this test set, which
                                               carries the seed effect and the residual averaged over j
    V_id = identity sampling of the paired per-identity difference d_j = mean_s y^a_sj - mean_s y^b_sj
           (the delta method for the ratio sum_j d_j / N: J / (J - 1) sum_j (d_j - D n_j)^2 / N^2), minus
           the residual's share of it, which V_a and V_b already count: J (r_a / S_a + r_b / S_b) / N^2 with
           r_c the residual mean square of the seed x identity table y^c (clipped at zero)

and the interval is D +- t(df) sqrt(Var(D)), df from Welch-Satterthwaite (S_a - 1, S_b - 1, J - 1). A
percentile bootstrap over a handful of seeds cannot reach past the observed runs and, with 3 to 5 seeds,
covers well below its nominal level; the t quantile with few degrees of freedom is what makes up for the
seeds being few.

Holm: a study tests many findings at once. The p-values of the family are adjusted by Holm's step-down
method (statsmodels), and each finding's adjusted interval is the interval of the same t statistic at level
1 - alpha * p / p_holm, which excludes zero exactly when the adjusted p-value is below alpha. A verdict reads
the adjusted interval: better (or worse) when it excludes zero, equivalent when it lies inside the margin
+-m declared in params.yaml before the run, inconclusive otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"


@dataclass(frozen=True)
class Estimate:
    """A difference, its standard error and the degrees of freedom of its t distribution."""

    difference: float
    standard_error: float
    df: float
    components: dict[str, float]  # the variance parts: seeds_a, seeds_b, identities, residual_correction

    def interval(self, confidence: float) -> tuple[float, float]:
        from scipy.stats import t

        half = t.ppf(0.5 + confidence / 2, self.df) * self.standard_error
        return self.difference - half, self.difference + half

    @property
    def p_value(self) -> float:
        """Two-sided p-value of D = 0."""
        from scipy.stats import t

        if self.standard_error == 0:
            return 0.0 if self.difference != 0 else 1.0
        return float(2 * t.sf(abs(self.difference) / self.standard_error, self.df))


def _residual_mean_square(sums: np.ndarray, counts: np.ndarray) -> float:
    """r: the residual mean square of a seed x identity table of sums [S, J], after the identity effect and
    a seed effect proportional to each identity's size (the seed moves every query alike)."""
    seeds, identities = sums.shape
    if seeds < 2 or identities < 2:
        return 0.0
    share = counts / counts.sum()  # [J]
    run_totals = sums.sum(axis=1)  # [S]
    residual = sums - sums.mean(axis=0) - (run_totals - run_totals.mean())[:, None] * share[None, :]
    return float((residual**2).sum() / ((seeds - 1) * (identities - 1)))


def estimate(sums_a: np.ndarray, sums_b: np.ndarray, counts: np.ndarray) -> Estimate:
    """The difference of mean run metrics, a minus b, and its standard error (module docstring).

    sums_a [S_a, J], sums_b [S_b, J]: per run and test identity, the sum of its queries' values; counts [J]
    the queries of each identity. Needs at least two seeds on each side."""
    sums_a, sums_b, counts = (np.asarray(x, dtype=np.float64) for x in (sums_a, sums_b, counts))
    seeds_a, seeds_b = len(sums_a), len(sums_b)
    if seeds_a < 2 or seeds_b < 2:
        raise ValueError("an interval over seeds needs at least two seeds of each configuration")
    identities, total = len(counts), float(counts.sum())
    means_a, means_b = sums_a.sum(axis=1) / total, sums_b.sum(axis=1) / total  # [S] run metrics
    difference = float(means_a.mean() - means_b.mean())
    seeds_part_a = float(means_a.var(ddof=1) / seeds_a)
    seeds_part_b = float(means_b.var(ddof=1) / seeds_b)
    per_identity = sums_a.mean(axis=0) - sums_b.mean(axis=0)  # [J] d_j
    spread = identities / (identities - 1) * float(((per_identity - difference * counts) ** 2).sum())
    correction = identities * (
        _residual_mean_square(sums_a, counts) / seeds_a + _residual_mean_square(sums_b, counts) / seeds_b
    )
    identity_part = max(0.0, spread - correction) / total**2
    variance = seeds_part_a + seeds_part_b + identity_part
    parts = ((seeds_part_a, seeds_a - 1), (seeds_part_b, seeds_b - 1), (identity_part, identities - 1))
    denominator = sum(part**2 / df for part, df in parts if part > 0)
    df = variance**2 / denominator if denominator > 0 else float(identities - 1)
    components = {
        "seeds_a": seeds_part_a,
        "seeds_b": seeds_part_b,
        "identities": identity_part,
        "residual_correction": correction / total**2,
    }
    return Estimate(difference, math.sqrt(variance), df, components)


def holm(p_values: list[float], alpha: float) -> list[float]:
    """Holm-adjusted p-values of a family of tests (statsmodels' step-down implementation)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=alpha, method="holm")[1]]


def adjusted_confidence(p_value: float, adjusted: float, alpha: float, rank_factor: int) -> float:
    """The level whose interval excludes zero exactly when `adjusted` < alpha: 1 - alpha * p / p_holm.
    `rank_factor` (m - rank + 1, Holm's multiplier of this test) stands in when p is 0."""
    if p_value <= 0 or adjusted <= 0:
        return 1 - alpha / rank_factor
    return 1 - alpha * min(1.0, p_value / adjusted)


def verdict(low: float, high: float, margin: float | None) -> str:
    """better / worse when the interval excludes zero, equivalent when it lies within +-margin,
    inconclusive otherwise."""
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    if margin is not None and -margin < low and high < margin:
        return EQUIVALENT
    return INCONCLUSIVE


def holm_ranks(p_values: list[float]) -> list[int]:
    """Holm's multiplier m - rank + 1 of each test (rank 1 = the smallest p-value)."""
    order = np.argsort(p_values, kind="stable")
    factors = [0] * len(p_values)
    for rank, index in enumerate(order):
        factors[int(index)] = len(p_values) - rank
    return factors
