"""LSD+'s time grid: the cost of replacing the teacher between two candidate times by one student
step (the L1 residual of its move probabilities against the teacher's), and the least-cost
NFE-step grid among the candidates by dynamic programming."""
from __future__ import annotations

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..step import transition_probabilities
from .lsd_objective import DistillationError
from .teacher import TeacherRecord


def best_partition(cost: torch.Tensor, nfe: int) -> list:
    """Indices 0 = g_0 < g_1 < ... < g_nfe = G minimising sum_k cost[g_k, g_{k+1}] (dynamic programming).

    `cost` is [G + 1, G + 1]; entries with b <= a are never used. Always returns a valid grid
    (strictly increasing, from 0 to G), whatever the costs, as long as nfe <= G."""
    G = cost.shape[0] - 1
    if not 1 <= nfe <= G:
        raise ValueError(f"grid: need 1 <= nfe <= {G} candidate intervals, got {nfe}")
    finite = torch.nan_to_num(cost.double(), nan=float("inf"), posinf=float("inf"), neginf=float("inf"))
    forward = torch.triu(torch.ones(G + 1, G + 1, dtype=torch.bool), diagonal=1)
    # invalid (b <= a) transitions cost more than any valid path, so they are never chosen
    big = float(finite[forward & torch.isfinite(finite)].abs().sum()) * 2 + 1.0 if torch.isfinite(finite[forward]).any() else 1.0
    finite = torch.where(forward, torch.where(torch.isfinite(finite), finite, big), float("inf"))
    best = torch.full((nfe + 1, G + 1), float("inf"), dtype=torch.float64)
    back = torch.zeros((nfe + 1, G + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, nfe + 1):  # best[k, b]: least cost of reaching b from 0 in k steps
        best[k], back[k] = (best[k - 1][:, None] + finite).min(0)
    grid = [G]
    for k in range(nfe, 0, -1):
        grid.append(int(back[k, grid[-1]]))
    grid = grid[::-1]
    if grid[0] != 0 or any(a >= b for a, b in zip(grid, grid[1:])):
        raise DistillationError(f"grid: no valid {nfe}-step grid among {G} candidate intervals")
    return grid


@torch.no_grad()
def transition_costs(graph: Graph, noise: Noise, record: TeacherRecord, base: str,
                     max_trajectories: int = 16) -> torch.Tensor:
    """cost[a, b] of replacing the teacher between candidates a < b by one student step.

    cost(a, b) = || Phi m_ab - (P_b - P_a) ||_1, where m_ab are the student's one-step move
    probabilities from the teacher state at t_a to t_b, P the teacher's summed moves and Phi
    the L2-best coefficient of the interval. L1, not L2: probability vectors of diffuse token
    distributions have tiny L2 norms, and an L2 cost lets the early, most parallel steps grow
    (on the exact toy, an L2 cost made 4-step sampling worse than the uniform grid).
    Computed once per teacher record and base rule (memoised on the record)."""
    key = (base, max_trajectories)
    if key in record.grid_costs:
        return record.grid_costs[key]
    G = len(record.times) - 1
    n = min(max_trajectories, record.states.shape[1])
    cost = torch.full((G + 1, G + 1), float("inf"), dtype=torch.float64)
    for a in range(G):
        x = record.states[a, :n]
        score = torch.exp(record.log_scores[a, :n].double())
        for b in range(a + 1, G + 1):
            m, _ = transition_probabilities(graph, noise, base, record.times[a], record.times[b], x, score,
                                            final=b == G)
            dp = (record.cum_move[b, :n] - record.cum_move[a, :n]).double()
            mm, md = float((m * m).sum()), float((m * dp).sum())
            phi = md / mm if mm > 0 else 1.0
            cost[a, b] = float((phi * m - dp).abs().sum())
    record.grid_costs[key] = cost
    return cost


def transition_grid(graph: Graph, noise: Noise, record: TeacherRecord, nfe: int, base: str) -> tuple[list, list]:
    """LSD+'s time grid: the nfe-step subset of the candidate times of least total transition cost."""
    G = len(record.times) - 1
    if nfe > G:
        raise ValueError(f"lsd+: nfe ({nfe}) exceeds the teacher's candidate times ({G}); raise --candidates")
    cost = transition_costs(graph, noise, record, base)
    grid = best_partition(cost, nfe)
    return grid, [float(cost[a, b]) for a, b in zip(grid, grid[1:])]
