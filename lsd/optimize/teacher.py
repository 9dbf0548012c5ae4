"""Teacher rollouts and the coupled randomness that makes teacher and student comparable.

Coupling (absorbing graph). Each sample gets, once, one uniform *clock* c_i and one uniform
*token draw* v_i per position, shared by every trajectory of that sample. A trajectory keeps
the survival S_i = prod_j (1 - p_ij) of position i (p_ij: its probability of leaving the mask
at step j) and unmasks the position at the first step where S_i <= c_i, to the token at
quantile v_i of its destination distribution. Any step sizes give the correct law, and
trajectories on different grids unmask a position at nearly the same time to nearly the same
token: "the same start" then means comparable states. Each position unmasks once, so one
token draw per position suffices. On other graphs positions jump repeatedly: the uniforms
of a step are keyed by the teacher-grid index where the step starts, so a student step and
the teacher step starting at the same time share their draws.
With `coupling="independent"` the student gets its own seed: the ablation that shows why
coupling matters (docs/conventions.md section 6).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..diffusion.graph import AbsorbingGraph, Graph
from ..diffusion.noise import Noise
from ..draws import TrajectoryNoise
from ..io import progress as progress_bar
from ..sparse_step import exact_rows, rows_at, sparse_chunk_rows, step_move_factor
from ..step import scaled_score, transition_probabilities

INDEPENDENT_SALT = 0x5D5D5D5D


def sparse_teacher_step(graph: Graph, noise: Noise, base: str, t: float, t_next: float, final: bool,
                        x: torch.Tensor, log_score: torch.Tensor, cum: torch.Tensor, rng: TrajectoryNoise):
    """One teacher step on the absorbing graph from the masked rows alone (`lsd.sparse_step.exact_rows`):
    bit for bit `cum += move` and `rng.step` of the dense step, without its [B, L, dim] float64
    tensors. None (nothing done) where that is not guaranteed: a factor the dense step would clamp,
    or a score whose float64 exponential times the factor may not be finite (the dense step's zero
    weights then give NaN on revealed rows too)."""
    factor = step_move_factor(noise, base, t, t_next, x.shape[0])
    if not (0.0 <= factor < 1e30 and float(log_score.max()) <= 600.0):  # a NaN anywhere fails too
        return None
    dim = graph.dim
    flat_x, rows, cum_rows = x.reshape(-1), log_score.reshape(-1, dim), cum.view(-1, dim)
    x_next = flat_x.clone()
    masked = (flat_x == graph.mask_id).nonzero()[:, 0]
    for part in masked.split(sparse_chunk_rows(x.device, dim)) if masked.numel() else ():
        move, stay = exact_rows(graph, base, 1.0, "scale", final, factor, flat_x[part], rows_at(rows, part))
        cum_rows.index_add_(0, part, move)
        rng.step_positions(x_next, part, move, move.sum(-1), stay)
    return x_next.view_as(x)


def trajectory_seed(seed: int, coupling: str) -> int:
    if coupling not in ("coupled", "independent"):
        raise ValueError(f"coupling: unknown {coupling!r}; choose 'coupled' or 'independent'")
    return seed if coupling == "coupled" else seed ^ INDEPENDENT_SALT


@dataclass
class TeacherRecord:
    """What the student steps need from N-step teacher rollouts, at G + 1 candidate times.

    Candidate g sits at teacher step g * N / G (g = G is the end of sampling). Memory grows
    with G x trajectories x length x dim, never with N."""

    times: list  # [G + 1] candidate times (last: the final time)
    steps: list  # [G + 1] teacher step index of each candidate
    states: torch.Tensor  # [G, n, L] teacher state at each candidate (before its step)
    log_scores: torch.Tensor  # [G, n, L, dim] float32: the teacher's network output there
    cum_move: torch.Tensor  # [G + 1, n, L, dim] float32: teacher move probabilities summed from T
    samples: torch.Tensor  # [n, L] the teacher's final samples
    base: str
    teacher_steps: int
    seed: int
    calls: int
    grid_costs: dict = field(default_factory=dict)  # memo of lsd+ interval costs per base rule


@torch.no_grad()
def teacher_rollout(model, graph: Graph, noise: Noise, *, length: int, trajectories: int, steps: int = 1024,
                    base: str = "euler", candidates: int = 128, t_max: float = 1.0, t_min: float = 1e-5,
                    seed: int = 0, batch_size: int = 64, device="cpu", progress: bool = False,
                    dense: bool = False) -> TeacherRecord:
    """Run `trajectories` uniform `steps`-step teacher samplers, recording at `candidates` times.

    On the absorbing graph each step touches the masked rows only (`sparse_teacher_step`, the same
    record bit for bit); `dense=True` builds the full float64 step instead (the specification)."""
    if steps % candidates:
        raise ValueError(f"teacher: candidates ({candidates}) must divide teacher steps ({steps})")
    stride = steps // candidates
    times = [t_max + (t_min - t_max) * j / steps for j in range(steps + 1)]
    dim = graph.dim
    states = torch.empty(candidates, trajectories, length, dtype=torch.long)
    log_scores = torch.empty(candidates, trajectories, length, dim, dtype=torch.float32)
    cum_move = torch.zeros(candidates + 1, trajectories, length, dim, dtype=torch.float32)
    samples = torch.empty(trajectories, length, dtype=torch.long)
    calls = 0
    sparse = not dense and type(graph) is AbsorbingGraph and base in ("euler", "tweedie")  # `sparse_teacher_step`
    bar = progress_bar(-(-trajectories // batch_size) * steps, f"teacher {base} N={steps}", progress, leave=False)
    for start in range(0, trajectories, batch_size):
        rows = slice(start, min(start + batch_size, trajectories))
        ids = torch.arange(rows.start, rows.stop, device=device)
        rng = TrajectoryNoise(graph, seed, ids, length)
        x = rng.start()
        cum = torch.zeros(len(ids), length, dim, dtype=torch.float64, device=device)
        for j in range(steps):
            sigma_bar = noise.total(torch.full((len(ids),), times[j], dtype=torch.float64, device=device))
            log_score = model(x, sigma_bar)
            calls += 1
            if j % stride == 0:
                states[j // stride, rows] = x.cpu()
                log_scores[j // stride, rows] = log_score.float().cpu()
                cum_move[j // stride, rows] = cum.float().cpu()
            x_next = None
            if sparse:
                x_next = sparse_teacher_step(graph, noise, base, times[j], times[j + 1], j == steps - 1, x, log_score,
                                             cum, rng)
            if x_next is None:
                move, stay = transition_probabilities(graph, noise, base, times[j], times[j + 1], x,
                                                      scaled_score(log_score, 1.0, "scale"), final=j == steps - 1)
                cum += move
                x_next = rng.step(x, move, stay, j)
            x = x_next
            bar.update(1)
        cum_move[candidates, rows] = cum.float().cpu()
        samples[rows] = x.cpu()
    bar.close()
    return TeacherRecord(times[::stride], list(range(0, steps + 1, stride)), states, log_scores, cum_move, samples,
                         base, steps, seed, calls)
