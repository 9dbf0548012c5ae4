"""Intervals that stay inside the metric's domain, and paired differences, checked by their coverage
on data with a known answer (simulated with fixed seeds; each check takes a few seconds)."""
import math

import numpy as np
import pytest
from scipy import stats

from lsd.metrics.intervals import newcombe_interval, paired_interval, rate_interval, seed_interval

DATASETS = 2000  # coverage of a 95% interval over 2000 datasets: standard error 0.005
COVERAGE = (0.93, 0.97)


def test_positive_metric_interval_stays_above_zero():
    values = [0.4, 0.5, 9.0]  # three seeds of a perplexity-like metric, one of them far off
    plain = seed_interval(values)
    assert plain.low < 0  # today's t interval leaves the domain
    logged = seed_interval(values, domain="positive")
    assert logged.method == "t-log" and 0 < logged.low < logged.estimate < logged.high
    assert logged.estimate == pytest.approx(np.mean(values))
    with pytest.raises(ValueError, match="needs values > 0"):
        seed_interval([0.0, 1.0], domain="positive")
    with pytest.raises(ValueError, match="domain must be one of"):
        seed_interval([1.0, 2.0], domain="log")


def test_unit_metric_interval_stays_in_zero_one():
    values = [0.01, 0.02, 0.3]
    assert seed_interval(values).low < 0
    iv = seed_interval(values, domain="unit")
    assert iv.method == "t-logit" and 0 < iv.low < iv.estimate < iv.high < 1
    clipped = seed_interval([0.0, 0.0, 0.25], domain="unit")  # a 0 has no logit
    assert clipped.method == "t-clipped" and clipped.low == 0.0 and clipped.high <= 1.0


def test_rate_interval_of_all_or_no_failures_is_not_degenerate():
    ones = rate_interval(np.ones(16))  # every sample fails: a bootstrap would give [1, 1]
    assert ones.estimate == 1.0 and ones.high == 1.0 and 0.75 < ones.low < 1.0
    zeros = rate_interval(0, 16, method="wilson")
    assert zeros.low == pytest.approx(0.0, abs=1e-12) and 0 < zeros.high < 0.25
    with pytest.raises(ValueError, match="0/1 indicators"):
        rate_interval([0.5, 1.0])
    with pytest.raises(ValueError, match="successes <= trials"):
        rate_interval(5, 4)


@pytest.mark.parametrize("trials, share", [(48, 0.1), (48, 0.3), (64, 0.5)])
def test_rate_interval_coverage(trials, share):
    """Exact coverage (a sum over every possible count): Clopper-Pearson never below 95%, Wilson close to it."""
    pmf = stats.binom.pmf(np.arange(trials + 1), trials, share)
    for method, low, high in (("exact", 0.95, 0.985), ("wilson", *COVERAGE)):
        ivs = [rate_interval(k, trials, method=method) for k in range(trials + 1)]
        coverage = sum(p for p, iv in zip(pmf, ivs) if iv.low <= share <= iv.high)
        assert low <= coverage <= high, (method, coverage)


def test_positive_interval_coverage_by_simulation():
    """Three seeds of a gamma-distributed positive metric (mean 4, coefficient of variation 0.3)."""
    rng = np.random.default_rng(16)
    shape, mean = 1 / 0.3**2, 4.0
    draws = rng.gamma(shape, mean / shape, size=(DATASETS, 3))
    covered = sum(iv.low <= mean <= iv.high for iv in (seed_interval(v, domain="positive") for v in draws))
    assert COVERAGE[0] <= covered / DATASETS <= COVERAGE[1]
    assert all(seed_interval(v, domain="positive").low > 0 for v in draws[:200])


def simulate_paired(rng, difference: float, seeds: int, samples: int, coupled: bool):
    """Per-seed vectors of per-sample differences (method minus baseline). Each seed has its own effect
    shared by both samplers (the seed's schedule); with coupling, sample i of both samplers also shares
    its randomness, so most of the per-sample noise cancels in the difference."""
    out = []
    for _ in range(seeds):
        seed_effect = rng.normal(0.0, 1.0)
        noise = rng.normal(0.0, 1.0, samples)
        base = 2.0 + seed_effect + noise
        other = 2.0 + seed_effect + difference + (noise if coupled else rng.normal(0.0, 1.0, samples))
        out.append(other + rng.normal(0.0, 0.2, samples) - base)
    return out


@pytest.mark.parametrize("seeds", [3, 12])
def test_paired_interval_coverage_by_simulation(seeds):
    rng = np.random.default_rng(seeds)
    covered = 0
    for _ in range(DATASETS):
        iv = paired_interval(simulate_paired(rng, 0.5, seeds, 16, coupled=True))
        covered += iv.low <= 0.5 <= iv.high
    assert COVERAGE[0] <= covered / DATASETS <= COVERAGE[1]


def test_pairing_on_coupled_samples_narrows_the_interval():
    rng = np.random.default_rng(7)
    coupled = [paired_interval(simulate_paired(rng, 0.5, 3, 64, coupled=True)) for _ in range(200)]
    independent = [paired_interval(simulate_paired(rng, 0.5, 3, 64, coupled=False)) for _ in range(200)]
    width = lambda ivs: np.median([iv.high - iv.low for iv in ivs])  # noqa: E731
    assert width(coupled) < 0.5 * width(independent)
    # per-seed values (no per-sample vectors) give the same interval as the seeds' mean differences
    diffs = simulate_paired(rng, 0.5, 3, 64, coupled=True)
    assert paired_interval(diffs).low == pytest.approx(paired_interval([d.mean() for d in diffs]).low)
    assert paired_interval(diffs).method == "paired-t"
    one = paired_interval(diffs[:1])  # one seed: a t interval over its samples
    assert one.method == "t-samples" and one.n == 64


def test_newcombe_difference_of_shares():
    both_fail = newcombe_interval(16, 16, 16, 16)
    assert both_fail.estimate == 0.0 and -1 < both_fail.low < 0 < both_fail.high < 1
    iv = newcombe_interval(2, 48, 30, 48)
    assert iv.high < 0 and math.isclose(iv.estimate, 2 / 48 - 30 / 48)
