"""LSD and LSD+ (Fu et al., NeurIPS 2025): learnable coefficients and time grids, distilled
from an N-step teacher by matching intermediate scores rather than final samples.

What this harness implements (the paper's equations are the specification; docs/lsd-training.md
states every reading, its default and its source):
- LSD: one coefficient Phi_k per student step, trained sequentially along the student's own
  trajectory, coupled to the teacher's (lsd.optimize.teacher). At student step k the student
  state x_{t_k} of every trajectory has been reached with the already trained Phi_0..Phi_{k-1};
  Phi_k starts at 1 and minimises the L2 distance between the teacher's score at its own state
  x*_{t_k} and the student's scaled score, over the entries where both states can move
  (`compared_entries`). The student then takes its step with Phi_k and moves on.
  `fit="sgd"` (default, the paper: "Initialize Phi(t_k) = 1 and optimize the coefficients at
  each timestep sequentially using SGD"): Adam with lr 1e-2, 16 epochs, mini-batches of one
  trajectory (the LSD reference code's settings), PyTorch's Adam defaults otherwise.
  `fit="exact"`: the exact minimiser of the same loss over all trajectories (closed form, or a
  1-D bounded search for `power` fitted on scores): the harness's earlier reading, kept as an
  ablation; with `space="score"` it reproduces that reading bit for bit.
- Loss space (`space`): `score` compares scores (L2 on s), `log` compares log-scores (L2 on
  log s). Default per convention: `scale` (Phi * s, the paper's equations) in score space,
  `power` (Phi * log s, i.e. s^Phi, the reference code) in log space, as the reference code does.
- Entries (`entries`): `tokens` (default) compares the entries a step uses, the destinations a
  position can move to; `with_mask` adds each position's own current entry (on the absorbing
  graph the mask entry, 1 by definition), which under `scale` pulls Phi towards 1.
- LSD+: also the step sizes kappa_k. Taken literally, the paper's per-step transition loss
  ||kappa_k Phi_k s_k - ((T - eps)/N) s*_k||^2 is degenerate once Phi_k is fitted (its
  minimiser is the same constant for every k: a uniform grid after normalisation). We read
  the "effective transition term" of a student step over [t_a, t_b] as its one-step move
  probabilities and compare them with the teacher's move probabilities summed over the
  teacher steps it replaces; with the best Phi per interval, the L1 residual (a total-variation
  type distance; see `transition_grid`) is the interval's cost, and dynamic programming picks the M-step grid of least total cost among the
  teacher's candidate times. The grid is a subset of the teacher grid: positive steps that
  sum to T - eps_s, strictly decreasing, valid by construction. Phi_k are then trained on it
  as in LSD.
- Relaxed objective: the student starts within Hamming distance zeta * L of the teacher's
  start (at most round(zeta L) positions differ). From the all-mask start, round(zeta L)
  positions (chosen per sample) are revealed; `start` says with which tokens: `teacher`
  (default) the teacher's own final tokens there, `marginal` draws from the backbone's own
  p(x0 | x_T) (the teacher's first score; uniform tokens on the uniform graph), `best` the
  least-loss start among `start_candidates` marginal draws (LD3-style search in the ball, the
  loss of a Phi = 1 student along the whole trajectory). Inference always starts unperturbed.
  `zeta="auto"` fits each zeta in ZETA_GRID on half the trajectories and keeps the one whose
  coefficients give the least loss on the other half, started unperturbed (as at inference).
"""
from __future__ import annotations

import time
from dataclasses import asdict

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..diffusion.scores import CallCounter
from ..draws import pick_destination
from ..io import progress as progress_bar
from ..io import provenance
from ..random import RandomStreams
from ..step import scaled_score, transition_probabilities
from ..schedule import Schedule
from .lsd_grid import transition_grid
from .lsd_objective import (DEFAULT_SPACE, RowLosses, Training, loss_entries, check_finite, adam_fit,
                            compared_entries, fit_phi, row_loss)
from .teacher import TeacherRecord, TrajectoryNoise, teacher_rollout, trajectory_seed

ZETA_GRID = (0.0, 0.01, 0.05, 0.1, 0.2)
PERTURB = -4


