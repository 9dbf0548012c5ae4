"""Jump Your Steps (Park et al., ICLR 2025): a time grid that minimises the compounding decoding error.

JYS keeps the sampler's rule (coefficients stay 1) and only moves its M + 1 times. It
minimises a Kullback-Leibler upper bound (KLUB) on the error of the sampler's output law,
the sum over the steps of a path-space KL, and builds the grid by hierarchical breakdown.

The KLUB of one step
--------------------
A step from t_a down to t_b < t_a evaluates the network once, at (x_{t_a}, t_a), and then
acts as if that rate held over the whole step: the *frozen* (tau-leaping) process. The true
reverse process has rate sigma(tau) Q(y, x_tau^i) s(x_tau, tau)_{i, y} at every tau in the
step: it sees the tokens decoded since t_a (the compounding decoding error) and the current
time. Both are jump processes; by Girsanov for jump processes,

    KL(true path || frozen path over [t_b, t_a])
        = int_{t_b}^{t_a} E_{x_tau, x_{t_a}} sum_i sum_{y != x_tau^i} [ r_f - r_t + r_t log(r_t / r_f) ] dtau,

with r_t = sigma(tau) Q(y, x_tau^i) s(x_tau, tau)_{i,y} (the rate the network gives at the
current state and time) and r_f = sigma(t_a) Q(y, x_tau^i) s(x_{t_a}, t_a)_{i,y} /
s(x_{t_a}, t_a)_{i, x_tau^i} (the frozen rate: network output at the step's start, rebased
to the position's current token; on the absorbing graph x_tau^i is still the mask and the
divisor is 1). Each term is the KL of two Poisson processes per destination; it is >= 0
and 0 only where the rates agree. By the chain rule and data processing, the sum over the
steps bounds KL(p_data || sampler output) when the network is exact. Per position it splits
exactly into
- a *hazard* term A - B + B log(B / A), with B = sum_y r_t and A = sum_y r_f: the KL of the
  two jump clocks (leaving the current token at all), from freezing sigma and the score's
  total mass at t_a;
- a *decoding* term B KL(p || q), with p = r_t / B and q = r_f / A: where a position jumps
  to, given that it jumps, with stale versus current context.
On the absorbing graph only masked positions contribute (unmasked rows of Q are zero) and
with exact scores B = sigma(tau) e^-sigma_bar / (1 - e^-sigma_bar) (the unmasking hazard)
and p = p(x0_i = . | x_tau): the decoding term is the hazard times KL(p(x0_i | x_tau) ||
p(x0_i | x_{t_a})).

Which terms count (`bound`):
- "jys" (default): the full KLUB above on every step, JYS's bound for the frozen-rate
  (tau-leaping) process.
- "decoding": the decoding term only, the compounding decoding error proper. It is the
  whole path KL of a sampler whose per-position clock is exact, which the harness's rules
  are with normalised scores (Tweedie always; Euler with log-linear noise, where Euler =
  Tweedie; the last step, which decodes every remaining mask): there the hazard term only
  measures how tau-leaping would differ, not how these samplers do.
- "finalize": the full KLUB, except decoding only on the absorbing graph's last step
  (the one ending at t_min), which in this harness decodes every remaining mask
  (`Graph.finalize`; JYS spends one more network call on a separate denoising step).
  Consistent, but degenerate with geometric noise: Euler's frozen hazard at t near 1 is
  exponentially below the true one, so every interior step that decodes anything there
  costs many nats, and the bound prefers to park the interior steps where nothing happens
  and decode everything in the last step (on the exact toy its TV does not fall with M).
Under log-linear noise "jys" gains little over the uniform grid (and can lose at small M):
it spends steps near t = 0, where tau-leaping's clock error in the last step is largest, an
error the harness's Euler step does not make; "decoding" gains most. The measured TVs and
perplexities behind these statements: benchmarks/results/jys_bounds.md.

Estimation
----------
- Expectation: over real data x_0 (an [n, L] tensor) noised with NESTED masks: every
  position draws one uniform u_i (counter-based stream of (seed, sample, position)) and is
  masked at time tau iff u_i < 1 - exp(-sigma_bar(tau)) (`Graph.corrupt` with the same u at
  every time). The mask sets then shrink as tau decreases, and (x_tau, x_{t_a}) has exactly
  the joint law of the absorbing forward (hence true reverse) process. Uniform graph: the
  analogous construction, one uniform and one fixed replacement token per position (the
  token is the replacement iff u_i < 1 - exp(-sigma_bar(tau))); the marginal of every x_tau
  is exact, the joint of two times is an approximation (the true process can resample a
  position several times). Every candidate time uses the same data and uniforms (common
  random numbers), so the objective is a deterministic function of the grid and golden-
  section search sees no Monte Carlo noise between its probes.
- Time integral: Gauss-Legendre with `quadrature` nodes (default 2) on each interval in the
  clean fraction q = exp(-sigma_bar(tau)) (`KLUBEstimator.nodes`): per unit q the integrand
  is about L times a KL between posteriors, smooth whatever the noise, whereas in tau it is
  a narrow peak under geometric noise, where 2 nodes in tau are off by a factor of 3 and
  the search then follows the quadrature error. On CTMC graphs (tauLDR's Gaussian-rate graph)
  the default is Gauss-Legendre in tau instead (`nodes`). Each node costs one network call per
  data batch, the frozen rate one more (cached across a search when it fits in 256 MiB).
- CTMC graphs: the same bound with `Graph.reverse_weights`; the noised pairs use one uniform per
  position and inverse CDFs of the transition rows (a monotone coupling: every marginal exact,
  the joint of two times an approximation, as on the uniform graph).
- Units: nats per sequence (mean over the data of the sum over positions).

Grid search
-----------
- Candidates are the points of the fine grid `Schedule.uniform(base, fine_steps)` (JYS: 1024),
  so a JYS grid is nested in the fine uniform grid (a teacher's grid).
- Hierarchical breakdown: [t_max, t_min] is split into 2, every piece into 2, ..., as long
  as the count stays <= M. Each split point of an interval [t_b, t_a] minimises
  KLUB([c, t_a], frozen at t_a) + KLUB([t_b, c], frozen at c) over the fine-grid points c
  strictly inside, by golden-section search on the grid indices (at most `iterations`
  iterations, stopping once the bracket is below `tol` in time or down to a few grid
  points, which are then all evaluated). Evaluations are cached per grid point.
- M not a power of two: the last level searches the best split of every interval (as if
  going to the next power of two) and keeps only the M - k splits with the largest KLUB
  reduction (KLUB of the interval minus that of its two halves); the others stay whole.
  With 2^j < M < 2^(j+1) this costs at most the searches of level j + 1.
- Cost per search: about 14 objective evaluations for 1024 fine points, each
  (1 + 2 * quadrature) network calls per data batch; M - 1 searches for M a power of two.

Tweedie
-------
The bound is derived for the frozen-rate (Euler / tau-leaping) process, as in JYS. The grid
is a property of the time axis, not of the rule: the Tweedie step has the same stale
context (the decoding term, which dominates where tokens are strongly dependent) and, with
normalised scores, no hazard mismatch at all (it unmasks each position with exactly the
forward process's conditional probability). A grid found with the Euler KLUB can be used
with the Tweedie rule; `base` only records which rule the returned schedule will run. For
Tweedie, bound="decoding" is the path KL of the rule itself (normalised scores).

Data
----
Embedded tasks: the task's corpus (e.g. `OracleText.sample_corpus(n, seed)`). Hub backbones:
a data tensor, or, self-contained, samples of a fine uniform sampler (`teacher_data`);
teacher samples carry the teacher's own discretisation error into the bound.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np
import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..diffusion.scores import CallCounter
from ..io import progress as progress_bar
from ..random import RandomStreams
from ..schedule import BASES, Schedule
from ..workflow_facts import JYS_FINE_STEPS

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
NESTED_STREAM = -0x4A5953  # the uniforms of the nested masks ("JYS"); samplers use streams >= -3
BOUNDS = ("jys", "finalize", "decoding")
FROZEN_CACHE_BYTES = 256 * 2**20  # keep the frozen log scores of a search's parent if they fit


class KLUBEstimator:
    """The KLUB of sampler steps on one data set with nested noise; counts network calls.

    model: score model `(x_t [B, L], sigma_bar [B]) -> log score [B, L, graph.dim]` (wrapped
        in a `CallCounter` here unless it already is one).
    data: LongTensor [n, L] of clean sequences; seed: keys the nested-mask uniforms.
    t_min: the schedule's final time: an interval ending there is the last step (`final`).
    """

    def __init__(self, model: Callable, graph: Graph, noise: Noise, data: torch.Tensor, *, seed: int = 0,
                 quadrature: int = 2, variable: str | None = None, bound: str = "jys", batch_size: int = 64,
                 t_min: float = 1e-5, device="cpu"):
        if not isinstance(data, torch.Tensor) or data.dim() != 2 or data.numel() == 0:
            raise ValueError(f"jys: data must be a non-empty LongTensor [n, L], got "
                             f"{tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__}")
        if data.dtype.is_floating_point or data.min() < 0 or data.max() >= graph.num_tokens:
            raise ValueError(f"jys: data must hold integer tokens in [0, {graph.num_tokens - 1}] (no masks)")
        if int(quadrature) < 1 or int(batch_size) < 1:
            raise ValueError(f"jys: need quadrature >= 1 and batch_size >= 1, got {quadrature}, {batch_size}")
        self.model = model if isinstance(model, CallCounter) else CallCounter(model)
        self.graph, self.noise = graph, noise
        self.device = torch.device(device)
        self.data = data.long().to(self.device)
        self.n, self.length = data.shape
        self.batch_size = int(batch_size)
        self.t_min = float(t_min)
        if bound not in BOUNDS:
            raise ValueError(f"jys: unknown bound {bound!r}; choose one of {list(BOUNDS)}")
        self.bound = bound
        ids = torch.arange(self.n, device=self.device)
        self.u = RandomStreams(seed, ids).uniform(NESTED_STREAM, self.length, 2)  # [n, L, 2]
        if variable is None:  # the clean fraction is the natural variable of masks and uniform resampling only
            variable = "clean" if graph.name in ("absorbing", "uniform") else "time"
        if variable not in ("clean", "time"):
            raise ValueError(f"jys: quadrature variable must be 'clean' or 'time', got {variable!r}")
        self.variable = variable
        nodes, weights = np.polynomial.legendre.leggauss(int(quadrature))
        self.nodes_std = [float(v) for v in nodes]  # on [-1, 1]
        self.weights_std = [float(v) for v in weights]
        self._nodes: dict = {}
        self._frozen: Optional[tuple[float, list]] = None  # (t_a, per-batch log scores at t_a)

    @property
    def calls(self) -> int:
        return self.model.calls

    def batches(self):
        for start in range(0, self.n, self.batch_size):
            yield slice(start, min(start + self.batch_size, self.n))

    # pieces ----------------------------------------------------------------------------
    def noised(self, rows: slice, t: float) -> torch.Tensor:
        """x_t of the data rows `rows` under the nested construction."""
        x0 = self.data[rows]
        sigma_bar = self.noise.total(torch.full((len(x0),), float(t), dtype=torch.float64, device=self.device))
        return self.graph.corrupt(x0, sigma_bar, self.u[rows])

    def log_score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        sigma_bar = self.noise.total(torch.full((len(x),), float(t), dtype=torch.float64, device=self.device))
        return self.model(x, sigma_bar)

    def _log_rate(self, t: float) -> float:
        return math.log(float(self.noise.rate(torch.tensor(float(t), dtype=torch.float64))))

    def integrand(self, x_tau, ls_tau, tau, x_a, ls_a, t_a):
        """Per-sequence (hazard [B], decoding [B]) KL rates at time tau of the step frozen at t_a."""
        w = self.graph.reverse_weights(x_tau)  # [B, L, dim], Q(y, x_tau^i), zero on the diagonal
        on = w > 0
        lb = ls_tau.to(torch.float64) + self._log_rate(tau) + torch.log(torch.where(on, w, torch.ones_like(w)))
        ls_a = ls_a.to(torch.float64)
        rebase = ls_a.gather(-1, x_tau[..., None])  # frozen score of the position's current token
        la = ls_a - rebase + self._log_rate(t_a) + torch.log(torch.where(on, w, torch.ones_like(w)))
        zero = torch.zeros_like(lb)
        rb = torch.where(on, torch.exp(lb), zero)
        ra = torch.where(on, torch.exp(la), zero)
        big_b, big_a = rb.sum(-1), ra.sum(-1)  # [B, L] total jump rates
        cross = torch.where(on & (rb > 0), rb * (lb - la), zero).sum(-1)
        # hazard: A - B + B log(B / A), with 0 log 0 = 0; decoding: sum_y r_t log(r_t/r_f) - B log(B/A).
        log_ratio = torch.where(big_b > 0, torch.log(big_b) - torch.log(big_a), torch.zeros_like(big_b))
        b_log = torch.where(big_b > 0, big_b * log_ratio, torch.zeros_like(big_b))
        hazard = big_a - big_b + b_log
        decoding = cross - b_log
        return hazard.sum(-1), decoding.sum(-1)

    def _inverse_total(self, sigma_bar: torch.Tensor, t_lo: float, t_hi: float) -> torch.Tensor:
        """Times in [t_lo, t_hi] with noise.total(t) = sigma_bar (bisection; total is increasing)."""
        lo = torch.full_like(sigma_bar, t_lo)
        hi = torch.full_like(sigma_bar, t_hi)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            below = self.noise.total(mid) < sigma_bar
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def nodes(self, t_a: float, t_b: float) -> list[tuple[float, float]]:
        """Quadrature (tau, weight) for int_{t_b}^{t_a} f(tau) dtau.

        `variable="clean"`: Gauss-Legendre in the clean fraction q = exp(-sigma_bar(tau)) (the
        probability that a token is still clean), dtau = -dq / (sigma(tau) q). Per masked
        position the rate carries the hazard sigma e^-sigma_bar / (1 - e^-sigma_bar), and the
        expected number of masked positions (1 - e^-sigma_bar) L, so the integrand per unit q is
        roughly L times a KL between posteriors: smooth in q whatever the noise schedule, while in
        tau it can be a narrow peak (geometric noise). `variable="time"`: Gauss-Legendre in tau,
        the default on CTMC graphs (`lsd.diffusion.ctmc`), where no token is "clean": on tauLDR's
        schedule (sigma_bar(1) = 297) q spans 1 to e^-297 and its nodes all land at an interval's
        low-noise end (2 nodes in q were off by a factor of 4 on [0.5, 1] of a 5-level toy; in tau,
        by 1%)."""
        key = (t_a, t_b)
        if key in self._nodes:
            return self._nodes[key]
        if self.variable == "time":
            half, mid = 0.5 * (t_a - t_b), 0.5 * (t_a + t_b)
            out = [(mid + half * x, half * w) for x, w in zip(self.nodes_std, self.weights_std)]
        else:
            ends = self.noise.total(torch.tensor([t_a, t_b], dtype=torch.float64))
            q_a, q_b = torch.exp(-ends).tolist()  # q_a < q_b
            half, mid = 0.5 * (q_b - q_a), 0.5 * (q_b + q_a)
            q = torch.tensor([mid + half * x for x in self.nodes_std], dtype=torch.float64)
            tau = self._inverse_total(-torch.log(q), t_b, t_a)
            jac = 1.0 / (self.noise.rate(tau) * q)  # |dtau / dq|
            out = [(float(t), half * w * float(j)) for t, w, j in zip(tau, self.weights_std, jac)]
        if len(self._nodes) > 4096:
            self._nodes.clear()
        self._nodes[key] = out
        return out

    def _segment(self, rows, t_a, x_a, ls_a, t_b):
        """Quadrature over [t_b, t_a] of the integrand, frozen at t_a: per-sequence (hazard, decoding)."""
        hazard = decoding = 0.0
        for tau, weight in self.nodes(t_a, t_b):
            x_tau = self.noised(rows, tau)
            h, d = self.integrand(x_tau, self.log_score(x_tau, tau), tau, x_a, ls_a, t_a)
            hazard, decoding = hazard + weight * h, decoding + weight * d
        return hazard, decoding

    def _combine(self, hazard: float, decoding: float, t_b: float) -> dict:
        final = t_b <= self.t_min * (1.0 + 1e-9)
        if self.bound == "decoding" or (self.bound == "finalize" and final and self.graph.absorbing):
            klub = decoding
        else:
            klub = hazard + decoding
        return {"klub": klub, "hazard": hazard, "decoding": decoding, "final": final}

    def _frozen_scores(self, t_a: float):
        """Per-batch (x_{t_a}, log score) for the frozen end t_a, from the cache when possible."""
        if self._frozen is not None and self._frozen[0] == t_a:
            return self._frozen[1]
        return None

    def hold(self, t_a: float) -> None:
        """Cache the frozen log scores at t_a (the parent of a search) if they fit in memory."""
        self._frozen = None
        if self.n * self.length * self.graph.dim * 8 > FROZEN_CACHE_BYTES:
            return
        cache = []
        for rows in self.batches():
            x_a = self.noised(rows, t_a)
            cache.append((x_a, self.log_score(x_a, t_a)))
        self._frozen = (t_a, cache)

    def release(self) -> None:
        self._frozen = None

    def _start(self, cached, k: int, rows, t_a: float):
        """Noised data and its log score at t_a for batch k: from the frozen cache when there is one."""
        if cached is not None:
            return cached[k]
        x_a = self.noised(rows, t_a)
        return x_a, self.log_score(x_a, t_a)

    # public ----------------------------------------------------------------------------
    def interval(self, t_a: float, t_b: float) -> dict:
        """KLUB of one step from t_a down to t_b (frozen at t_a): {klub, hazard, decoding, final}."""
        if not t_a > t_b > 0:
            raise ValueError(f"jys: need t_a > t_b > 0, got {t_a}, {t_b}")
        cached = self._frozen_scores(t_a)
        hazard = decoding = 0.0
        for k, rows in enumerate(self.batches()):
            x_a, ls_a = self._start(cached, k, rows, t_a)
            h, d = self._segment(rows, t_a, x_a, ls_a, t_b)
            hazard, decoding = hazard + float(h.sum()), decoding + float(d.sum())
        return self._combine(hazard / self.n, decoding / self.n, t_b)

    def split(self, t_a: float, c: float, t_b: float) -> tuple[dict, dict]:
        """KLUBs of the two steps t_a -> c (frozen at t_a) and c -> t_b (frozen at c)."""
        if not t_a > c > t_b > 0:
            raise ValueError(f"jys: need t_a > c > t_b > 0, got {t_a}, {c}, {t_b}")
        cached = self._frozen_scores(t_a)
        sums = [0.0, 0.0, 0.0, 0.0]
        for k, rows in enumerate(self.batches()):
            x_a, ls_a = self._start(cached, k, rows, t_a)
            h1, d1 = self._segment(rows, t_a, x_a, ls_a, c)
            x_c = self.noised(rows, c)
            h2, d2 = self._segment(rows, c, x_c, self.log_score(x_c, c), t_b)
            for j, v in enumerate((h1, d1, h2, d2)):
                sums[j] += float(v.sum())
        sums = [v / self.n for v in sums]
        return self._combine(sums[0], sums[1], c), self._combine(sums[2], sums[3], t_b)


def interval_klub(model, graph: Graph, noise: Noise, data: torch.Tensor, t_a: float, t_b: float, *,
                  seed: int = 0, quadrature: int = 2, variable: str | None = None, bound: str = "jys",
                  batch_size: int = 64, t_min: float = 1e-5) -> dict:
    """KLUB (nats per sequence) of one frozen-rate step from t_a down to t_b, estimated on `data`.

    Returns {klub, hazard, decoding, final}: `klub` = hazard + decoding for bound="jys" (see
    the module docstring for the others); `final` says whether t_b is the last time t_min."""
    est = KLUBEstimator(model, graph, noise, data, seed=seed, quadrature=quadrature, variable=variable,
                        bound=bound, batch_size=batch_size, t_min=t_min)
    return est.interval(float(t_a), float(t_b))


def golden_section(f: Callable[[int], float], lo: int, hi: int, *, iterations: int, tol_points: float,
                   scan: int = 0):
    """Minimise f over the integers strictly between lo and hi; returns (argmin, {point: f}).

    Golden-section search on grid indices: the bracket (lo, hi) holds the best point x so far;
    each iteration probes one new point at the fraction 0.382 of the larger side of x (the
    golden-section step, which keeps the golden ratio when it holds and restores it after
    rounding), then keeps the better of the two and the part of the bracket around it. Stops
    after `iterations` iterations, once the bracket is narrower than `tol_points` grid steps, or
    when it holds at most 3 interior points, which are then all evaluated. f is cached; the
    answer is the best point evaluated (f need not be unimodal). scan > 0 first evaluates
    `scan` evenly spaced points and searches around the best of them (guards against
    several local minima; JYS itself does not scan)."""
    if hi - lo < 2:
        raise ValueError(f"golden_section: no point strictly between {lo} and {hi}")
    values: dict[int, float] = {}

    def value(j: int) -> float:
        if j not in values:
            values[j] = float(f(j))
        return values[j]

    if scan > 0 and hi - lo > scan + 1:
        grid = sorted({lo + int(round((hi - lo) * (k + 1) / (scan + 1))) for k in range(scan)})
        k = min(range(len(grid)), key=lambda i: value(grid[i]))
        x = grid[k]
        lo, hi = (grid[k - 1] if k > 0 else lo), (grid[k + 1] if k + 1 < len(grid) else hi)
    else:
        x = lo + max(1, int(round((1.0 - GOLDEN) * (hi - lo))))
    it = 0
    while hi - lo > 4 and it < iterations and hi - lo > tol_points:
        if hi - x >= x - lo:
            y = x + max(1, int(round((1.0 - GOLDEN) * (hi - x))))
        else:
            y = x - max(1, int(round((1.0 - GOLDEN) * (x - lo))))
        left, right = min(x, y), max(x, y)
        if value(left) <= value(right):
            hi, x = right, left
        else:
            lo, x = left, right
        it += 1
    if hi - lo <= 4:
        for j in range(lo + 1, hi):
            value(j)
    value(x)
    best = min((v, j) for j, v in values.items())
    return best[1], values


def jys_schedule(model, graph: Graph, noise: Noise, data: torch.Tensor, nfe: int, *, base: str = "euler",
                 fine_steps: int = JYS_FINE_STEPS, t_max: float = 1.0, t_min: float = 1e-5, iterations: int = 32,
                 tol: float = 0.25 / 1024, seed: int = 0, batch_size: int = 64, quadrature: int = 2,
                 scan: int = 0, bound: str = "jys", device="cpu", progress: bool = False) -> Schedule:
    """The JYS time grid of `nfe` steps for `model`, as a `lsd.Schedule` (coefficients 1).

    model, graph, noise: the score model and the diffusion it was trained for.
    data: LongTensor [n, L] of clean sequences (task corpus, a data set, or `teacher_data`).
    nfe: steps M (= network calls per sample in the harness); base: the rule the schedule runs.
    fine_steps: candidate times are the points of `Schedule.uniform(base, fine_steps)`.
    iterations, tol: golden-section limits per split (tol in time units).
    quadrature: Gauss-Legendre nodes per interval for the KLUB's time integral.
    seed: keys the nested-mask uniforms; the result is a deterministic function of the inputs.
    batch_size: data rows per network call. device: where the data and the calls live.
    bound: "jys" (full KLUB, default), "decoding" or "finalize" (module docstring).
    scan: evenly spaced probes before each golden-section search (0: plain JYS).
    Metadata records the KLUB per step (and its hazard and decoding parts), the chosen
    fine-grid indices, searches, objective evaluations, network calls, wall time, seed, data
    size, graph, noise and `lsd.io.provenance()`.
    """
    from ..io import provenance

    if base not in BASES:
        raise ValueError(f"jys: unknown base {base!r}; choose one of {list(BASES)}")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"jys: nfe must be a positive integer, got {nfe!r}")
    if not isinstance(fine_steps, int) or fine_steps < nfe:
        raise ValueError(f"jys: fine_steps must be an integer >= nfe ({nfe}), got {fine_steps!r}")
    if not 1.0 >= t_max > t_min > 0.0:
        raise ValueError(f"jys: need 1 >= t_max > t_min > 0, got {t_max}, {t_min}")
    start = time.perf_counter()
    fine = list(Schedule.uniform(base, fine_steps, t_max=t_max, t_min=t_min).times)
    fine[0], fine[-1] = t_max, t_min  # exact ends, whatever the rounding of the linspace
    counter = model if isinstance(model, CallCounter) else CallCounter(model)
    calls0 = counter.calls
    est = KLUBEstimator(counter, graph, noise, data, seed=seed, quadrature=quadrature, bound=bound,
                        batch_size=batch_size, t_min=t_min, device=device)
    dt = (t_max - t_min) / fine_steps
    points = [0, fine_steps]  # indices into the fine grid, increasing (times decreasing)
    cost: dict[tuple[int, int], dict] = {}
    searches = evaluations = 0
    bar = progress_bar(nfe - 1, f"jys NFE={nfe}", progress, unit="split", leave=False)
    while len(points) - 1 < nfe:
        intervals = [(a, b) for a, b in zip(points[:-1], points[1:]) if b - a >= 2]
        need = nfe - (len(points) - 1)
        if not intervals:
            raise ValueError(f"jys: cannot split further at {len(points) - 1} steps (fine grid too coarse)")
        proposals = []
        for a, b in intervals:
            est.hold(fine[a])
            pieces: dict[int, tuple[dict, dict]] = {}

            def objective(j, a=a, b=b, pieces=pieces):
                upper, lower = est.split(fine[a], fine[j], fine[b])
                pieces[j] = (upper, lower)
                return upper["klub"] + lower["klub"]

            best, values = golden_section(objective, a, b, iterations=iterations, tol_points=tol / dt, scan=scan)
            est.release()
            searches += 1
            evaluations += len(values)
            upper, lower = pieces[best]
            whole = cost.get((a, b))
            gain = (whole["klub"] if whole is not None else math.inf) - values[best]
            proposals.append((gain, a, best, b, upper, lower))
        if need < len(proposals):
            proposals.sort(key=lambda p: -p[0])
            proposals = proposals[:need]
        for gain, a, c, b, upper, lower in proposals:
            points.append(c)
            cost.pop((a, b), None)
            cost[(a, c)], cost[(c, b)] = upper, lower
            bar.update(1)
        points.sort()
    bar.close()
    steps = list(zip(points[:-1], points[1:]))
    for a, b in steps:  # M = 1, or an interval never produced by a split
        if (a, b) not in cost:
            cost[(a, b)] = est.interval(fine[a], fine[b])
    per_step = [cost[s] for s in steps]
    times = [fine[j] for j in points]
    metadata = {
        "method": "jys",
        "nfe": nfe,
        "base": base,
        "fine_steps": fine_steps,
        "fine_indices": points,
        "iterations": iterations,
        "tol": tol,
        "quadrature": quadrature,
        "quadrature_variable": est.variable,
        "bound": bound,
        "scan": scan,
        "klub": [p["klub"] for p in per_step],
        "klub_hazard": [p["hazard"] for p in per_step],
        "klub_decoding": [p["decoding"] for p in per_step],
        "klub_total": float(sum(p["klub"] for p in per_step)),
        "klub_units": "nats per sequence",
        "searches": searches,
        "evaluations": evaluations,
        "network_calls": counter.calls - calls0,
        "wall_time_s": time.perf_counter() - start,
        "seed": seed,
        "data_size": int(data.shape[0]),
        "data_length": int(data.shape[1]),
        "batch_size": batch_size,
        "graph": graph.config(),
        "noise": noise.config(),
        "provenance": provenance(),
    }
    return Schedule(base=base, times=times, metadata=metadata)


def teacher_data(model, graph: Graph, noise: Noise, n: int, length: int, steps: int = 1024, seed: int = 0, *,
                 base: str = "euler", batch_size: int = 64, device="cpu", progress: bool = False) -> torch.Tensor:
    """n sequences [n, length] from the model's own fine uniform sampler: JYS data without a corpus.

    Costs n / batch_size * steps network calls. The samples carry the teacher's (small)
    discretisation error and the model's own errors; the KLUB then measures the few-step
    sampler against the model, not against the data."""
    from ..sampling import sample

    schedule = Schedule.uniform(base, int(steps), method="jys-teacher")
    return sample(model, schedule, graph=graph, noise=noise, num_samples=int(n), length=int(length), seed=seed,
                  batch_size=batch_size, device=device, progress=progress)
