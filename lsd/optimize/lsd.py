"""LSD and LSD+ (Fu et al., NeurIPS 2025): learnable coefficients and time grids, distilled
from an N-step teacher by matching intermediate scores rather than final samples.

What this harness implements (the paper's equations are the specification, anchors.md s6):
- LSD: one coefficient Phi_k per student step, fitted sequentially. At student step k,
  Phi_k minimises the L2 distance sum (s*_k - Phi_k s_k)^2 between the teacher's score at
  its own state x*_{t_k} and the student's scaled score at the student state x_{t_k}, over
  the entries where both states can move (graph.reverse_weights > 0 in both: on the
  absorbing graph, positions masked in both, real tokens). Under `scale` (Phi * s) this has
  the closed form Phi_k = <s, s*> / ||s||^2; under `power` (s^Phi) it is a 1-D bounded
  minimisation. The student then takes its step with Phi_k and moves on.
- LSD+: also the step sizes kappa_k. Taken literally, the paper's per-step transition loss
  ||kappa_k Phi_k s_k - ((T - eps)/N) s*_k||^2 is degenerate once Phi_k is fitted (its
  minimiser is the same constant for every k: a uniform grid after normalisation). We read
  the "effective transition term" of a student step over [t_a, t_b] as its one-step move
  probabilities and compare them with the teacher's move probabilities summed over the
  teacher steps it replaces; with the best Phi per interval, the L1 residual (a total-variation
  type distance; see `transition_grid`) is the interval's cost, and dynamic programming picks the M-step grid of least total cost among the
  teacher's candidate times. The grid is a subset of the teacher grid: positive steps that
  sum to T - eps_s, strictly decreasing, valid by construction. Phi_k are then fitted on it
  as in LSD.
- Relaxed objective: the student starts within Hamming distance zeta * L of the teacher's
  start. From the all-mask start, round(zeta L) positions (chosen per sample) are revealed
  with tokens drawn from the backbone's own p(x0 | x_T) (the teacher's first score); on the
  uniform graph they are replaced by uniform tokens. Inference always starts unperturbed.
  `zeta="auto"` fits each zeta in ZETA_GRID on half the trajectories and keeps the one whose
  coefficients give the least loss on the other half, started unperturbed (as at inference).
"""
from __future__ import annotations

import math
import time

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..diffusion.scores import CallCounter
from ..io import provenance
from ..sampling import pick_destination, scaled_score, transition_probabilities
from ..schedule import Schedule
from .teacher import TeacherRecord, TrajectoryNoise, teacher_rollout, trajectory_seed

ZETA_GRID = (0.0, 0.01, 0.05, 0.1, 0.2)
PERTURB = -4
POWER_BOUNDS = (0.0, 8.0)


class DistillationError(RuntimeError):
    """The optimisation diverged (non-finite loss or coefficient); nothing is written."""


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise DistillationError(f"{what} is not finite ({value}): the optimisation diverged; no schedule written")
    return value


def comparable_entries(graph: Graph, x: torch.Tensor, x_star: torch.Tensor) -> torch.Tensor:
    """Score entries [B, L, dim] the loss runs over: positions where student and teacher states
    agree (a score is a ratio to the current token, so only then are the two comparable), and
    destinations the position can move to (on the absorbing graph: masked positions, real tokens)."""
    return (graph.reverse_weights(x) > 0) & (x == x_star)[..., None]


def fit_phi(s: torch.Tensor, s_star: torch.Tensor, convention: str) -> tuple[float, float, float]:
    """Best Phi for vectors of scores (student s, teacher s_star): (Phi, loss at Phi, loss at 1)."""
    if s.numel() == 0:
        return 1.0, 0.0, 0.0
    if convention == "scale":
        ss = float((s * s).sum())
        phi = float((s * s_star).sum()) / ss if ss > 0 else 1.0
        loss = lambda p: float(((s_star - p * s) ** 2).sum())  # noqa: E731
    else:
        from scipy.optimize import minimize_scalar

        log_s = torch.log(s.clamp_min(1e-300))
        loss = lambda p: float(((s_star - torch.exp(p * log_s)) ** 2).sum())  # noqa: E731
        phi = float(minimize_scalar(loss, bounds=POWER_BOUNDS, method="bounded",
                                    options={"xatol": 1e-6}).x)
    return _finite(phi, "coefficient"), _finite(loss(phi), "loss"), loss(1.0)


