"""lsd-spread: choose a spread selection rule and a time grid from the model itself.

What it fits. A `spread` schedule (`lsd.selection`) reveals at each step the base rule's
expected number of tokens, at positions spread out by a greedy soft farthest-point rule of
strength theta, each token drawn from the model's own p(x0_i | x_t). Two things are learned:
theta, from `strengths` (default 0, 0.5, 1, 2, 4, 16, inf), and the time grid (which sets
how many tokens each step reveals), from `grids`:
- `uniform`: SEDD's linspace(1, 1e-5, M + 1);
- `lsd+`: LSD+'s transition-matching grid on the teacher record (`lsd.optimize.lsd`);
- `geometric:R`: expected counts growing geometrically over the steps, the last step's R
  times the first's (t_k = T - (T - eps) (r^k - 1) / (r^M - 1), r = R^(1/(M-1)); with
  log-linear noise the masked fraction is about t). Doubling counts are what a first-order
  chain needs: every new token in its own masked run.
Every (grid, theta) pair is scored and the least objective wins.

The objective. The N-step teacher (N large: about one token per step) draws the tokens it
reveals one after the other, i.e. from their joint law given the state; a student step draws
its chosen set S from the product of the marginals. Its error is KL(product || joint) over S,
estimated with the model itself by the chain rule, at the student's own states:

    sum over steps of E_student[ sum_{i in S} log q(x_i | x_t) - sum_j log p(x_{s_j} | x_t, x_{s_<j}) ],

q the step's own token distribution (the normalised move row, p(x0 | x_t) under the scale
convention), p(. | x_t, x_{s_<j}) the model's denoising distribution with the first j - 1
chosen tokens revealed (one extra network call per chosen token after the first, at
distillation time only; sampling still costs M calls). Position choices depend only on
which positions are masked, never on token values, so drawing every step's set from the
joint would sample the model's data law exactly: the sum is the KL between the student's
path law and that exact path law, an upper bound on KL(student samples || model law).
It needs no coefficient fit and no score matching: the teacher's law enters through the
model's joint conditionals, which are what the teacher samples.

Coupling and held-out data. Each candidate is run on the same `trajectories` student
rollouts, started from the teacher's start (all masks) with the per-sample streams of the
distillation seed and sample ids [trajectories, 2 trajectories): common random numbers
across candidates (so their differences are not sampling noise), disjoint from the teacher
rows that fit the LSD+ grid and from the evaluation seeds of `lsd.sample`. The teacher
rollout itself (`--teacher-steps`, default 1024) is only needed for the `lsd+` grid; pass a
shared `record` to reuse one.
"""
from __future__ import annotations

import math
import time

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..diffusion.scores import CallCounter
from ..io import progress as progress_bar, provenance
from ..random import INIT, RandomStreams
from ..step import step_probabilities
from ..schedule import Schedule
from ..selection import spread_step
from .lsd_grid import transition_grid
from .lsd_objective import DistillationError
from .teacher import TeacherRecord, teacher_rollout

STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 16.0, math.inf)
GRIDS = ("uniform", "lsd+", "geometric:4", "geometric:16", "geometric:64")


def grid_times(name: str, nfe: int, *, graph: Graph = None, noise: Noise = None, record: TeacherRecord = None,
               base: str = "euler", t_max: float = 1.0, t_min: float = 1e-5) -> list | None:
    """The M + 1 times of candidate grid `name` (None when it does not apply, e.g. geometric at M = 1)."""
    if name == "uniform":
        return list(Schedule.uniform(base, nfe, t_max=t_max, t_min=t_min).times)
    if name == "lsd+":
        if record is None:
            raise ValueError("spread: the 'lsd+' grid needs a teacher record")
        grid, _ = transition_grid(graph, noise, record, nfe, "euler" if base == "tauleap" else base)
        return [record.times[g] for g in grid]
    if name.startswith("geometric:"):
        try:
            ratio = float(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"spread.grids: bad geometric ratio in {name!r} (use e.g. 'geometric:16')") from None
        if not ratio > 0:
            raise ValueError(f"spread.grids: geometric ratio must be > 0, got {name!r}")
        if nfe == 1:
            return None
        r = ratio ** (1.0 / (nfe - 1))
        if abs(r - 1.0) < 1e-12:
            return list(Schedule.uniform(base, nfe, t_max=t_max, t_min=t_min).times)
        f = [(r ** k - 1.0) / (r ** nfe - 1.0) for k in range(nfe + 1)]
        times = [t_max - (t_max - t_min) * fk for fk in f]
        times[-1] = t_min
        return times
    raise ValueError(f"spread.grids: unknown grid {name!r}; use 'uniform', 'lsd+' or 'geometric:R'")


