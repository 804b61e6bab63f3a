"""The findings' intervals cover the true difference at their nominal level on simulated studies whose seed
and identity variation are known, where a percentile bootstrap over a handful of seeds does not; Holm's
adjustment and the verdicts read the adjusted interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from acsa.analysis.intervals import (
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    WORSE,
    adjusted_confidence,
    estimate,
    holm,
    holm_ranks,
    verdict,
)

IDENTITIES, QUERIES = 150, 8  # the synthetic test split: 150 identities x 4 images x 2 captions


def simulated_study(rng, seeds, mean_a, mean_b, seed_sd, identity_sd, interaction_sd, residual_sd, binary):
    """Identity sums [S, J] of two configurations and the true difference (percent points).

    Latent score of a query of identity j in run s of configuration c:
        mean_c + u_j + t^c_j + v^c_s + w^c_sj   (identity, identity x configuration, seed, seed x identity)
    Gaussian: the query's value is 100 x (latent + noise); binary (an R@1-like hit): 100 x [latent + noise
    > 0] with standard normal noise, i.e. a hit with probability Phi(latent)."""
    u = rng.normal(0, identity_sd, IDENTITIES)
    sums = []
    for mean in (mean_a, mean_b):
        t = rng.normal(0, interaction_sd, IDENTITIES)
        v = rng.normal(0, seed_sd, (seeds, 1))
        w = rng.normal(0, residual_sd, (seeds, IDENTITIES))
        latent = mean + u + t + v + w  # [S, J]
        noise = rng.normal(0, 1, (seeds, IDENTITIES, QUERIES))
        if binary:
            values = 100.0 * (latent[..., None] + noise > 0)
        else:
            values = 100.0 * (latent[..., None] + 0.3 * noise)
        sums.append(values.sum(axis=-1))
    if binary:  # E[Phi(mean + X)] with X ~ N(0, s^2) is Phi(mean / sqrt(1 + s^2))
        spread = np.sqrt(1 + identity_sd**2 + interaction_sd**2 + seed_sd**2 + residual_sd**2)
        truth = 100.0 * (norm.cdf(mean_a / spread) - norm.cdf(mean_b / spread))
    else:
        truth = 100.0 * (mean_a - mean_b)
    return sums[0], sums[1], truth


def coverage(method, seeds, binary, studies, **variation) -> float:
    rng = np.random.default_rng(1234)
    counts = np.full(IDENTITIES, QUERIES, dtype=float)
    covered = 0
    for _ in range(studies):
        sums_a, sums_b, truth = simulated_study(rng, seeds, 0.6, 0.5, binary=binary, **variation)
        low, high = method(sums_a, sums_b, counts, rng)
        covered += low <= truth <= high
    return covered / studies


def t_interval(sums_a, sums_b, counts, rng):
    return estimate(sums_a, sums_b, counts).interval(0.95)


def percentile_bootstrap(sums_a, sums_b, counts, rng, resamples=400):
    """The previous design: seeds of a, seeds of b and identities resampled independently."""
    seeds_a = rng.integers(0, len(sums_a), (resamples, len(sums_a)))
    seeds_b = rng.integers(0, len(sums_b), (resamples, len(sums_b)))
    ids = rng.integers(0, len(counts), (resamples, len(counts)))
    total = counts[ids].sum(axis=1)
    a = np.stack([sums_a[s][:, i].sum(axis=1).mean() for s, i in zip(seeds_a, ids, strict=True)])
    b = np.stack([sums_b[s][:, i].sum(axis=1).mean() for s, i in zip(seeds_b, ids, strict=True)])
    return tuple(np.percentile((a - b) / total, [2.5, 97.5]))


VARIATIONS = {
    # seeds matter most: runs of one configuration several points apart
    "seed-dominated": dict(seed_sd=0.15, identity_sd=1.0, interaction_sd=0.05, residual_sd=0.1),
    # the test identities matter most: every run ranks the same hard identities badly
    "identity-dominated": dict(seed_sd=0.01, identity_sd=1.0, interaction_sd=0.4, residual_sd=0.2),
}


@pytest.mark.parametrize("binary", [True, False], ids=["hits", "continuous"])
@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_intervals_cover_the_true_difference_at_their_nominal_level(variation, binary):
    """5 seeds (the study's), 150 identities x 8 queries: 93-97% of nominal 95% intervals cover the truth."""
    covered = coverage(t_interval, 5, binary, 1500, **VARIATIONS[variation])
    assert 0.93 <= covered <= 0.97, covered


def test_a_percentile_bootstrap_over_few_seeds_covers_less_than_it_says():
    """Why not the bootstrap of the previous design: with 3 seeds and seeds dominating, it covers well below
    95% (its seed part cannot reach past the observed runs), while the t interval holds its level."""
    bootstrap = coverage(percentile_bootstrap, 3, True, 300, **VARIATIONS["seed-dominated"])
    t_based = coverage(t_interval, 3, True, 300, **VARIATIONS["seed-dominated"])
    assert bootstrap < 0.9 and t_based > 0.92, (bootstrap, t_based)


def test_the_estimate_is_the_difference_of_mean_run_metrics():
    rng = np.random.default_rng(0)
    sums_a, sums_b = rng.uniform(0, 800, (5, 20)), rng.uniform(0, 800, (4, 20))
    counts = np.full(20, 8.0)
    result = estimate(sums_a, sums_b, counts)
    expected = sums_a.sum(axis=1).mean() / 160 - sums_b.sum(axis=1).mean() / 160
    assert result.difference == pytest.approx(expected)
    low, high = result.interval(0.95)
    assert low < result.difference < high
    with pytest.raises(ValueError, match="at least two seeds"):
        estimate(sums_a[:1], sums_b, counts)


def test_holm_adjusted_intervals_exclude_zero_exactly_when_the_adjusted_p_value_is_below_alpha():
    rng = np.random.default_rng(3)
    counts = np.full(IDENTITIES, QUERIES, dtype=float)
    estimates = []
    for gap in (0.0, 0.05, 0.1, 0.3):
        variation = VARIATIONS["seed-dominated"]
        sums_a, sums_b, _ = simulated_study(rng, 5, 0.5 + gap, 0.5, binary=True, **variation)
        estimates.append(estimate(sums_a, sums_b, counts))
    p_values = [e.p_value for e in estimates]
    adjusted = holm(p_values, 0.05)
    assert all(q >= p for p, q in zip(p_values, adjusted, strict=True))
    for e, p, q, factor in zip(estimates, p_values, adjusted, holm_ranks(p_values), strict=True):
        low, high = e.interval(adjusted_confidence(p, q, 0.05, factor))
        assert (low > 0 or high < 0) == (q < 0.05)
        raw_low, raw_high = e.interval(0.95)
        assert low <= raw_low and raw_high <= high  # adjusted intervals are at least as wide


def test_verdicts_read_the_interval_and_the_declared_margin():
    assert verdict(0.5, 3.0, 2.0) == BETTER
    assert verdict(-3.0, -0.1, 2.0) == WORSE
    assert verdict(-1.5, 1.9, 2.0) == EQUIVALENT
    assert verdict(-2.5, 1.0, 2.0) == INCONCLUSIVE
    assert verdict(-1.0, 1.0, None) == INCONCLUSIVE  # no margin declared: never equivalent