def perturbed_start(graph: Graph, record: TeacherRecord, rows: slice, ids: torch.Tensor, zeta: float, seed: int):
    """The relaxed objective's start: the teacher's start with round(zeta L) positions changed."""
    from ..random import RandomStreams

    x = record.states[0, rows].clone()
    length = x.shape[1]
    r = int(round(zeta * length))
    if r == 0:
        return x
    u = RandomStreams(seed, ids).uniform(PERTURB, length, 2)
    chosen = u[..., 0].argsort(-1)[:, :r]  # r distinct positions per sample
    pick = torch.zeros_like(x, dtype=torch.bool).scatter_(1, chosen, True)
    if graph.absorbing:  # reveal with p(x0 | x_T), the backbone's own first prediction
        probs = torch.exp(record.log_scores[0, rows].double())[..., : graph.num_tokens]
        x[pick] = pick_destination(probs[pick], u[..., 1][pick])
    else:
        x[pick] = (u[..., 1][pick] * graph.dim).long().clamp_max(graph.dim - 1)
    return x


@torch.no_grad()
def fit_coefficients(model, graph: Graph, noise: Noise, record: TeacherRecord, grid: list, *, base: str,
                     convention: str = "scale", coupling: str = "coupled", zeta: float = 0.0, rows=None,
                     batch_size: int = 64, device="cpu", progress: bool = False) -> dict:
    """Sequential LSD fit on the student grid `grid` (candidate indices into `record`, ending at G).

    Returns coefficients, per-step losses at the fitted Phi and at Phi = 1, and network calls."""
    rows = rows if rows is not None else range(record.states.shape[1])
    rows = list(rows)
    M = len(grid) - 1
    seed = trajectory_seed(record.seed, coupling)
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    student, rngs = {}, {}
    for b, idx in enumerate(batches):
        ids = torch.tensor(idx, device=device)
        sl = slice(idx[0], idx[-1] + 1)
        rngs[b] = TrajectoryNoise(graph, seed, ids, record.states.shape[2])
        student[b] = perturbed_start(graph, record, sl, ids, zeta, record.seed).to(device)
    coefficients, losses, losses_at_one, calls = [], [], [], 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=M, desc=f"fit {convention} coefficients", leave=False)
    for k in range(M):
        a, b_next = grid[k], grid[k + 1]
        t, t_next = record.times[a], record.times[b_next]
        scores, s_all, s_star_all = {}, [], []
        for b, idx in enumerate(batches):
            sl = slice(idx[0], idx[-1] + 1)
            x = student[b]
            sigma_bar = noise.total(torch.full((len(idx),), t, dtype=torch.float64, device=device))
            log_s = model(x, sigma_bar).double()
            calls += 1
            scores[b] = log_s
            x_star = record.states[a, sl].to(device)
            both = comparable_entries(graph, x, x_star)
            s_all.append(torch.exp(log_s)[both])
            s_star_all.append(torch.exp(record.log_scores[a, sl].to(device).double())[both])
        phi, loss, loss_one = fit_phi(torch.cat(s_all), torch.cat(s_star_all), convention)
        coefficients.append(phi)
        losses.append(loss)
        losses_at_one.append(loss_one)
        for b, idx in enumerate(batches):
            x = student[b]
            move, stay = transition_probabilities(graph, noise, base, t, t_next, x,
                                                  scaled_score(scores[b], phi, convention), final=k == M - 1)
            student[b] = rngs[b].step(x, move, stay, record.steps[a])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"coefficients": coefficients, "loss": losses, "loss_at_phi_1": losses_at_one, "calls": calls,
            "samples": torch.cat([student[b].cpu() for b in range(len(batches))])}


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


