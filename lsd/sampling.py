"""One sampler for every schedule (k-diffusion style: a plain function over a model and a schedule).

Step k goes from tau_k to tau_{k+1} with one network call at tau_k:
- euler:   P(x_i -> y) = (tau_k - tau_{k+1}) sigma(tau_k) Q(y, x_i) s'_y
- tweedie: SEDD's analytic step over delta = sigma_bar(tau_k) - sigma_bar(tau_{k+1})
where s' is the score after the step's coefficient (`Schedule` explains the conventions).
The last step also removes every remaining mask (its probabilities of staying masked are
dropped), so a schedule of M steps costs exactly M network calls: NFE = M. (SEDD and JYS
spend one more call on a separate denoising step; this harness folds it in, as the LSD
student does.)

Draws are exact float64 categorical draws from per-sample counter-based streams
(`lsd.random`): position i first stays or moves with one uniform, then picks its
destination by inverse CDF with a second one. Samples depend on (seed, sample index)
only, never on batch size or order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .diffusion.graph import Graph
from .diffusion.noise import Noise
from .random import INIT, RandomStreams
from .schedule import Schedule


@dataclass
class Step:
    """What the per-step callback sees: step k from time t to t_next at state x."""

    index: int
    t: float
    t_next: float
    x: torch.Tensor  # [B, L] state at t
    log_score: torch.Tensor  # [B, L, dim] network output at (x, t)
    move: torch.Tensor  # [B, L, dim] float64 probabilities of moving to y
    stay: torch.Tensor  # [B, L] float64 probability of staying
    x_next: torch.Tensor  # [B, L] state at t_next
    sample_ids: torch.Tensor  # [B] global indices of the samples in this batch


def scaled_score(log_score: torch.Tensor, coefficient: float, convention: str) -> torch.Tensor:
    """The score s' a step uses, float64: Phi * s (`scale`) or s^Phi (`power`)."""
    log_score = log_score.to(torch.float64)
    if convention == "power":
        return torch.exp(coefficient * log_score)
    return coefficient * torch.exp(log_score)


def transition_probabilities(graph: Graph, noise: Noise, base: str, t: float, t_next: float, x: torch.Tensor,
                             score: torch.Tensor, final: bool = False, temperature: float = 1.0):
    """Unnormalised (move [B, L, dim], stay [B, L]) of one `base` step from t to t_next, clamped at 0.

    `score` is the (already scaled) score s' in float64. `final` drops what stays absorbed.
    `temperature` != 1 reshapes where a position moves (move_y proportional to move_y^(1/T))
    without changing how much probability moves: the temperature-matched baselines."""
    if base == "euler":
        t64 = torch.tensor(t, dtype=torch.float64, device=x.device)
        move = ((t - t_next) * noise.rate(t64)) * graph.reverse_weights(x) * score
        stay = 1.0 - move.sum(-1)
    else:
        times = torch.tensor([t, t_next], dtype=torch.float64, device=x.device)
        sb = noise.total(times)
        move, stay = graph.tweedie(x, score, (sb[0] - sb[1]).expand(x.shape[0]))
    if final:
        move, stay = graph.finalize(move, stay, x)
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
                                    final=k == schedule.nfe - 1, temperature=schedule.temperature)


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
            x_next = draw(x, move, stay, streams.uniform(k, length, 2))
            if callback is not None:
                callback(Step(k, schedule.times[k], schedule.times[k + 1], x, log_score, move, stay, x_next, ids))
            x = x_next
            if bar is not None:
                bar.update(1)
        out[start:start + len(ids)] = x.cpu()
    if bar is not None:
        bar.close()
    return out
