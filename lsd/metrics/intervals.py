"""95% confidence intervals: bootstrap over samples within a run, and over seeds across runs.

Within a run (hundreds of samples): `scipy.stats.bootstrap`, BCa by default, with a fixed
`numpy.random.default_rng(seed)`, so an interval is a pure function of (data, seed).
- `bootstrap_interval(values)`: a mean (e.g. mean-of-exps perplexity, entropy, an error rate).
- `bootstrap_ratio_exp_interval(nll, tokens)`: exp(sum nll / sum tokens) (corpus perplexity),
  a paired bootstrap: each resample draws samples, keeping each sample's (nll, tokens) pair.

Across seeds (a few runs, one value each): `seed_interval(values)`:
- 1 value: no interval (NaN bounds, method 'single').
- 2 to 9 values: Student t-interval, mean +- t_{0.975, n-1} * sd / sqrt(n) (method 't'). With
  few runs it is wide (t = 12.7 for two, 4.3 for three), which is honest: a bootstrap over
  so few values cannot reach beyond the observed range and undercovers badly.
- 10 or more values: percentile bootstrap of the mean (method 'bootstrap-percentile').
Degenerate data (all values equal) gives the zero-width interval [v, v] (method 'degenerate').

Intervals stay inside the metric's domain (`seed_interval(values, domain=...)`):
- 'real' (default): as above.
- 'positive' (perplexity, NLL, Frechet distance): the t-interval is taken on the log scale
  (delta method): mean * exp(+- t * sd / (sqrt(n) * mean)), so it can never reach 0; the
  percentile bootstrap of positive values is positive already.
- 'unit' (a share without a count, e.g. violating transitions): the t-interval on the logit
  scale when every value lies in (0, 1), else clipped to [0, 1] (method 't-clipped').
A share of samples with a count (an error indicator per sample) gets an exact binomial interval:
`rate_interval(successes, trials)` (Clopper-Pearson, or Wilson), inside [0, 1] by construction.

Paired differences (`paired_interval`): sampler minus baseline at the same seed, one mean
difference per seed (the mean of per-sample differences when per-sample values are known, else
the difference of the two records' values), then a Student t-interval over those per-seed
differences, at any number of seeds (a percentile bootstrap over 10 to 20 seeds covers about 90%
instead of 95%; tests/test_intervals.py checks the coverage by simulation). With one seed and
per-sample differences, a t-interval over samples.
Two shares of samples whose paired differences are all equal (e.g. every sample fails for both)
would get a zero-width interval that claims a precision the counts do not have: the report then
uses `newcombe_interval` of the two pooled counts.
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy import stats


T_BELOW = 10  # fewer seeds than this: Student t; from this many on: bootstrap


@dataclasses.dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int
    n_resamples: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __contains__(self, value) -> bool:
        return self.low <= value <= self.high


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"intervals: confidence must lie in (0, 1), got {confidence!r}")
    return float(confidence)


def _vector(values, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError(f"intervals: {what} is empty")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"intervals: {what} holds a non-finite value")
    return v


def _run_bootstrap(data, statistic, *, paired: bool, confidence: float, n_resamples: int, seed: int, method: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on near-degenerate BCa; we check the result below
        res = stats.bootstrap(data, statistic, n_resamples=n_resamples, vectorized=True, paired=paired, axis=-1,
                              confidence_level=confidence, method=method, rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if method.lower() == "bca" and not (math.isfinite(low) and math.isfinite(high)):
        return _run_bootstrap(data, statistic, paired=paired, confidence=confidence, n_resamples=n_resamples,
                              seed=seed, method="percentile")
    return low, high, method.lower()


def bootstrap_interval(values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                       method: str = "BCa") -> Interval:
    """Bootstrap interval of the mean of `values` (one value per sample)."""
    confidence = _check_confidence(confidence)
    v = _vector(values, "values")
    est = float(v.mean())
    if v.size == 1:
        return Interval(est, math.nan, math.nan, confidence, "single", 1)
    if np.all(v == v[0]):
        return Interval(est, est, est, confidence, "degenerate", int(v.size))

    def mean(x, axis=-1):
        return np.mean(x, axis=axis)

    low, high, used = _run_bootstrap((v,), mean, paired=False, confidence=confidence, n_resamples=n_resamples,
                                     seed=seed, method=method)
    return Interval(est, low, high, confidence, f"bootstrap-{used}", int(v.size), n_resamples, seed)


def bootstrap_ratio_exp_interval(sum_nll, n_tokens, confidence: float = 0.95, n_resamples: int = 2000,
                                 seed: int = 0, method: str = "BCa") -> Interval:
    """Paired bootstrap interval of exp(sum(sum_nll) / sum(n_tokens)) (corpus perplexity)."""
    confidence = _check_confidence(confidence)
    a = _vector(sum_nll, "sum_nll")
    b = _vector(n_tokens, "n_tokens")
    if a.shape != b.shape:
        raise ValueError(f"intervals: sum_nll and n_tokens differ in length ({a.size} vs {b.size})")
    if np.any(b <= 0):
        raise ValueError("intervals: every sample needs n_tokens > 0 (drop unscored samples first)")
    est = float(math.exp(a.sum() / b.sum()))
    if a.size == 1:
        return Interval(est, math.nan, math.nan, confidence, "single", 1)
    if np.all(a / b == (a / b)[0]):
        return Interval(est, est, est, confidence, "degenerate", int(a.size))

    def ratio_exp(x, y, axis=-1):
        return np.exp(np.sum(x, axis=axis) / np.sum(y, axis=axis))

    low, high, used = _run_bootstrap((a, b), ratio_exp, paired=True, confidence=confidence,
                                     n_resamples=n_resamples, seed=seed, method=method)
    return Interval(est, low, high, confidence, f"paired-bootstrap-{used}", int(a.size), n_resamples, seed)


DOMAINS = ("real", "positive", "unit")


def seed_interval(values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                  domain: str = "real") -> Interval:
    """Interval of the mean of per-run values across seeds (see the module docstring for the method)."""
    confidence = _check_confidence(confidence)
    if domain not in DOMAINS:
        raise ValueError(f"intervals: domain must be one of {DOMAINS}, got {domain!r}")
    v = _vector(values, "values")
    if domain == "positive" and np.any(v <= 0):
        raise ValueError(f"intervals: domain 'positive' needs values > 0, got min {float(v.min())!r}")
    if domain == "unit" and (np.any(v < 0) or np.any(v > 1)):
        raise ValueError("intervals: domain 'unit' needs values in [0, 1]")
    est = float(v.mean())
    n = int(v.size)
    if n == 1:
        return Interval(est, math.nan, math.nan, confidence, "single", 1)
    if np.all(v == v[0]):
        return Interval(est, est, est, confidence, "degenerate", n)
    if n < T_BELOW:
        t = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
        se = float(v.std(ddof=1)) / math.sqrt(n)
        if domain == "positive":  # delta method on log(mean): se(log m) = se / m
            factor = math.exp(t * se / est)
            return Interval(est, est / factor, est * factor, confidence, "t-log", n)
        if domain == "unit":
            if 0.0 < est < 1.0 and np.all((v > 0) & (v < 1)):  # delta method on logit(mean)
                logit, half = math.log(est / (1 - est)), t * se / (est * (1 - est))
                return Interval(est, 1 / (1 + math.exp(-(logit - half))), 1 / (1 + math.exp(-(logit + half))),
                                confidence, "t-logit", n)
            return Interval(est, max(0.0, est - t * se), min(1.0, est + t * se), confidence, "t-clipped", n)
        return Interval(est, est - t * se, est + t * se, confidence, "t", n)
    iv = bootstrap_interval(v, confidence=confidence, n_resamples=n_resamples, seed=seed, method="percentile")
    return dataclasses.replace(iv, method="bootstrap-percentile")


def rate_interval(successes, trials=None, confidence: float = 0.95, method: str = "exact") -> Interval:
    """Binomial interval of a share: `successes` is a count (with `trials`) or a 0/1 vector (one
    indicator per sample). method 'exact' (Clopper-Pearson) or 'wilson'; always inside [0, 1]."""
    confidence = _check_confidence(confidence)
    if method not in ("exact", "wilson"):
        raise ValueError(f"intervals: rate method must be 'exact' or 'wilson', got {method!r}")
    if trials is None:
        v = _vector(successes, "indicators")
        if not np.all((v == 0) | (v == 1)):
            raise ValueError("intervals: rate_interval needs 0/1 indicators (or a count with trials)")
        k, n = int(v.sum()), int(v.size)
    else:
        k, n = successes, trials
        if (isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n or not 0 <= k <= n or n < 1):
            raise ValueError(f"intervals: a rate needs integers 0 <= successes <= trials, trials >= 1; got {k}/{n}")
        k, n = int(k), int(n)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method=method)
    name = "clopper-pearson" if method == "exact" else "wilson"
    return Interval(k / n, float(ci.low), float(ci.high), confidence, name, n)


def paired_interval(differences_by_seed, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Interval of the mean paired difference (method minus baseline) over seeds.

    `differences_by_seed`: a list with, per seed, either one number (the difference of the two
    records' values) or a vector of per-sample differences. Each seed contributes its mean
    difference, and the interval is a Student t-interval over those: seeds are the independent
    replicates, samples within a seed share the seed's schedule. With one seed
    of per-sample differences: a t-interval over samples (method 't-samples')."""
    confidence = _check_confidence(confidence)
    groups = [_vector(d, f"differences of seed {i}") for i, d in enumerate(differences_by_seed)]
    if not groups:
        raise ValueError("intervals: paired_interval needs at least one seed")
    if len(groups) == 1 and groups[0].size > 1:
        d = groups[0]
        est, n = float(d.mean()), int(d.size)
        if np.all(d == d[0]):
            return Interval(est, est, est, confidence, "degenerate", n)
        half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
        return Interval(est, est - half, est + half, confidence, "t-samples", n)
    means = np.array([float(g.mean()) for g in groups])
    if means.size >= T_BELOW:  # a t interval at any count: a percentile bootstrap over 10-20 seeds undercovers
        t = float(stats.t.ppf(0.5 + confidence / 2, df=means.size - 1))
        half = t * float(means.std(ddof=1)) / math.sqrt(means.size)
        return Interval(float(means.mean()), float(means.mean()) - half, float(means.mean()) + half, confidence,
                        "paired-t", int(means.size))
    iv = seed_interval(means, confidence=confidence, seed=seed)
    return dataclasses.replace(iv, method=f"paired-{iv.method}")


def newcombe_interval(successes_a: int, trials_a: int, successes_b: int, trials_b: int,
                      confidence: float = 0.95) -> Interval:
    """Newcombe's hybrid score interval of p_a - p_b for two independent binomial shares (from
    their Wilson intervals): finite width even when both shares are 0 or 1."""
    a = rate_interval(successes_a, trials_a, confidence=confidence, method="wilson")
    b = rate_interval(successes_b, trials_b, confidence=confidence, method="wilson")
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(d, low, high, confidence, "newcombe", trials_a + trials_b)
