"""General continuous-time Markov chain (CTMC) graphs: any reversible base rate matrix.

The forward process of one position is a CTMC with rate matrix R_t = beta(t) R_b: `beta` is
the `Noise`'s rate and its integral sigma_bar(t) the `Noise`'s total, so the transition matrix
from time 0 to t is exp(sigma_bar(t) R_b). Convention (tauLDR's, rows): R_b[i, j] >= 0 is the
rate of jumping from value i to value j != i, and R_b[i, i] = -sum_{j != i} R_b[i, j], so every
row sums to zero; P_c = exp(c R_b) has rows P_c[i, :] = q(. | i).

Why a general graph: tauLDR's CIFAR-10 model (Campbell et al. 2022; docs/conventions.md section 8), the
backbone of the LSD paper's image result, diffuses every pixel value with a Gaussian-shaped rate
matrix (`GaussianGraph`, `gaussian_rate_matrix`) that is neither absorbing nor uniform.

Numerics. R_b must be reversible with respect to its start distribution pi (detailed balance:
pi_i R_b[i, j] = pi_j R_b[j, i]). Then A = Pi^(1/2) R_b Pi^(-1/2) is symmetric, A = U diag(l) U^T
(`torch.linalg.eigh`, float64), and exp(c R_b) = Pi^(-1/2) U diag(e^(c l)) U^T Pi^(1/2) for any c,
without a matrix exponential per time. The largest eigenvalue is set to exactly 0 (the
stationary mode; eigh gives it to ~1e-16) and no eigenvalue is allowed above 0. Tiny negative
entries of a transition matrix (rounding) are clamped to 0. tauLDR itself uses float32 and a
general `numpy.linalg.eig`; this module keeps everything in float64.

What the harness's interface means here (see `lsd.diffusion.graph` for the protocol):
- `limit`: x_T ~ pi (inverse CDF of one uniform per position). tauLDR starts from pi too.
- `corrupt`: x_t ~ P_sigma_bar[x0, :] by inverse CDF of one uniform per position (the same
  uniform at every time gives a monotone coupling of the times; each marginal is exact).
- `reverse_weights(x)[y] = R_b[y, x]`: the base rate of the forward jump y -> x. The reverse
  rate from x to y is beta(t) R_b[y, x] s_y (docs/conventions.md section 8, with s_y the concrete score).
- `tweedie(x, s, delta)`: SEDD's analytic step, p(y) = [exp(-delta R_b) applied to s]_y
  * P_delta[y, x] (the posterior of x_{t - delta} given x_t under the factorised score), in the
  eigenbasis. exp(-delta R_b) amplifies mode k of the score by e^(delta |l_k|) (up to e^1000 for
  a step of 1/8 near t = 1 on tauLDR's schedule), and the score only resolves a mode down to its
  rounding error: the amplification is capped at e^`TWEEDIE_CUT` (e^15 = 3.3e6). Measured on
  one position with exact scores (tests; expected total variation to the exact reverse kernel
  over steps of 1/8 in t): below 3e-5 from float64 scores (the samplers' own), about 3e-2 from
  float32 scores (a teacher record's); the formula without the cap gives garbage (TV 0.55-0.65)
  on the steps of 1/8 starting at t >= 0.5 on the digits graph and at t >= 0.25 on CIFAR-10's.
  With exact arithmetic the rule is exact for one position. The direction the cap leaves most
  amplified is the current token's own (the step applied to s = e_x reaches entries of 1e5 on
  the digits graph): a score whose entry at x is not the one its other entries imply turns that
  mismatch into probabilities. `lsd.X0Score` therefore normalises the network's float32
  posterior in float64 before forming the score; unnormalised, its ~1e-7 excess moved a step's
  probabilities by ~1e-2 in total variation, and the last bits of the network (which differ
  between batch shapes and CPUs) changed tiny-tauldr-digits' Tweedie samples. Normalised, a 1e-7
  change of the posterior moves them by ~1e-9.
- `finalize` (last step of every sampler): decode from p(x0 | x_t), the posterior at the last
  network call. `final="argmax"` (default, tauLDR's last step) jumps to its most probable
  value, `final="sample"` draws from it; the step's coefficient does not act on the model's own
  posterior (as on the absorbing graph, where the scale convention's Phi cancels in the last
  step). The posterior is
  the x0-model's own output when the score carries it (`lsd.X0Score` attaches it to its log
  score, see `lsd.diffusion.scores.POSTERIOR`). Otherwise (exact toy scores, the optimisers'
  recorded float32 scores) it is computed from the score by the analytic step to the final
  time: exact for short last steps (from t = 0.125 on the 17-level digits graph, 0.0625 on
  CIFAR-10's), but a long last step loses the high modes as above (from t = 0.25 on digits,
  0.125 on CIFAR-10, the decoded law is far off). Either way the last step spends no network
  call beyond its own: NFE = number of steps.
- `ordinal = True` for value spaces that can be added and clamped (pixel intensities): the
  `tauleap` base rule (Poisson jump counts, ordinal jump sum, clamp) needs it.
"""
from __future__ import annotations

