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


def seed_interval(values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """Interval of the mean of per-run values across seeds (see the module docstring for the method)."""
    confidence = _check_confidence(confidence)
    v = _vector(values, "values")
    est = float(v.mean())
    n = int(v.size)
    if n == 1:
        return Interval(est, math.nan, math.nan, confidence, "single", 1)
    if np.all(v == v[0]):
        return Interval(est, est, est, confidence, "degenerate", n)
    if n < T_BELOW:
        half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
        return Interval(est, est - half, est + half, confidence, "t", n)
    iv = bootstrap_interval(v, confidence=confidence, n_resamples=n_resamples, seed=seed, method="percentile")
    return dataclasses.replace(iv, method="bootstrap-percentile")
