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
coupling matters (anchors.md section 6).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..random import INIT, RandomStreams
from ..sampling import draw, pick_destination, scaled_score, transition_probabilities

CLOCK, TOKEN = -2, -3
INDEPENDENT_SALT = 0x5D5D5D5D


class TrajectoryNoise:
    """The random draws of one trajectory for samples `sample_ids`; same seed = coupled."""

    def __init__(self, graph: Graph, seed: int, sample_ids: torch.Tensor, length: int):
        self.graph, self.length = graph, length
        self.streams = RandomStreams(seed, sample_ids)
        if graph.absorbing:
            self.clock = self.streams.uniform(CLOCK, length)
            self.token = self.streams.uniform(TOKEN, length)
            self.survival = torch.ones(len(sample_ids), length, dtype=torch.float64, device=sample_ids.device)

    def start(self) -> torch.Tensor:
        return self.graph.limit(self.streams.uniform(INIT, self.length, 2))

    def step(self, x: torch.Tensor, move: torch.Tensor, stay: torch.Tensor, grid_index: int) -> torch.Tensor:
        if not self.graph.absorbing:
            return draw(x, move, stay, self.streams.uniform(grid_index, self.length, 2))
        total = move.sum(-1)
        leave = torch.where(total > 0, total / (total + stay).clamp_min(1e-300), 0.0)
        self.survival = self.survival * (1.0 - leave)
        moves = (total > 0) & (self.clock >= self.survival)
        if not moves.any():
            return x
        x_next = x.clone()
        x_next[moves] = pick_destination(move[moves], self.token[moves])
        return x_next


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
                    seed: int = 0, batch_size: int = 64, device="cpu", progress: bool = False) -> TeacherRecord:
    """Run `trajectories` uniform `steps`-step teacher samplers, recording at `candidates` times."""
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
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=-(-trajectories // batch_size) * steps, desc=f"teacher {base} N={steps}", leave=False)
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
            move, stay = transition_probabilities(graph, noise, base, times[j], times[j + 1], x,
                                                  scaled_score(log_score, 1.0, "scale"), final=j == steps - 1)
            cum += move
            x = rng.step(x, move, stay, j)
            if bar is not None:
                bar.update(1)
        cum_move[candidates, rows] = cum.float().cpu()
        samples[rows] = x.cpu()
    if bar is not None:
        bar.close()
    return TeacherRecord(times[::stride], list(range(0, steps + 1, stride)), states, log_scores, cum_move, samples,
                         base, steps, seed, calls)
