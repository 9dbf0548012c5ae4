"""The sparse sampler step. Building the float64 [B, L, dim] probabilities of every step costs more than
the network at 50,258 classes, yet a step moves few positions: on the absorbing graph only
masked positions can move, and of those about the step's share of the remaining time. So
`sample` (absorbing graph with the euler or tweedie rule, uniform graph with euler;
temperature 1, no selection rule, no callback) takes a step as `sparse_step`: one float32
exp2 pass over the candidate rows bounds each position's move mass within a proven relative
error (`move_mass_bound`); a position whose uniform lies above that mass plus the bound
certainly stays, as the dense draw would decide; only the other positions (the movers and a
few undecided) get float64 rows, computed with the same operations on those rows alone
(`exact_rows`), and the dense draw's own decision and inverse-CDF pick. Every float64
operation involved is elementwise or a per-row sum, so the samples are bit-identical to the
dense path (`dense_step`, kept as the specification and tested against it) on the CPU with
one thread. (With several threads torch may split one row's float64 sum between threads, and
on a GPU the reduction order depends on the tensor's shape: the dense path itself then
depends on the batch shape in the last bit.) Tau-leaping, temperatures != 1, selection rules
and the CTMC graphs keep the dense path: tau-leaping needs a counter-based uniform per
position and destination wherever the rate is not exactly zero, and torch's float64 pow
(temperature) and matrix products (CTMC) are not row-local.
"""
from __future__ import annotations

import math

import torch

from .diffusion.graph import AbsorbingGraph, Graph, UniformGraph
from .diffusion.noise import Noise
from .draws import pick_destination
from .random import RandomStreams
from .schedule import Schedule
from .step import dense_step, scaled_score

ROW_CHUNK_ELEMENTS = {"cpu": 1 << 19}  # entries per block of rows handled at once: cache-sized on the CPU
DEVICE_CHUNK_ELEMENTS = 1 << 27  # a few large blocks on an accelerator (each block costs a few host syncs)
LOG2_E = 1.0 / math.log(2.0)