@torch.no_grad()
def spread_objective(model, graph: Graph, noise: Noise, schedule: Schedule, *, length: int, seed: int,
                     sample_ids, batch_size: int = 64, device="cpu") -> dict:
    """The chain-rule estimate of sum_k KL(product of marginals || joint) of `schedule`'s revealed sets.

    Returns mean and standard error over sequences (nats per sequence), the per-step means and
    the per-sequence values (for paired comparisons)."""
    if not graph.absorbing or schedule.selection is None:
        raise ValueError("spread_objective: needs an absorbing graph and a schedule with a selection rule")
    V = graph.num_tokens
    ids_all = torch.as_tensor(list(sample_ids), dtype=torch.long, device=device)
    per_seq, per_step = [], torch.zeros(schedule.nfe, dtype=torch.float64)
    strength = schedule.selection["strength"]
    for start in range(0, len(ids_all), batch_size):
        ids = ids_all[start:start + batch_size]
        B = len(ids)
        rows = torch.arange(B, device=device)
        streams = RandomStreams(seed, ids)
        x = graph.limit(streams.uniform(INIT, length, 2))
        total = torch.zeros(B, dtype=torch.float64, device=device)
        for k in range(schedule.nfe):
            sigma_bar = noise.total(torch.full((B,), schedule.times[k], dtype=torch.float64, device=device))
            log_score = model(x, sigma_bar)
            move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
            x_next, order, _ = spread_step(graph, x, move, stay, streams, k, strength, final=k == schedule.nfe - 1)
            q_rows = move / move.sum(-1, keepdim=True).clamp_min(1e-300)  # what the student draws from
            log_p = torch.log_softmax(log_score.double()[..., :V], -1)  # the model's conditional at x
            x_part = x.clone()
            kl = torch.zeros(B, dtype=torch.float64, device=device)
            for j in range(order.shape[1]):
                pos = order[:, j]
                has = pos >= 0
                if not has.any():
                    break
                r, p = rows[has], pos[has]
                tok = x_next[r, p]
                if j > 0:  # condition on the tokens already chosen in this step: one more call
                    log_p = torch.full((B, length, V), 0.0, dtype=torch.float64, device=device)
                    log_p[has] = torch.log_softmax(model(x_part[has], sigma_bar[has]).double()[..., :V], -1)
                log_q = torch.log(q_rows[r, p, tok].clamp_min(1e-300))
                kl[has] += log_q - log_p[r, p, tok]
                x_part[r, p] = tok
            total += kl
            per_step[k] += float(kl.sum())
            x = x_next
        per_seq.append(total.cpu())
    values = torch.cat(per_seq)
    n = len(values)
    mean = float(values.mean())
    if not math.isfinite(mean):
        raise DistillationError(f"spread objective is not finite ({mean}): no schedule written")
    se = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return {"objective": mean, "objective_se": se, "per_step": (per_step / n).tolist(), "values": values}


def spread_schedule(base: str, times: list, strength: float, metadata: dict | None = None) -> Schedule:
    return Schedule(base, times, selection={"rule": "spread", "strength": strength}, metadata=metadata or {})