def _start_positions(graph: Graph, x: torch.Tensor, ids: torch.Tensor, zeta: float, seed: int, stream: int):
    """(positions to change [B, L] bool, token uniforms [B, L]) of one relaxed start."""
    length = x.shape[1]
    r = int(round(zeta * length))
    u = RandomStreams(seed, ids).uniform(stream, length, 2)
    chosen = u[..., 0].argsort(-1)[:, :r]  # r distinct positions per sample
    return torch.zeros_like(x, dtype=torch.bool).scatter_(1, chosen, True), u[..., 1]


def perturbed_start(graph: Graph, record: TeacherRecord, rows: slice, ids: torch.Tensor, zeta: float, seed: int,
                    start: str = "marginal", stream: int = PERTURB):
    """The relaxed objective's start: the teacher's start with round(zeta L) positions changed,
    to the teacher's final tokens (`teacher`) or to draws from the backbone's p(x0 | x_T)
    (`marginal`; uniform tokens on the uniform graph). `best` is chosen in `fit_coefficients`."""
    x = record.states[0, rows].clone()
    if int(round(zeta * x.shape[1])) == 0:
        return x
    pick, u = _start_positions(graph, x, ids.cpu(), zeta, seed, stream)
    if start == "teacher":
        x[pick] = record.samples[rows][pick]
    elif graph.absorbing:  # reveal with p(x0 | x_T), the backbone's own first prediction
        probs = torch.exp(record.log_scores[0, rows].double())[..., : graph.num_tokens]
        x[pick] = pick_destination(probs[pick], u[pick])
    else:
        x[pick] = (u[pick] * graph.dim).long().clamp_max(graph.dim - 1)
    return x


BEST_STREAM_STRIDE = 16  # candidate j of `start="best"` draws from stream PERTURB - 16 j


def _rollout_loss(model, graph, noise, record, grid, idx, x, coefficients, *, base, convention, space, entries,
                  coupling, device) -> tuple[torch.Tensor, int]:
    """Summed per-step loss [B] of the student with `coefficients` from start `x` along the coupled
    trajectories `idx`, and its network calls."""
    sl = slice(idx[0], idx[-1] + 1)
    rng = TrajectoryNoise(graph, trajectory_seed(record.seed, coupling), torch.tensor(idx, device=device),
                          record.states.shape[2])
    total = torch.zeros(len(idx), dtype=torch.float64, device=device)
    M = len(grid) - 1
    for k in range(M):
        a, t, t_next = grid[k], record.times[grid[k]], record.times[grid[k + 1]]
        log_s = model(x, noise.total(torch.full((len(idx),), t, dtype=torch.float64, device=device))).double()
        x_star = record.states[a, sl].to(device)
        log_s_star = record.log_scores[a, sl].to(device).double()
        total += row_loss(log_s, log_s_star, compared_entries(graph, x, x_star, entries), coefficients[k],
                          convention, space)
        move, stay = transition_probabilities(graph, noise, base, t, t_next, x,
                                              scaled_score(log_s, coefficients[k], convention), final=k == M - 1)
        x = rng.step(x, move, stay, record.steps[a])
    return total, M


def best_start(model, graph, noise, record, grid, idx, zeta, training: Training, *, base, convention, coupling,
               device) -> tuple[torch.Tensor, int]:
    """`start="best"`: per trajectory, the least-loss start among `start_candidates` marginal-token
    starts in the Hamming ball (loss of the Phi = 1 student along the whole trajectory), and the
    network calls the search cost."""
    sl, ids = slice(idx[0], idx[-1] + 1), torch.tensor(idx, device=device)
    space, ones = training.loss_space(convention), [1.0] * (len(grid) - 1)
    best, best_loss, calls = None, None, 0
    for j in range(training.start_candidates):
        x = perturbed_start(graph, record, sl, ids, zeta, record.seed, "marginal",
                            stream=PERTURB - BEST_STREAM_STRIDE * j).to(device)
        loss, c = _rollout_loss(model, graph, noise, record, grid, idx, x, ones, base=base, convention=convention,
                                space=space, entries=training.entries, coupling=coupling, device=device)
        calls += c
        if best is None:
            best, best_loss = x, loss
        else:
            better = loss < best_loss
            best = torch.where(better[:, None], x, best)
            best_loss = torch.minimum(loss, best_loss)
    return best, calls