def sparse_chunk_rows(device: torch.device, dim: int) -> int:
    """Rows of `dim` entries handled at once by the sparse steps on `device`."""
    return max(1, ROW_CHUNK_ELEMENTS.get(device.type, DEVICE_CHUNK_ELEMENTS) // dim)


def supports_sparse_step(graph: Graph, schedule: Schedule) -> bool:
    """Whether `sparse_step` reproduces `dense_step` for `schedule` on `graph`: reverse weights that
    are one constant per row on all columns but one (absorbing: the mask; uniform: the current
    value), a rule whose moves are one factor times the scores there (euler; tweedie on the
    absorbing graph), temperature 1 (torch's pow is not row-local: its vectorised and scalar
    loops differ in the last bit) and no selection rule."""
    if schedule.selection is not None or schedule.temperature != 1.0:
        return False
    if type(graph) is AbsorbingGraph:
        return schedule.base in ("euler", "tweedie")
    return type(graph) is UniformGraph and schedule.base == "euler"


def step_move_factor(noise: Noise, base: str, t: float, t_next: float, batch: int = 1) -> float:
    """c of a step from t to t_next as `transition_probabilities` computes it: move_y = (c w_y) s'_y
    for euler with c = (t - t') sigma(t); move_y = (c s'_y) w_y for tweedie with c = e^delta - 1,
    computed there once per sample of the batch (NaN if those copies were to differ in the last bit)."""
    times = torch.tensor([t, t_next], dtype=torch.float64)
    if base == "euler":
        return float((t - t_next) * noise.rate(times[0]))
    sb = noise.total(times)
    factors = torch.expm1((sb[0] - sb[1]).expand(batch))
    return float(factors[0]) if bool((factors == factors[0]).all()) else math.nan


def move_mass_bound(support_size: int) -> float:
    """Relative error bound of `estimate_move_mass` against the float64 sum of the float64 row.

    Per term 2^-21 + 2^-16: float32 exp2 within 4 ulp (2^-21), and the rounding of its argument
    a log2(e) (a = log s, or coefficient * log s under `power`; the multiplier and the product
    rounded to float32, |a log2 e| <= 150 for every term that neither overflows, which makes the
    estimate infinite, nor underflows): 2 * 150 * 2^-24 * ln 2 < 2^-16. Terms that underflow in
    float32 are < 2^-126 each, under 1e-13 of a sum >= 1e-20 (smaller estimates are not used).
    float32 summation in any order: (n - 1) 2^-24 of the sum. The float64 side (exp, products,
    the sum over n terms): (n + 8) 2^-52. 1e-9 to spare."""
    return 2.0 ** -21 + 2.0 ** -16 + support_size * 2.0 ** -24 + 1e-9


def _weights(graph: Graph, x: torch.Tensor):
    """(w, excluded [n]): the reverse weight of a candidate row on its support, and the one column
    where it is 0 (absorbing: the mask column of a masked row; uniform: the current value)."""
    if graph.absorbing:
        return 1.0, torch.full_like(x, graph.mask_id)
    return 1.0 / graph.dim, x


def estimate_move_mass(graph: Graph, schedule: Schedule, k: int, factor: float, x: torch.Tensor,
                       rows: torch.Tensor):
    """(estimate [n], bound [n]) float64 of the dense move mass sum_y move_y of positions x [n] (masked
    ones on the absorbing graph) with network rows [n, dim], from one float32 exp pass:
    |dense total - estimate| <= bound, an infinite bound where the estimate is not sound."""
    coefficient, convention = schedule.coefficients[k], schedule.convention
    weight, excluded = _weights(graph, x)
    # e^a = 2^(a log2 e), rounded once to float32 (float64 rows are not rounded first): torch's
    # float32 exp2 is several times faster than its exp
    source = rows if rows.dtype in (torch.float32, torch.float64) else rows.float()
    terms = torch.mul(source, (coefficient if convention == "power" else 1.0) * LOG2_E,
                      out=rows.new_empty(rows.shape, dtype=torch.float32))
    terms.exp2_()
    if graph.absorbing:
        summed = terms[:, : graph.num_tokens].sum(-1).to(torch.float64)
    else:
        summed = terms.sum(-1).to(torch.float64)
    mass = (factor * weight * (1.0 if convention == "power" else coefficient)) * summed
    bound = mass * move_mass_bound(rows.shape[-1]) + 1e-280  # 1e-280: float64 products that underflow
    # The weight-0 column gives 0 * s' in the dense row (c s' * 0 for tweedie): NaN there if not finite.
    at_excluded = scaled_score(rows.gather(-1, excluded[:, None])[:, 0], coefficient, convention)
    if not graph.absorbing:  # the current value is in the float32 sum but not in the move mass
        mass = mass - (factor * weight) * at_excluded
    sound = torch.isfinite(summed) & (summed >= 1e-20) & (mass < 1e300) & torch.isfinite(at_excluded * factor)
    return mass, torch.where(sound, bound, torch.inf)


def exact_rows(graph: Graph, base: str, coefficient: float, convention: str, final: bool, factor: float,
               x: torch.Tensor, rows: torch.Tensor):
    """(move [n, dim], stay [n]) float64 of positions x [n] (masked ones on the absorbing graph) with
    network rows [n, dim] for a `base` step with the score's `coefficient` and `convention`
    (`final`: the last step) and `step_move_factor` `factor`: bit for bit `transition_probabilities`
    on those rows (`supports_sparse_step`), in a few in-place passes (every operation there is
    elementwise or a per-row sum)."""
    weight, excluded = _weights(graph, x)
    move = rows.to(torch.float64, copy=True)  # scaled_score: s' = coefficient * e^log_s or e^(coefficient log_s)
    if convention == "power":
        if coefficient != 1.0:
            move.mul_(coefficient)
        move.exp_()
    else:
        move.exp_()
        if coefficient != 1.0:
            move.mul_(coefficient)
    at_excluded = move.gather(-1, excluded[:, None])
    if base == "euler":  # (c w) s': w = 1 (absorbing) or 1/V (uniform) on the support, 0 off it
        cw = factor * weight
        if cw != 1.0:
            move.mul_(cw)
        at_excluded = at_excluded * (factor * 0.0)
    else:  # tweedie on the absorbing graph: (c s') w with w = 1 on the support
        move.mul_(factor)
        at_excluded = (at_excluded * factor) * 0.0
    move.scatter_(-1, excluded[:, None], at_excluded)
    total = move.sum(-1)
    if final and graph.absorbing:  # graph.finalize: no mask left; all-zero rows fall back to uniform
        stuck = total <= 0
        if stuck.any():
            move[stuck] = graph.reverse_weights(x[stuck])
        return move, torch.zeros_like(total)
    return move, (1.0 - total).clamp_min(0.0)


def rows_at(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """rows[positions] for sorted positions [n] (n >= 1): a view when they are a run, else one gather."""
    first = int(positions[0])
    if int(positions[-1]) - first + 1 == len(positions):
        return rows[first:first + len(positions)]
    return rows.index_select(0, positions)


def sparse_step(graph: Graph, noise: Noise, schedule: Schedule, k: int, x: torch.Tensor, log_score: torch.Tensor,
                streams: RandomStreams) -> torch.Tensor:
    """Step k of `schedule` (`supports_sparse_step`), bit-identical to `dense_step` (module docstring).

    The dense draw moves position i iff u (total + stay) < total, with total the float64 move
    mass and stay = max(1 - total, 0), so u (total + stay) >= u (1 - 2^-52) whenever total <= 1:
    a position whose estimate + bound < u (1 - 2^-50) certainly stays. The last step moves every
    masked position: no estimate there. Every other candidate gets its float64 row
    (`exact_rows`) and the dense draw's own decision and inverse-CDF pick on it."""
    B, L = x.shape
    dim = graph.dim
    final = k == schedule.nfe - 1
    u = streams.uniform(k, L, 2).reshape(-1, 2)
    flat_x, rows = x.reshape(-1), log_score.reshape(-1, dim)
    if graph.absorbing:  # a revealed token never moves: its reverse weights are all zero
        candidates = (flat_x == graph.mask_id).nonzero()[:, 0]
    else:
        candidates = torch.arange(flat_x.numel(), device=x.device)
    factor = step_move_factor(noise, schedule.base, schedule.times[k], schedule.times[k + 1], B)
    coefficient = schedule.coefficients[k]
    if not (math.isfinite(factor) and factor >= 0.0 and math.isfinite(coefficient) and coefficient >= 0.0):
        return dense_step(graph, noise, schedule, k, x, log_score, streams)  # negative moves get clamped there
    estimate = not (final and graph.absorbing)
    chunk = sparse_chunk_rows(x.device, dim)
    if estimate and candidates.numel():
        undecided = []
        for part in candidates.split(chunk):
            mass, bound = estimate_move_mass(graph, schedule, k, factor, flat_x[part], rows_at(rows, part))
            undecided.append(part[~(mass + bound < u[part, 0] * (1.0 - 2.0 ** -50))])
        candidates = torch.cat(undecided)
    x_next = flat_x.clone()
    for part in candidates.split(chunk) if candidates.numel() else ():
        part_u = u[part]
        move, stay = exact_rows(graph, schedule.base, coefficient, schedule.convention, final, factor, flat_x[part],
                                rows_at(rows, part))
        total = move.sum(-1)
        moves = part_u[:, 0] * (total + stay) < total  # as `draw`
        if moves.all():  # the last step on the absorbing graph, and small chunks: no copy of the rows
            x_next[part] = pick_destination(move, part_u[:, 1])
        elif moves.any():
            movers = moves.nonzero()[:, 0]
            x_next[part[movers]] = pick_destination(move.index_select(0, movers), part_u[movers, 1])
    return x_next.view(B, L)


def coupled_sparse_step(graph: Graph, noise: Noise, schedule: Schedule, k: int, x: torch.Tensor,
                        log_score: torch.Tensor, shared) -> torch.Tensor | None:
    """Step k of `schedule` with the coupled draws `shared` (`TrajectoryNoise`, absorbing graph) from
    the masked rows alone (`exact_rows`): bit for bit `shared.step` on the dense probabilities, as
    `lsd.optimize.teacher.sparse_teacher_step` is for the teacher. None where that is not
    guaranteed (a factor or coefficient the dense step would clamp, a score whose float64
    exponential may overflow): the caller then takes the dense step."""
    factor = step_move_factor(noise, schedule.base, schedule.times[k], schedule.times[k + 1], x.shape[0])
    coefficient = schedule.coefficients[k]
    if not (0.0 <= factor < 1e30 and 0.0 <= coefficient < 1e30 and float(log_score.max()) <= 600.0):
        return None
    dim = graph.dim
    final = k == schedule.nfe - 1
    flat_x, rows = x.reshape(-1), log_score.reshape(-1, dim)
    x_next = flat_x.clone()
    masked = (flat_x == graph.mask_id).nonzero()[:, 0]
    for part in masked.split(sparse_chunk_rows(x.device, dim)) if masked.numel() else ():
        move, stay = exact_rows(graph, schedule.base, coefficient, schedule.convention, final, factor, flat_x[part],
                                rows_at(rows, part))
        shared.step_positions(x_next, part, move, move.sum(-1), stay)
    return x_next.view_as(x)