import torch

from .graph import Graph

TWEEDIE_CUT = 15.0  # largest log-amplification exp(-delta R_b) applies to a mode of the score
FINALS = ("argmax", "sample")


def gaussian_rate_matrix(num_tokens: int, rate_sigma: float, q_sigma: float) -> torch.Tensor:
    """tauLDR's `GaussianTargetRate` base matrix R_b [S, S] (rows sum to 0), float64.

    Construction (tauLDR `lib/models/models.py`, reproduced entry by entry, see the tests):
    1. "Inward" jumps: with w_d = exp(-d^2 / rate_sigma^2), a value i < S // 2 jumps up to every
       j with i < j < S - i at rate w_{j - i - 1}; a value i > S // 2 jumps down to every j with
       S - 1 - i < j < i at rate w_{i - j - 1}; i = S // 2 has no inward jump. Neighbours get
       rate w_0 = 1, jumps of d values exp(-(d - 1)^2 / rate_sigma^2).
    2. Every reverse ("outward") jump gets the rate that makes the chain reversible w.r.t.
       pi(k) ~ exp(-((k + 1) - S/2)^2 / (2 q_sigma^2)): R[i, j] = R[j, i] exp(-(h(j) - h(i)) /
       (2 q_sigma^2)) with h(k) = (k + 1)^2 - S (k + 1). tauLDR's in-place double loop also
       passes every downward inward rate through that formula twice (multiplied by the factor
       and its inverse); this is done here too, so the two agree to the last bit up to `exp`.
    3. Diagonal: minus the row sums.
    """
    S = int(num_tokens)
    if S < 2:
        raise ValueError(f"gaussian graph: need at least 2 values, got {num_tokens}")
    if not (float(rate_sigma) > 0 and float(q_sigma) > 0):
        raise ValueError(f"gaussian graph: need rate_sigma > 0 and q_sigma > 0, got {rate_sigma}, {q_sigma}")
    k = torch.arange(S, dtype=torch.float64)
    weight = torch.exp(-(k ** 2) / float(rate_sigma) ** 2)  # w_d, d = 0 .. S - 1
    i = torch.arange(S)[:, None]
    j = torch.arange(S)[None, :]
    up = (i < S // 2) & (j > i) & (j < S - i)
    down = (i > S // 2) & (j < i) & (j > S - 1 - i)
    inward = torch.zeros(S, S, dtype=torch.float64)
    inward[up] = weight[(j - i - 1).expand(S, S)[up]]
    inward[down] = weight[(i - j - 1).expand(S, S)[down]]
    h = (k + 1.0) ** 2 - S * (k + 1.0)  # exact integers in float64
    factor = torch.exp(-(h[None, :] - h[:, None]) / (2.0 * float(q_sigma) ** 2))  # factor[i, j]
    outward = inward.T * factor  # R[i, j] from R[j, i]
    rate = torch.where(inward > 0, inward, outward)
    rate = torch.where(down, (inward * factor.T) * factor, rate)  # tauLDR's round trip (see 2.)
    rate.fill_diagonal_(0.0)
    rate -= torch.diag(rate.sum(1))
    return rate


def gaussian_start(num_tokens: int, q_sigma: float) -> torch.Tensor:
    """pi(k) ~ exp(-((k + 1) - S/2)^2 / (2 q_sigma^2)), the distribution the Gaussian-rate matrix is
    reversible to. For even S it is tauLDR's start distribution (its centre S // 2 = S/2)."""
    k = torch.arange(1, int(num_tokens) + 1, dtype=torch.float64)
    log_p = -((k - num_tokens / 2.0) ** 2) / (2.0 * float(q_sigma) ** 2)
    return torch.softmax(log_p, 0)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index drawn from unnormalised rows probs [..., S] with uniforms u [...] (float64)."""
    cdf = probs.cumsum(-1)
    target = (u * cdf[..., -1]).unsqueeze(-1)
    return torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True)[..., 0].clamp_max(probs.shape[-1] - 1)


def _per_value(fn, values: torch.Tensor) -> torch.Tensor:
    """fn over the distinct entries of a 1-D tensor, indexed back: [n, ...]."""
    unique, inverse = torch.unique(values, return_inverse=True)
    return fn(unique)[inverse]


class CTMCGraph(Graph):
    """A CTMC graph with a dense, reversible base rate matrix (module docstring).

    rates: [S, S] nested lists or a tensor, R_b[i, j] = rate i -> j (off-diagonal >= 0; the
        diagonal is recomputed as minus the row sums).
    start: the start distribution pi (default: the stationary distribution of `rates`); R_b
        must satisfy detailed balance with respect to it.
    ordinal: whether values can be added and clamped (needed by the `tauleap` rule).
    final: "argmax" (default, tauLDR) or "sample": what the last step does with the posterior.
    Config: {"type": "ctmc", "num_tokens", "rates", "start", "ordinal", "final"} (`make_graph`).
    """

    name = "ctmc"

    def __init__(self, num_tokens: int, rates, start=None, ordinal: bool = False, final: str = "argmax"):
        with torch.device("cpu"):  # the graph is data on the host, whatever the caller's default device
            self._build(num_tokens, rates, start, ordinal, final)

    def _build(self, num_tokens, rates, start, ordinal, final):
        super().__init__(num_tokens)
        S = self.num_tokens
        rate = torch.as_tensor(rates, dtype=torch.float64).clone()
        if rate.shape != (S, S):
            raise ValueError(f"graph.rates: need a [{S}, {S}] matrix, got shape {tuple(rate.shape)}")
        if not torch.isfinite(rate).all():
            raise ValueError("graph.rates: entries must be finite")
        rate.fill_diagonal_(0.0)
        if (rate < 0).any():
            raise ValueError("graph.rates: off-diagonal rates must be >= 0")
        rate -= torch.diag(rate.sum(1))
        if final not in FINALS:
            raise ValueError(f"graph.final: unknown {final!r}; choose one of {list(FINALS)}")
        self.final, self.ordinal = final, bool(ordinal)
        self.rate_matrix = rate
        pi = self._stationary(rate) if start is None else torch.as_tensor(start, dtype=torch.float64).clone()
        if pi.shape != (S,) or not torch.isfinite(pi).all() or (pi <= 0).any():
            raise ValueError(f"graph.start: need {S} positive probabilities")
        pi = pi / pi.sum()
        self.start = pi
        flow = pi[:, None] * rate
        scale = float(flow.abs().max())
        if float((flow - flow.T).abs().max()) > 1e-9 * scale:
            raise ValueError("graph.rates: the rate matrix is not reversible with respect to the start distribution "
                             "(detailed balance fails); the eigendecomposition needs it")
        root = pi.sqrt()
        sym = root[:, None] * rate / root[None, :]
        evals, vecs = torch.linalg.eigh(0.5 * (sym + sym.T))
        evals = evals.clamp_max(0.0)
        evals[-1] = 0.0  # the stationary mode (largest eigenvalue), exactly
        self.eigenvalues, self._vecs, self._root = evals, vecs, root
        self._cache: dict = {}
        self._config = {"type": self.name, "num_tokens": S, "rates": rate.tolist(), "start": pi.tolist(),
                        "ordinal": self.ordinal, "final": final}

    @staticmethod
    def _stationary(rate: torch.Tensor) -> torch.Tensor:
        S = rate.shape[0]
        system = torch.cat([rate.T, torch.ones(1, S, dtype=torch.float64)])
        rhs = torch.zeros(S + 1, 1, dtype=torch.float64)
        rhs[-1] = 1.0
        return torch.linalg.lstsq(system, rhs).solution[:, 0]

    def config(self) -> dict:
        return dict(self._config)

    def _on(self, device) -> tuple:
        """(eigenvalues, U, sqrt(pi), R_b^T with a zero diagonal, pi) on `device`, cached."""
        key = str(torch.device(device))
        if key not in self._cache:
            into = self.rate_matrix.T.clone()  # into[x, y] = R_b[y, x]
            into.fill_diagonal_(0.0)
            self._cache[key] = tuple(t.to(device) for t in (self.eigenvalues, self._vecs, self._root, into,
                                                            self.start))
        return self._cache[key]

    # forward process ---------------------------------------------------------------
    def transition_matrix(self, sigma_bar: torch.Tensor) -> torch.Tensor:
        """exp(sigma_bar R_b) [..., S, S] (rows: from, columns: to) for sigma_bar [...], float64."""
        sb = torch.as_tensor(sigma_bar, dtype=torch.float64)
        evals, vecs, root, _, _ = self._on(sb.device)
        decay = torch.exp(sb[..., None] * evals)  # [..., S]
        left = vecs / root[:, None]  # Pi^(-1/2) U
        right = (vecs * root[:, None]).T  # U^T Pi^(1/2)
        return ((left * decay[..., None, :]) @ right).clamp_min(0.0)

    def transition(self, sigma_bar):
        """q(x_t = y | x_0 = v) as [..., y, v] (the harness's layout)."""
        return self.transition_matrix(sigma_bar).transpose(-1, -2)

    def _rows(self, sigma_bar: torch.Tensor) -> torch.Tensor:
        """exp(sigma_bar_b R_b) [B, S, S] for sigma_bar [B], computed once per distinct value."""
        return _per_value(self.transition_matrix, sigma_bar.to(torch.float64).reshape(-1))

    def corrupt(self, x0, sigma_bar, u):
        P = self._rows(sigma_bar)  # [B, S, S]
        rows = P.gather(1, x0[..., None].expand(-1, -1, self.dim))  # [B, L, S]: q(. | x0)
        return _inverse_cdf(rows, u[..., 0])

    def limit_distribution(self) -> torch.Tensor:
        return self.start.clone()

    def limit(self, u):
        cdf = self._on(u.device)[4].cumsum(0)
        return torch.searchsorted(cdf, (u[..., 0] * cdf[-1]).contiguous(), right=True).clamp_max(self.dim - 1)

    # reverse process ---------------------------------------------------------------
    def reverse_weights(self, x):
        return self._on(x.device)[3][x]  # [..., y] = R_b[y, x], zero at y == x

    def tweedie(self, x, score, delta):
        evals, vecs, root, _, _ = self._on(score.device)
        full = score.to(torch.float64).scatter(-1, x[..., None], 1.0)
        d = delta.to(torch.float64).reshape(-1, 1)  # [B, 1]
        gain = torch.exp((-d * evals).clamp_max(TWEEDIE_CUT))  # e^(delta |l_k|), capped
        modes = (full / root) @ vecs  # [B, L, S]
        back = ((modes * gain[:, None, :]) @ vecs.T) * root  # exp(-delta R_b) applied to s, per y
        P = self._rows(delta)  # [B, S, S]: P_delta[y, x] as a function of y is column x
        into_x = P.transpose(1, 2).gather(1, x[..., None].expand(-1, -1, self.dim))  # [B, L, y]
        probs = back * into_x
        stay = probs.gather(-1, x[..., None])[..., 0]
        return probs.scatter(-1, x[..., None], 0.0), stay

    def finalize(self, move, stay, x, score=None, delta=None, posterior=None, **context):
        """The last step: decode from p(x0 | x_t) (`posterior`, log probabilities [B, L, S], when the
        model gave it; else `tweedie` of `score` over `delta`, the total noise left): its argmax
        (`final="argmax"`) or the posterior itself as the step's probabilities (`"sample"`)."""
        if posterior is not None:
            probs = torch.softmax(posterior.to(torch.float64), -1)
            stay = probs.gather(-1, x[..., None])[..., 0]
            move = probs.scatter(-1, x[..., None], 0.0)
        elif score is None or delta is None:
            raise ValueError("ctmc graph: the final step needs the posterior, or the score and the total noise left")
        else:
            move, stay = self.tweedie(x, score, delta)
        move, stay = move.clamp_min(0.0), stay.clamp_min(0.0)
        if self.final == "sample":
            return move, stay
        best = move.scatter(-1, x[..., None], stay[..., None]).argmax(-1)
        move = torch.zeros_like(move).scatter_(-1, best[..., None], 1.0).scatter_(-1, x[..., None], 0.0)
        return move, (best == x).to(stay.dtype)


class GaussianGraph(CTMCGraph):
    """tauLDR's Gaussian-rate graph: `gaussian_rate_matrix(S, rate_sigma, q_sigma)`, start `gaussian_start`.

    CIFAR-10 (docs/conventions.md section 8): S = 256, rate_sigma = 6, q_sigma = 512, with
    `ExponentialNoise(3, 100)`. Ordinal values. Config {"type": "gaussian", "num_tokens",
    "rate_sigma", "q_sigma", "final"} rebuilds the matrix."""

    name = "gaussian"

    def __init__(self, num_tokens: int, rate_sigma: float = 6.0, q_sigma: float = 512.0, final: str = "argmax"):
        with torch.device("cpu"):
            rates, start = gaussian_rate_matrix(num_tokens, rate_sigma, q_sigma), gaussian_start(num_tokens, q_sigma)
        super().__init__(num_tokens, rates, start=start, ordinal=True, final=final)
        self.rate_sigma, self.q_sigma = float(rate_sigma), float(q_sigma)
        self._config = {"type": self.name, "num_tokens": self.num_tokens, "rate_sigma": self.rate_sigma,
                        "q_sigma": self.q_sigma, "final": final}

    def __repr__(self) -> str:
        return f"GaussianGraph({self.num_tokens}, rate_sigma={self.rate_sigma}, q_sigma={self.q_sigma})"


__all__ = ["CTMCGraph", "GaussianGraph", "gaussian_rate_matrix", "gaussian_start", "TWEEDIE_CUT", "FINALS"]