@torch.no_grad()
def fit_coefficients(model, graph: Graph, noise: Noise, record: TeacherRecord, grid: list, *, base: str,
                     convention: str = "scale", coupling: str = "coupled", zeta: float = 0.0, rows=None,
                     batch_size: int = 64, device="cpu", progress: bool = False,
                     training: Training | None = None) -> dict:
    """Sequential LSD training on the student grid `grid` (candidate indices into `record`, ending at G).

    Returns coefficients, per-step losses at the trained Phi and at Phi = 1 (summed over
    trajectories), network calls and Adam updates per coefficient."""
    training = training or Training()
    space = training.loss_space(convention)
    rows = rows if rows is not None else range(record.states.shape[1])
    rows = list(rows)
    M = len(grid) - 1
    seed = trajectory_seed(record.seed, coupling)
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    student, rngs, calls = {}, {}, 0
    searched = training.start == "best" and int(round(zeta * record.states.shape[2])) > 0
    for b, idx in enumerate(batches):
        ids = torch.tensor(idx, device=device)
        sl = slice(idx[0], idx[-1] + 1)
        rngs[b] = TrajectoryNoise(graph, seed, ids, record.states.shape[2])
        if searched:
            student[b], c = best_start(model, graph, noise, record, grid, idx, zeta, training, base=base,
                                       convention=convention, coupling=coupling, device=device)
            calls += c
        else:
            student[b] = perturbed_start(graph, record, sl, ids, zeta, record.seed, training.start).to(device)
    coefficients, losses, losses_at_one, updates = [], [], [], []
    bar = progress_bar(M, f"fit {convention} coefficients", progress, leave=False)
    for k in range(M):
        a, b_next = grid[k], grid[k + 1]
        t, t_next = record.times[a], record.times[b_next]
        scores, s_all, s_star_all = {}, [], []
        row_losses = RowLosses(convention, space)
        for b, idx in enumerate(batches):
            sl = slice(idx[0], idx[-1] + 1)
            x = student[b]
            sigma_bar = noise.total(torch.full((len(idx),), t, dtype=torch.float64, device=device))
            log_s = model(x, sigma_bar).double()
            calls += 1
            scores[b] = log_s
            x_star = record.states[a, sl].to(device)
            both = compared_entries(graph, x, x_star, training.entries)
            student_entries, teacher_entries, both = loss_entries(log_s, record.log_scores[a, sl].to(device).double(),
                                                              both, space)
            if training.fit == "exact":
                s_all.append(student_entries[both])
                s_star_all.append(teacher_entries[both])
            else:
                row_losses.add(student_entries.cpu(), teacher_entries.cpu(), both.cpu())
        if training.fit == "exact":
            phi, loss, loss_one = fit_phi(torch.cat(s_all), torch.cat(s_star_all), convention, space)
            steps = 0
        else:
            phi, steps = adam_fit(row_losses, training, (record.seed * 1_000_003 + k) % 2 ** 63)
            everyone = torch.arange(len(row_losses))

            def at(p: float) -> float:
                return float(row_losses(torch.tensor(p, dtype=torch.float64), everyone).sum()) if len(everyone) else 0.0
            loss, loss_one = check_finite(at(phi), "loss"), at(1.0)
        coefficients.append(phi)
        losses.append(loss)
        losses_at_one.append(loss_one)
        updates.append(steps)
        for b, idx in enumerate(batches):
            x = student[b]
            move, stay = transition_probabilities(graph, noise, base, t, t_next, x,
                                                  scaled_score(scores[b], phi, convention), final=k == M - 1)
            student[b] = rngs[b].step(x, move, stay, record.steps[a])
        bar.update(1)
    bar.close()
    return {"coefficients": coefficients, "loss": losses, "loss_at_phi_1": losses_at_one, "calls": calls,
            "adam_updates": updates, "samples": torch.cat([student[b].cpu() for b in range(len(batches))])}


