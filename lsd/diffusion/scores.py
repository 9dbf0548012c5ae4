"""The score-model protocol and the adapters for models that predict x_0.

A score model is any callable `model(x_t: LongTensor[B, L], sigma_bar: Tensor[B])` that
returns the log concrete score `[B, L, graph.dim]`, with the entry of the current token
equal to log 1 = 0 (SEDD's output convention). `sigma_bar` arrives as float64; networks
cast it to their own dtype.

Two adapters turn a model of log p(x_0^i | x_t) into a score model:
- `DenoiserScore`: the absorbing graph (RADD), with its closed form and its output cache.
- `X0Score`: any graph with a transition matrix (uniform, CTMC, tauLDR's Gaussian-rate graph):
  s_y = sum_{x0} p(x0 | x) q_t(y | x0) / q_t(x | x0), the ratio the true score has when p is
  the true posterior (docs/conventions.md section 8). The reverse rate is then sigma(t) Q(y, x) s_y
  as on every other graph. Its log score also carries the posterior itself, as the plain
  attribute `POSTERIOR` of the returned tensor: the CTMC graphs decode the last step from it
  (a score cannot give it back at coarse steps, `lsd.diffusion.ctmc`). Any copy of the tensor
  (`.float()`, `.cpu()`, a teacher record) drops it, and the graph then decodes from the score.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from .graph import AbsorbingGraph

POSTERIOR = "log_posterior"  # attribute of an X0Score log score: log p(x0 | x_t) [B, L, V] of the same call


def posterior_of(log_score: torch.Tensor):
    """log p(x0 | x_t) attached to a score model's output (`X0Score`), or None."""
    return getattr(log_score, POSTERIOR, None)


class ScoreModel(Protocol):
    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor: ...


class DenoiserScore:
    """Turn a model of log p(x_0^i = y | x_t) over the V real tokens into a score model.

    Absorbing graph only (RADD, docs/conventions.md section 3): at a masked position
    log s_y = log p(y) - log(expm1(sigma_bar)); the mask column (the current token there)
    is 0. Unmasked positions never move on the absorbing graph, so their entries are
    irrelevant and kept finite.

    `cache=True` (for time-independent denoisers such as RADD and the exact oracle): the
    denoiser's output only changes when the sequence does, so rows identical to the previous
    call's are not recomputed. `network_calls` counts forward passes actually run (RADD's
    E-NFE) and `rows_evaluated` the sequences they covered. Samples are bit-identical with and
    without the cache as long as the network computes each row independently of the others in
    its batch (true of the DiT on CPU, tested; batched GPU kernels may differ in the last bit).
    """

    def __init__(self, log_denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], graph: AbsorbingGraph,
                 cache: bool = False):
        if not graph.absorbing:
            raise ValueError("DenoiserScore: absorbing graph only; use lsd.X0Score for x0-predicting models "
                             "on other graphs")
        self.log_denoiser = log_denoiser
        self.graph = graph
        self.cache = cache
        self.network_calls = 0
        self.rows_evaluated = 0
        self._last_x = self._last_out = None

    def denoise(self, x_t, sigma_bar):
        """log p(x0 | x_t), reusing the previous call's rows where the sequence is unchanged."""
        if not self.cache or x_t.is_meta:
            self.network_calls += 1
            self.rows_evaluated += x_t.shape[0]
            return self.log_denoiser(x_t, sigma_bar)
        last = self._last_x
        if last is None or last.shape != x_t.shape or last.device != x_t.device:
            changed = torch.ones(x_t.shape[0], dtype=torch.bool, device=x_t.device)
        else:
            changed = (x_t != last).any(-1)
        if changed.all():
            out = self.log_denoiser(x_t, sigma_bar)
        else:
            out = self._last_out.clone()
            if changed.any():
                out[changed] = self.log_denoiser(x_t[changed], sigma_bar[changed])
        n = int(changed.sum())
        self.network_calls += n > 0
        self.rows_evaluated += n
        self._last_x, self._last_out = x_t.clone(), out
        return out

    def __call__(self, x_t, sigma_bar):
        log_p = self.denoise(x_t, sigma_bar)
        offset = torch.log(torch.expm1(sigma_bar.to(log_p.dtype)))[:, None, None]
        log_score = torch.cat([log_p - offset, torch.zeros_like(log_p[..., :1])], dim=-1)
        # The current token's entry is log 1 = 0 (only matters at unmasked positions).
        return log_score.scatter(-1, x_t[..., None], 0.0)