def distill(model, graph: Graph, noise: Noise, *, method: str, nfe: int, length: int, base: str = "euler",
            convention: str = "scale", coupling: str = "coupled", zeta="0.05", teacher_steps: int = 1024,
            teacher_base: str = "euler", trajectories: int = 64, candidates: int = 128, seed: int = 0,
            batch_size: int = 64, t_max: float = 1.0, t_min: float = 1e-5, device="cpu", progress: bool = False,
            record: TeacherRecord | None = None, **metadata) -> Schedule:
    """Distil an `nfe`-step LSD or LSD+ schedule of `base` rule from a `teacher_steps`-step teacher.

    The teacher is uniform Euler by default (the reference code's); pass `record` to reuse one
    teacher rollout for several students (its network calls are then not counted here)."""
    if method not in ("lsd", "lsd+"):
        raise ValueError(f"method: unknown {method!r}; choose 'lsd' or 'lsd+' (JYS lives in lsd.optimize.jys)")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe: must be a positive integer, got {nfe!r}")
    shared_teacher = record is not None
    if shared_teacher:
        candidates = len(record.times) - 1
    if candidates % nfe and method == "lsd":
        raise ValueError(f"lsd: nfe ({nfe}) must divide the candidate count ({candidates})")
    started = time.perf_counter()
    counter = CallCounter(model)
    if record is None:
        record = teacher_rollout(counter, graph, noise, length=length, trajectories=trajectories, steps=teacher_steps,
                                 base=teacher_base, candidates=candidates, t_max=t_max, t_min=t_min, seed=seed,
                                 batch_size=batch_size, device=device, progress=progress)
    else:  # a shared teacher: its calls are not this schedule's
        teacher_steps, teacher_base, seed = record.teacher_steps, record.base, record.seed
        trajectories = record.states.shape[1]
    grid_cost = None
    if method == "lsd":
        grid = list(range(0, candidates + 1, candidates // nfe))
    else:
        grid, grid_cost = transition_grid(graph, noise, record, nfe, base)
    fit = lambda z, rows=None: fit_coefficients(counter, graph, noise, record, grid, base=base,  # noqa: E731
                                                convention=convention, coupling=coupling, zeta=z, rows=rows,
                                                batch_size=batch_size, device=device, progress=progress)
    zeta_search = None
    if str(zeta) == "auto":
        train, held_out = range(0, trajectories // 2), range(trajectories // 2, trajectories)
        zeta_search = {}
        for z in ZETA_GRID:
            phis = fit(z, train)["coefficients"]
            check = Schedule(base, [record.times[g] for g in grid], phis, convention=convention)
            zeta_search[z] = held_out_loss(counter, graph, noise, record, grid, check, coupling, held_out,
                                           batch_size, device)
        zeta = min(zeta_search, key=zeta_search.get)
    zeta = float(zeta)
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"zeta: must lie in [0, 1] or be 'auto', got {zeta}")
    result = fit(zeta)
    wall = time.perf_counter() - started
    times = [record.times[g] for g in grid]
    meta = {"method": method, "nfe": nfe, "base": base, "convention": convention, "coupling": coupling,
            "zeta": zeta, "zeta_search": zeta_search, "teacher_steps": teacher_steps,
            "teacher_base": teacher_base, "trajectories": trajectories, "candidates": candidates,
            "loss": result["loss"], "loss_at_phi_1": result["loss_at_phi_1"], "grid_cost": grid_cost,
            "kappa": [a - b for a, b in zip(times, times[1:])], "network_calls": counter.calls,
            "teacher_calls": record.calls, "teacher_shared": shared_teacher, "wall_time_s": wall, "seed": seed, "made_by": "lsd.optimize.lsd.distill",
            "provenance": provenance(), **metadata}
    return Schedule(base, times, result["coefficients"], convention=convention, metadata=meta)


@torch.no_grad()
def held_out_loss(model, graph, noise, record, grid, schedule: Schedule, coupling, rows, batch_size, device) -> float:
    """Sum over steps of the LSD loss of `schedule`'s coefficients, student started unperturbed."""
    rows = list(rows)
    seed = trajectory_seed(record.seed, coupling)
    total = 0.0
    for i in range(0, len(rows), batch_size):
        idx = rows[i:i + batch_size]
        sl = slice(idx[0], idx[-1] + 1)
        ids = torch.tensor(idx, device=device)
        rng = TrajectoryNoise(graph, seed, ids, record.states.shape[2])
        x = record.states[0, sl].to(device)
        for k in range(schedule.nfe):
            a = grid[k]
            sigma_bar = noise.total(torch.full((len(idx),), schedule.times[k], dtype=torch.float64, device=device))
            log_s = model(x, sigma_bar).double()
            x_star = record.states[a, sl].to(device)
            both = comparable_entries(graph, x, x_star)
            s = scaled_score(log_s, schedule.coefficients[k], schedule.convention)[both]
            total += float(((torch.exp(record.log_scores[a, sl].to(device).double())[both] - s) ** 2).sum())
            move, stay = transition_probabilities(graph, noise, schedule.base, schedule.times[k],
                                                  schedule.times[k + 1], x,
                                                  scaled_score(log_s, schedule.coefficients[k], schedule.convention),
                                                  final=k == schedule.nfe - 1)
            x = rng.step(x, move, stay, record.steps[a])
    return _finite(total, "held-out loss")