def distill(model, graph: Graph, noise: Noise, *, method: str, nfe: int, length: int, base: str = "euler",
            convention: str = "scale", coupling: str = "coupled", zeta="0.05", teacher_steps: int = 1024,
            teacher_base: str = "euler", trajectories: int = 64, candidates: int = 128, seed: int = 0,
            batch_size: int = 64, t_max: float = 1.0, t_min: float = 1e-5, device="cpu", progress: bool = False,
            record: TeacherRecord | None = None, training: Training | dict | None = None, **metadata) -> Schedule:
    """Distil an `nfe`-step LSD or LSD+ schedule of `base` rule from a `teacher_steps`-step teacher.

    The teacher is uniform Euler by default (the reference code's); pass `record` to reuse one
    teacher rollout for several students (its network calls are then not counted here).
    `training` (a `Training` or a dict of its keys): how each coefficient is trained and where
    the relaxed start's tokens come from; the default is the paper's reading (`Training()`)."""
    if method not in ("lsd", "lsd+"):
        raise ValueError(f"method: unknown {method!r}; choose 'lsd' or 'lsd+' (JYS lives in lsd.optimize.jys)")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe: must be a positive integer, got {nfe!r}")
    if convention not in DEFAULT_SPACE:
        raise ValueError(f"convention: unknown {convention!r}; choose one of {list(DEFAULT_SPACE)}")
    training = Training.from_dict(training, strict=True) if isinstance(training, dict) else training or Training()
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
                                                batch_size=batch_size, device=device, progress=progress,
                                                training=training)
    zeta_search = None
    if str(zeta) == "auto":
        train, held_out = range(0, trajectories // 2), range(trajectories // 2, trajectories)
        zeta_search = {}
        for z in ZETA_GRID:
            phis = fit(z, train)["coefficients"]
            check = Schedule(base, [record.times[g] for g in grid], phis, convention=convention)
            zeta_search[z] = held_out_loss(counter, graph, noise, record, grid, check, coupling, held_out,
                                           batch_size, device, training=training)
        zeta = min(zeta_search, key=zeta_search.get)
    zeta = float(zeta)
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"zeta: must lie in [0, 1] or be 'auto', got {zeta}")
    result = fit(zeta)
    wall = time.perf_counter() - started
    times = [record.times[g] for g in grid]
    meta = {"method": method, "nfe": nfe, "base": base, "convention": convention, "coupling": coupling,
            "zeta": zeta, "zeta_search": zeta_search, "training": {**asdict(training),
                                                                   "space": training.loss_space(convention)},
            "adam_updates": result["adam_updates"], "teacher_steps": teacher_steps,
            "teacher_base": teacher_base, "trajectories": trajectories, "candidates": candidates,
            "loss": result["loss"], "loss_at_phi_1": result["loss_at_phi_1"], "grid_cost": grid_cost,
            "kappa": [a - b for a, b in zip(times, times[1:])], "network_calls": counter.calls,
            "teacher_calls": record.calls, "teacher_shared": shared_teacher, "wall_time_s": wall, "seed": seed, "made_by": "lsd.optimize.lsd.distill",
            "provenance": provenance(), **metadata}
    return Schedule(base, times, result["coefficients"], convention=convention, metadata=meta)


@torch.no_grad()
def held_out_loss(model, graph, noise, record, grid, schedule: Schedule, coupling, rows, batch_size, device,
                  training: Training | None = None) -> float:
    """Sum over steps of the LSD loss of `schedule`'s coefficients, student started unperturbed."""
    training = training or Training()
    rows = list(rows)
    total = 0.0
    for i in range(0, len(rows), batch_size):
        idx = rows[i:i + batch_size]
        x = record.states[0, slice(idx[0], idx[-1] + 1)].to(device)
        loss, _ = _rollout_loss(model, graph, noise, record, grid, idx, x, list(schedule.coefficients),
                                base=schedule.base, convention=schedule.convention,
                                space=training.loss_space(schedule.convention), entries=training.entries,
                                coupling=coupling, device=device)
        total += float(loss.sum())
    return check_finite(total, "held-out loss")