class X0Score:
    """Turn a model of log p(x_0^i = v | x_t) over the V values into a score model on any graph.

    log_denoiser: `(x_t [B, L], sigma_bar [B]) -> log p(x0 | x_t) [B, L, V]` (V = graph.num_tokens);
        time-dependent in general (no cache).
    graph: provides `transition(sigma_bar)` = q_t(y | v) as [..., dim, V].
    ratio_eps: added to the denominator q_t(x | x0), as tauLDR's `eps_ratio` (1e-9): where the
        forward process makes x (nearly) impossible from x0 (q below the float64 rounding of
        the eigendecomposition, ~1e-16) a model's small but non-zero p(x0 | x) would otherwise
        turn into an arbitrary ratio. Entries with q_t(x | x0) >> ratio_eps are exact.

    Returns float64 log scores [B, L, dim]: s_y = sum_v p(v | x) q_t(y | v) / (q_t(x | v) + eps),
    the current token's entry exactly 0 (its exact value is 1 up to eps), entries floored at
    LOG_FLOOR, with log p(x0 | x_t) attached as `POSTERIOR`. One network call per call;
    `network_calls` counts them (as `DenoiserScore` does).
    """

    LOG_FLOOR = -1e4  # s = 0 (a value the forward process cannot reach) as a finite log

    def __init__(self, log_denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], graph,
                 ratio_eps: float = 1e-9):
        self.log_denoiser = log_denoiser
        self.graph = graph
        self.ratio_eps = float(ratio_eps)
        self.network_calls = 0
        self.rows_evaluated = 0

    def denoise(self, x_t, sigma_bar):
        """log p(x0 | x_t) [B, L, V] from the wrapped model (counted)."""
        self.network_calls += 1
        self.rows_evaluated += x_t.shape[0]
        return self.log_denoiser(x_t, sigma_bar)

    def score_from_posterior(self, log_p: torch.Tensor, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        """The log score [B, L, dim] (float64) implied by log p(x0 | x_t) [B, L, V]."""
        sb = sigma_bar.to(torch.float64).reshape(-1).to(x_t.device)
        unique, inverse = torch.unique(sb, return_inverse=True)
        kernel = self.graph.transition(unique)[inverse]  # [B, dim, V]: q_t(y | v)
        V = kernel.shape[-1]
        at_x = kernel.gather(1, x_t[..., None].expand(-1, -1, V))  # [B, L, V]: q_t(x | v)
        # normalised in float64: a float32 posterior sums to 1 only within ~1e-7, and that
        # excess, put on the current token (s_x = 1), is what the CTMC Tweedie step amplifies
        # up to e^TWEEDIE_CUT into visibly different probabilities (lsd.diffusion.ctmc)
        ratio = torch.softmax(log_p.to(torch.float64), -1) / (at_x + self.ratio_eps)
        score = torch.bmm(ratio, kernel.transpose(1, 2))  # [B, L, dim]: sum_v ratio_v q_t(y | v)
        log_score = torch.log(score).clamp_min(self.LOG_FLOOR)
        return log_score.scatter(-1, x_t[..., None], 0.0)

    def __call__(self, x_t, sigma_bar):
        log_p = self.denoise(x_t, sigma_bar)
        log_score = self.score_from_posterior(log_p, x_t, sigma_bar)
        setattr(log_score, POSTERIOR, log_p)
        return log_score


class CallCounter:
    """Wraps a model and counts its calls: the NFE of everything that runs through it."""

    def __init__(self, model: ScoreModel):
        self.model = model
        self.calls = 0

    def __call__(self, x_t, sigma_bar):
        self.calls += 1
        return self.model(x_t, sigma_bar)