def distill_spread(model, graph: Graph, noise: Noise, *, nfe: int, length: int, base: str = "euler",
                   strengths=STRENGTHS, grids=GRIDS, teacher_steps: int = 1024, teacher_base: str = "euler",
                   trajectories: int = 64, candidates: int = 128, seed: int = 0, batch_size: int = 64,
                   t_max: float = 1.0, t_min: float = 1e-5, device="cpu", progress: bool = False,
                   record: TeacherRecord | None = None, **metadata) -> Schedule:
    """Distil an `nfe`-step `spread` schedule: the (grid, theta) of least held-out objective.

    Every candidate's objective, standard error and per-step breakdown, the network calls
    (teacher, objective) and the wall time are recorded in the schedule's metadata."""
    if not graph.absorbing:
        raise ValueError(f"spread: the spread rule needs an absorbing graph, got the {graph.name} graph")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe: must be a positive integer, got {nfe!r}")
    if trajectories < 2:
        raise ValueError(f"spread: need at least 2 trajectories, got {trajectories}")
    strengths = [float(s) for s in strengths]
    for s in strengths:
        if math.isnan(s) or s < 0:
            raise ValueError(f"spread.strengths: must be >= 0 (inf allowed), got {s}")
    started = time.perf_counter()
    counter = CallCounter(model)
    shared_teacher = record is not None
    teacher_wall = 0.0
    if record is None and "lsd+" in grids:
        record = teacher_rollout(counter, graph, noise, length=length, trajectories=trajectories, steps=teacher_steps,
                                 base=teacher_base, candidates=candidates, t_max=t_max, t_min=t_min, seed=seed,
                                 batch_size=batch_size, device=device, progress=progress)
        teacher_wall = time.perf_counter() - started
    teacher_calls = 0 if shared_teacher else counter.calls
    if record is not None:
        teacher_steps, teacher_base, seed = record.teacher_steps, record.base, record.seed
        n_teacher = record.states.shape[1]
    else:
        teacher_steps = teacher_base = None
        n_teacher = trajectories
    held_out = range(n_teacher, n_teacher + trajectories)
    bar = progress_bar(len(grids) * len(strengths), f"spread NFE={nfe}", progress, leave=False)
    results, values, best = [], [], None
    calls_before = counter.calls
    for name in grids:
        times = grid_times(name, nfe, graph=graph, noise=noise, record=record, base=base, t_max=t_max, t_min=t_min)
        if times is None:
            bar.update(len(strengths))
            continue
        for s in strengths:
            t0 = time.perf_counter()
            c0 = counter.calls
            res = spread_objective(counter, graph, noise, spread_schedule(base, times, s), length=length, seed=seed,
                                   sample_ids=held_out, batch_size=batch_size, device=device)
            row = {"grid": name, "strength": "inf" if math.isinf(s) else s, "objective": res["objective"],
                   "objective_se": res["objective_se"], "per_step": res["per_step"],
                   "network_calls": counter.calls - c0, "wall_time_s": time.perf_counter() - t0}
            results.append(row)
            values.append(res["values"])
            if best is None or res["objective"] < best[0]:
                best = (res["objective"], name, s, times, res["values"])
            bar.update(1)
    bar.close()
    if best is None:
        raise DistillationError(f"spread: no candidate grid applies at NFE {nfe}")
    objective, grid_name, strength, times, best_values = best
    for row, v in zip(results, values):  # paired (common random numbers) standard error of the difference
        diff = v - best_values
        row["minus_best"] = float(diff.mean())
        row["minus_best_se"] = float(diff.std(unbiased=True) / math.sqrt(len(diff)))
    wall = time.perf_counter() - started
    meta = {"method": "spread", "nfe": nfe, "base": base, "grid": grid_name,
            "strength": "inf" if math.isinf(strength) else strength, "objective": objective,
            "objective_unit": "nats per sequence: sum over steps of E[log q(x_S | x_t) - log p(x_S | x_t)]",
            "search": results, "strengths": ["inf" if math.isinf(s) else s for s in strengths], "grids": list(grids),
            "teacher_steps": teacher_steps, "teacher_base": teacher_base, "teacher_shared": shared_teacher,
            "trajectories": trajectories, "held_out_ids": [held_out.start, held_out.stop],
            "network_calls": counter.calls, "teacher_calls": teacher_calls,
            "objective_calls": counter.calls - calls_before, "teacher_wall_time_s": teacher_wall,
            "wall_time_s": wall, "seed": seed, "made_by": "lsd.optimize.spread.distill_spread",
            "kappa": [a - b for a, b in zip(times, times[1:])], "provenance": provenance(), **metadata}
    return spread_schedule(base, times, strength, meta)
