"""One sampler step, from the float64 [B, L, dim] probabilities (the specification `sample`
follows, and the sparse step reproduces): the step's rule (euler, tauleap, tweedie; `lsd.sampling`
explains them), the coefficient convention, the draws from per-sample streams, and the
selection rules' hook."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .diffusion.graph import Graph
from .diffusion.noise import Noise
from .diffusion.scores import posterior_of
from .draws import draw
from .random import TAULEAP, RandomStreams
from .schedule import Schedule


@dataclass
class Step:
    """What the per-step callback sees: step k from time t to t_next at state x."""

    index: int
    t: float
    t_next: float
    x: torch.Tensor  # [B, L] state at t
    log_score: torch.Tensor  # [B, L, dim] network output at (x, t)
    move: torch.Tensor  # [B, L, dim] float64 probabilities of moving to y (tauleap: expected jump counts)
    stay: torch.Tensor  # [B, L] float64 probability of staying
    x_next: torch.Tensor  # [B, L] state at t_next
    sample_ids: torch.Tensor  # [B] global indices of the samples in this batch


def scaled_score(log_score: torch.Tensor, coefficient: float, convention: str) -> torch.Tensor:
    """The score s' a step uses, float64: Phi * s (`scale`) or s^Phi (`power`)."""
    log_score = log_score.to(torch.float64)
    if convention == "power":
        return torch.exp(coefficient * log_score)
    return coefficient * torch.exp(log_score)


def check_base(base: str, graph: Graph) -> None:
    """One-line error when a base rule cannot run on `graph` (tau-leaping adds and clamps values)."""
    if base == "tauleap" and not graph.ordinal:
        raise ValueError(f"schedule.base 'tauleap': needs a graph with ordinal values (gaussian, ctmc with "
                         f"ordinal=true), not the {graph.name} graph")


def transition_probabilities(graph: Graph, noise: Noise, base: str, t: float, t_next: float, x: torch.Tensor,
                             score: torch.Tensor, final: bool = False, temperature: float = 1.0, posterior=None):
    """Unnormalised (move [B, L, dim], stay [B, L]) of one `base` step from t to t_next, clamped at 0.

    `score` is the (already scaled) score s' in float64. `final` applies `graph.finalize` (the
    last step: no mask left behind; decoding on the CTMC graphs). `tauleap` returns Euler's
    probabilities (its `move` are the expected Poisson jump counts; `sample` draws them).
    `posterior`: log p(x0 | x_t) of an x0-predicting model (`lsd.X0Score` attaches it to its
    output), used by the CTMC graphs' last step; without it they decode from the score.
    `temperature` != 1 reshapes where a position moves (move_y proportional to move_y^(1/T))
    without changing how much probability moves: the temperature-matched baselines."""
    check_base(base, graph)
    times = torch.tensor([t, t_next], dtype=torch.float64, device=x.device)
    if base in ("euler", "tauleap"):
        move = ((t - t_next) * noise.rate(times[0])) * graph.reverse_weights(x) * score
        stay = 1.0 - move.sum(-1)
    else:
        sb = noise.total(times)
        move, stay = graph.tweedie(x, score, (sb[0] - sb[1]).expand(x.shape[0]))
    if final:
        sb = noise.total(times)
        move, stay = graph.finalize(move, stay, x, score=score, delta=(sb[0] - sb[1]).expand(x.shape[0]),
                                    posterior=posterior)
    move, stay = move.clamp_min(0.0), stay.clamp_min(0.0)
    if temperature != 1.0:
        mass = move.sum(-1, keepdim=True)
        sharp = torch.where(move > 0, move, 0.0) ** (1.0 / temperature)
        move = sharp * (mass / sharp.sum(-1, keepdim=True).clamp_min(1e-300))
    return move, stay


def step_probabilities(graph: Graph, noise: Noise, schedule: Schedule, k: int,
                       x: torch.Tensor, log_score: torch.Tensor):
    """Unnormalised (move [B, L, dim], stay [B, L]) of step k of `schedule`, clamped at 0."""
    score = scaled_score(log_score, schedule.coefficients[k], schedule.convention)
    return transition_probabilities(graph, noise, schedule.base, schedule.times[k], schedule.times[k + 1], x, score,
                                    final=k == schedule.nfe - 1, temperature=schedule.temperature,
                                    posterior=posterior_of(log_score))


def poisson_quantile(mean: torch.Tensor, u: torch.Tensor, max_iterations: int = 10000) -> torch.Tensor:
    """Inverse CDF of Poisson(mean) at uniforms u in [0, 1) (float64, same shape): the least n >= 0
    with P(N <= n) > u. Exact up to the accuracy of `torch.special.gammaincc` (P(N <= n) =
    Q(n + 1, mean)). Only entries with u >= e^-mean (a non-zero count) are searched, from a
    Cornish-Fisher guess, one unit per iteration."""
    mean = mean.to(torch.float64)
    if not torch.isfinite(mean).all() or (mean < 0).any():
        raise ValueError("tauleap: jump rates must be finite and >= 0")
    counts = torch.zeros_like(mean)
    active = u >= torch.exp(-mean)
    if not active.any():
        return counts
    lam, v = mean[active], u[active]
    z = torch.special.ndtri(v)
    n = torch.floor(lam + lam.sqrt() * z + (z * z - 1.0) / 6.0).clamp_min(1.0)
    for _ in range(max_iterations):
        below = torch.special.gammaincc(n + 1.0, lam) <= v  # P(N <= n) <= u: n too small
        above = (n >= 2.0) & (torch.special.gammaincc(n.clamp_min(1.0), lam) > v)  # P(N <= n - 1) > u
        if not (below.any() or above.any()):
            break
        n = n + below.to(n.dtype) - above.to(n.dtype)
    else:
        raise RuntimeError("tauleap: the Poisson inverse CDF did not converge")
    counts[active] = n
    return counts


def draw_tauleap(x: torch.Tensor, move: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One tau-leaping step: counts N_y ~ Poisson(move_y) from uniforms u [B, L, dim] (float64),
    x_next = clamp(x + sum_y (y - x) N_y, 0, dim - 1). `move` holds the expected jump counts
    (zero at y == x)."""
    dim = move.shape[-1]
    counts = poisson_quantile(move, u)
    offsets = torch.arange(dim, device=x.device, dtype=torch.float64) - x[..., None].to(torch.float64)
    jump = (counts * offsets).sum(-1)
    return (x + jump.to(torch.long)).clamp(0, dim - 1)


def draw_step(base: str, x: torch.Tensor, move: torch.Tensor, stay: torch.Tensor, streams: RandomStreams, k: int,
              final: bool) -> torch.Tensor:
    """The draw of step k for `base`: Poisson counts (`tauleap`, except on the decoding last step)
    or one categorical jump (every other rule), from the per-sample streams."""
    if base == "tauleap" and not final:
        return draw_tauleap(x, move, streams.uniform(TAULEAP + k, x.shape[1], move.shape[-1]))
    return draw(x, move, stay, streams.uniform(k, x.shape[1], 2))


def dense_step(graph: Graph, noise: Noise, schedule: Schedule, k: int, x: torch.Tensor, log_score: torch.Tensor,
               streams: RandomStreams) -> torch.Tensor:
    """Step k of `schedule` from the full float64 [B, L, dim] probabilities: the specification
    `sparse_step` reproduces bit for bit (and the path `sample` takes where it does not apply)."""
    move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
    if schedule.selection is None:
        return draw_step(schedule.base, x, move, stay, streams, k, final=k == schedule.nfe - 1)
    from .selection import selection_step

    return selection_step(graph, schedule, k, x, move, stay, streams)
