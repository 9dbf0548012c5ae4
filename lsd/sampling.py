"""One sampler for every schedule (k-diffusion style: a plain function over a model and a schedule).

Step k goes from tau_k to tau_{k+1} with one network call at tau_k:
- euler:   P(x_i -> y) = (tau_k - tau_{k+1}) sigma(tau_k) Q(y, x_i) s'_y, one categorical jump;
- tauleap: the same expected jump counts m_y = (tau_k - tau_{k+1}) sigma(tau_k) Q(y, x_i) s'_y
           (so `transition_probabilities` returns Euler's move/stay for it and the optimisers
           treat it as Euler), but every destination y gets an independent Poisson(m_y) count
           N_y and the value moves by the ordinal sum sum_y (y - x_i) N_y, clamped to
           [0, V - 1] (tauLDR's tau-leaping, Campbell et al. 2022). Graphs with ordinal
           values only (`graph.ordinal`: the Gaussian-rate graph of images);
- tweedie: SEDD's analytic step over delta = sigma_bar(tau_k) - sigma_bar(tau_{k+1})
where s' is the score after the step's coefficient (`Schedule` explains the conventions).
The last step (`graph.finalize`) removes every remaining mask on the absorbing graph (its
probabilities of staying masked are dropped); on the CTMC graphs it decodes from p(x0 | x_t)
at the last network call (the x0-model's own output, `lsd.X0Score`; else derived from the
score): its argmax by default, as tauLDR's last step, or a draw from it (`final="sample"` in
the graph's config). A tau-leaping schedule's last step is that categorical decoding too.
Either way it uses the last step's own network call, so a schedule of M steps costs exactly
M network calls: NFE = M. (SEDD, JYS and tauLDR spend one more call on a separate denoising
step; this harness folds it in, as the LSD student does.)

Draws are exact float64 categorical draws from per-sample counter-based streams
(`lsd.random`): position i first stays or moves with one uniform, then picks its
destination by inverse CDF with a second one. Tau-leaping draws each Poisson count by
inverse CDF of its own uniform (stream `lsd.random.TAULEAP + k`). Samples depend on
(seed, sample index) only, never on batch size or order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .diffusion.graph import Graph
from .diffusion.noise import Noise
from .diffusion.scores import posterior_of
from .random import INIT, TAULEAP, RandomStreams
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


def pick_destination(rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from unnormalised float64 rows [n, dim] with uniforms u [n]."""
    cdf = rows.cumsum(-1)
    target = u * cdf[:, -1]
    return torch.searchsorted(cdf, target[:, None], right=True)[:, 0].clamp_max(rows.shape[-1] - 1)


def draw(x: torch.Tensor, move: torch.Tensor, stay: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Next state from the step's probabilities and uniforms u [B, L, 2] (float64 throughout):
    u[..., 0] decides whether a position moves, u[..., 1] where to."""
    total_move = move.sum(-1)
    moves = u[..., 0] * (total_move + stay) < total_move
    if not moves.any():
        return x
    x_next = x.clone()
    x_next[moves] = pick_destination(move[moves], u[..., 1][moves])
    return x_next


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


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule, *,
           graph: Graph, noise: Noise, num_samples: int, length: int, seed: int = 0,
           batch_size: int = 64, first_sample: int = 0, device: str | torch.device = "cpu",
           callback: Optional[Callable[[Step], None]] = None, progress: bool = False) -> torch.Tensor:
    """Draw `num_samples` sequences of `length` tokens with `schedule`; returns LongTensor [n, L].

    model: a score model `(x_t [B, L], sigma_bar [B] float64) -> log score [B, L, graph.dim]`;
        wrap it in `lsd.CallCounter` to count network calls (exactly `schedule.nfe` per batch).
    schedule: the sampler, as data (`lsd.Schedule`).
    graph, noise: the diffusion the model was trained for.
    seed, first_sample: sample i (global index first_sample + i) uses its own random streams
        keyed by (seed, index): results do not depend on batch_size.
    callback: called after every step with a `Step` (state, time, score, probabilities).
    progress: show a tqdm bar over batches x steps.
    """
    if num_samples < 0 or length < 1 or batch_size < 1:
        raise ValueError(f"sample: need num_samples >= 0, length >= 1, batch_size >= 1; "
                         f"got {num_samples}, {length}, {batch_size}")
    check_base(schedule.base, graph)  # before any network call
    if schedule.selection is not None:
        from .selection import check_graph, selection_step

        check_graph(schedule, graph)  # before any network call: one line naming schedule.selection
    device = torch.device(device)
    out = torch.empty(num_samples, length, dtype=torch.long)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        n_batches = -(-num_samples // batch_size)
        bar = tqdm(total=n_batches * schedule.nfe, desc=f"sample {schedule.metadata.get('method', '')} "
                   f"{schedule.base} NFE={schedule.nfe}", unit="step", leave=False)
    for start in range(0, num_samples, batch_size):
        ids = torch.arange(first_sample + start, first_sample + min(start + batch_size, num_samples), device=device)
        streams = RandomStreams(seed, ids)
        x = graph.limit(streams.uniform(INIT, length, 2))
        for k in range(schedule.nfe):
            sigma_bar = noise.total(torch.full((len(ids),), schedule.times[k], dtype=torch.float64, device=device))
            log_score = model(x, sigma_bar)
            move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
            if schedule.selection is None:
                x_next = draw_step(schedule.base, x, move, stay, streams, k, final=k == schedule.nfe - 1)
            else:  # the schedule's selection rule decides which masks leave (lsd.selection)
                x_next = selection_step(graph, schedule, k, x, move, stay, streams)
            if callback is not None:
                callback(Step(k, schedule.times[k], schedule.times[k + 1], x, log_score, move, stay, x_next, ids))
            x = x_next
            if bar is not None:
                bar.update(1)
        out[start:start + len(ids)] = x.cpu()
    if bar is not None:
        bar.close()
    return out
