"""The float64 categorical draws every sampler shares: inverse-CDF picks from unnormalised
rows, the move-or-stay draw of one step, and the coupled draws of a trajectory
(`TrajectoryNoise`: one clock and one token uniform per position on the absorbing graph, so
that trajectories on different grids make nearly the same choices; see
`lsd.optimize.teacher`). A leaf below the sampler, the selection rules and the optimisers."""
from __future__ import annotations

import torch

from .diffusion.graph import Graph
from .random import INIT, RandomStreams

CLOCK, TOKEN = -2, -3  # the streams of the coupled clock and token uniforms


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

    def step_positions(self, x_next: torch.Tensor, positions: torch.Tensor, move: torch.Tensor, total: torch.Tensor,
                       stay: torch.Tensor) -> None:
        """`step` (absorbing graph) at flat positions [n] with float64 rows move [n, dim], their sums and
        stays, into the flat x_next in place; every other position has no move mass (`step` leaves
        it and its survival as they are)."""
        leave = torch.where(total > 0, total / (total + stay).clamp_min(1e-300), 0.0)
        survival = self.survival.view(-1)
        survival[positions] = survival[positions] * (1.0 - leave)
        moves = (total > 0) & (self.clock.view(-1)[positions] >= survival[positions])
        if moves.any():
            movers = moves.nonzero()[:, 0]
            x_next[positions[movers]] = pick_destination(move.index_select(0, movers),
                                                         self.token.view(-1)[positions[movers]])
