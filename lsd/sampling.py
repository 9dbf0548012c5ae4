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

Sparse steps. Building the float64 [B, L, dim] probabilities of every step costs more than
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
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .diffusion.graph import AbsorbingGraph, Graph, UniformGraph
from .diffusion.noise import Noise
from .diffusion.scores import posterior_of
from .draws import TrajectoryNoise, draw, pick_destination
from .io import progress as progress_bar
from .random import INIT, TAULEAP, RandomStreams
from .schedule import Schedule, check_graph


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


def dense_step(graph: Graph, noise: Noise, schedule: Schedule, k: int, x: torch.Tensor, log_score: torch.Tensor,
               streams: RandomStreams) -> torch.Tensor:
    """Step k of `schedule` from the full float64 [B, L, dim] probabilities: the specification
    `sparse_step` reproduces bit for bit (and the path `sample` takes where it does not apply)."""
    move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
    if schedule.selection is None:
        return draw_step(schedule.base, x, move, stay, streams, k, final=k == schedule.nfe - 1)
    from .selection import selection_step

    return selection_step(graph, schedule, k, x, move, stay, streams)


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


COUPLINGS = ("independent", "coupled")


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


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule, *,
           graph: Graph, noise: Noise, num_samples: int, length: int, seed: int = 0,
           batch_size: int = 64, first_sample: int = 0, device: str | torch.device = "cpu",
           callback: Optional[Callable[[Step], None]] = None, progress: bool = False,
           dense: bool = False, coupling: str = "independent") -> torch.Tensor:
    """Draw `num_samples` sequences of `length` tokens with `schedule`; returns LongTensor [n, L].

    model: a score model `(x_t [B, L], sigma_bar [B] float64) -> log score [B, L, graph.dim]`;
        wrap it in `lsd.CallCounter` to count network calls (exactly `schedule.nfe` per batch).
    schedule: the sampler, as data (`lsd.Schedule`).
    graph, noise: the diffusion the model was trained for.
    seed, first_sample: sample i (global index first_sample + i) uses its own random streams
        keyed by (seed, index): results do not depend on batch_size.
    callback: called after every step with a `Step` (state, time, score, probabilities); the steps
        are then dense, to build the probabilities it sees (same samples).
    progress: show a tqdm bar over batches x steps.
    dense: build the full float64 probabilities at every step (`dense_step`, the specification);
        by default steps are sparse where `supports_sparse_step` allows, with the same samples.
    coupling: "independent" (default) or "coupled": common random numbers across samplers. On
        the absorbing graph with a categorical rule (euler, tweedie) and no selection rule, sample i
        gets one clock and one token draw per position from (seed, i), shared by every sampler
        (`lsd.draws.TrajectoryNoise`, the coupling of teacher and student rollouts): a
        position unmasks at the first step where its survival falls to its clock, to the token at
        its draw's quantile. Each sampler keeps its exact law, and sample i of two samplers of a
        seed end close, so their paired differences are precise. Elsewhere (other graphs, where
        positions jump repeatedly; tauleap; selection rules) what is shared is what independent
        sampling shares too: the start and the uniforms of step k keyed by (seed, i, k).
    """
    if num_samples < 0 or length < 1 or batch_size < 1:
        raise ValueError(f"sample: need num_samples >= 0, length >= 1, batch_size >= 1; "
                         f"got {num_samples}, {length}, {batch_size}")
    if coupling not in COUPLINGS:
        raise ValueError(f"sample: coupling must be one of {COUPLINGS}, got {coupling!r}")
    check_base(schedule.base, graph)  # before any network call
    if schedule.selection is not None:
        from .selection import selection_step

        check_graph(schedule, graph)  # before any network call: one line naming schedule.selection
    device = torch.device(device)
    coupled = (coupling == "coupled" and getattr(graph, "absorbing", False) and schedule.selection is None
               and schedule.base != "tauleap")
    # a callback sees move and stay, so its steps are dense
    sparse = not dense and callback is None and supports_sparse_step(graph, schedule)
    out = torch.empty(num_samples, length, dtype=torch.long)
    bar = progress_bar(-(-num_samples // batch_size) * schedule.nfe,
                       f"sample {schedule.metadata.get('method', '')} {schedule.base} NFE={schedule.nfe}", progress,
                       unit="step", leave=False)
    for start in range(0, num_samples, batch_size):
        ids = torch.arange(first_sample + start, first_sample + min(start + batch_size, num_samples), device=device)
        streams = RandomStreams(seed, ids)
        x = graph.limit(streams.uniform(INIT, length, 2))
        shared = None
        if coupled:
            shared = TrajectoryNoise(graph, seed, ids, length)  # the same start as `streams`
        for k in range(schedule.nfe):
            sigma_bar = noise.total(torch.full((len(ids),), schedule.times[k], dtype=torch.float64, device=device))
            log_score = model(x, sigma_bar)
            x_next = None
            if sparse and shared is not None:
                x_next = coupled_sparse_step(graph, noise, schedule, k, x, log_score, shared)
            elif sparse:
                x_next = sparse_step(graph, noise, schedule, k, x, log_score, streams)
            if x_next is None:
                move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
                if shared is not None:
                    x_next = shared.step(x, move, stay, k)
                elif schedule.selection is None:
                    x_next = draw_step(schedule.base, x, move, stay, streams, k, final=k == schedule.nfe - 1)
                else:  # the schedule's selection rule decides which masks leave (lsd.selection)
                    x_next = selection_step(graph, schedule, k, x, move, stay, streams)
            if callback is not None:
                callback(Step(k, schedule.times[k], schedule.times[k + 1], x, log_score, move, stay, x_next, ids))
            x = x_next
            bar.update(1)
        out[start:start + len(ids)] = x.cpu()
    bar.close()
    return out
