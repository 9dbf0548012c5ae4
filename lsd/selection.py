"""Selection rules: which masked positions a step reveals, as data in the schedule.

A scalar coefficient per step (LSD, LSD+) only changes how many tokens an absorbing sampler
reveals per step, never which (docs/conventions.md section 6). The error of a few-step absorbing
sampler is parallel decoding: the tokens revealed in one step are drawn each from its own
marginal p(x0_i | x_t), i.e. from the product of marginals instead of their joint. Two
masked positions far apart depend little on each other given what is revealed (for a
first-order Markov language, two masked positions with a revealed token between them are
conditionally independent; text and images are local), so revealing the step's tokens far
apart removes most of that error without changing the marginals.

`schedule.selection = {"rule": "spread", "strength": theta}` makes `lsd.sample` (absorbing
graphs only) take each step k from t_k to t_{k+1} as follows:

1. How many. The base rule's per-position probabilities of leaving the mask p_i (from the
   step's own move/stay, so coefficients and grids act as usual) give the expected count
   E = sum over masked positions of p_i (m p for exact scores). The step reveals
   n = floor(E + u) tokens with one per-sample uniform u (stochastic rounding: E[n] = E),
   clipped to [0, m]; the last step reveals every remaining mask.
2. Which. Greedy farthest point: n times, pick the masked position i maximising
   theta * log d_i + g_i, where g_i is a fresh standard Gumbel draw per pick and position and
   d_i = min(distance to the nearest revealed position, distance to the nearest position
   already chosen in this step - 1/2). The two ends of the sequence count as revealed
   (positions -1 and L), so a run of masks is split in its middle. The half position makes a
   position next to a token decoded in this same step (drawn jointly-blind with it) worse
   than one equally close to a known token (which it is conditioned on). theta = 0: a
   uniformly random subset (the base rule's choice, with a rounded count); theta = inf: pure
   farthest point, ties broken by the Gumbel draws; in between, softly spread
   (P(pick i) proportional to d_i^theta).
3. What. Each chosen position draws its token from the step's own move row (the normalised
   score, p(x0_i | x_t) for exact or RADD-style models, under the `scale` convention and
   temperature 1): no sharpening, so entropy stays faithful.

Randomness (`lsd.random`, per-sample counter-based streams, batch-size invariant): the count
uses stream `count_stream(k)`, the Gumbel draws `gumbel_stream(k)` (one uniform per pick and
position), the tokens the second uniform of the sampler's own step stream k. A schedule
with a selection rule still costs exactly one network call per step.

`{"rule": "left_to_right"}` keeps steps 1 and 3 and reveals the n leftmost masked positions:
at a fine grid (n <= 1 per step, e.g. 1024 steps for 256 tokens under log-linear noise) this
is autoregressive decoding with the diffusion model, exact for exact scores (the chain rule
in a fixed order) and the order in which each token needs only what precedes it. A
benchmark of the backbone rather than a few-step sampler: it needs about L steps.

For a first-order chain of length L, a grid whose counts double (1, 2, 4, ...) with theta =
inf reveals every step's tokens in distinct masked runs: sampling is then exact in about
log2(L) + 1 steps. `lsd.optimize.spread` chooses theta and the grid from the model itself.
"""
from __future__ import annotations

import math

import torch

from .draws import pick_destination
from .schedule import RULES, ScheduleError

_STREAM_BASE = -(1 << 32)  # far from the sampler's streams (step k >= 0, INIT and the optimisers' small negatives)


def count_stream(k: int) -> int:
    return _STREAM_BASE - 2 * k


def gumbel_stream(k: int) -> int:
    return _STREAM_BASE - 2 * k - 1


def _gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u.clamp_min(1e-300)))


def distance_to_revealed(masked: torch.Tensor) -> torch.Tensor:
    """[B, L] float64: distance from each position to the nearest unmasked one, the two ends of the
    sequence (positions -1 and L) counting as unmasked."""
    B, L = masked.shape
    pos = torch.arange(L, device=masked.device)
    left = torch.where(masked, -1, pos[None].expand(B, L)).cummax(-1).values  # -1: the left end
    right = torch.where(masked, L, pos[None].expand(B, L)).flip(-1).cummin(-1).values.flip(-1)  # L: the right end
    return torch.minimum(pos - left, right - pos).to(torch.float64)


def reveal_counts(masked: torch.Tensor, move: torch.Tensor, stay: torch.Tensor, u: torch.Tensor,
                  final: bool) -> torch.Tensor:
    """n [B] long: floor(E + u) with E the base rule's expected number of masks leaving, clipped to [0, m];
    every mask on the final step."""
    m = masked.sum(-1)
    if final:
        return m
    total = move.sum(-1)
    leave = torch.where(masked & (total > 0), total / (total + stay).clamp_min(1e-300), 0.0)
    expected = leave.sum(-1)
    n = torch.floor(expected + u).long()
    return torch.minimum(n.clamp_min(0), m)


def spread_positions(masked: torch.Tensor, n: torch.Tensor, strength: float, gumbel_u) -> torch.Tensor:
    """Greedy soft farthest point: order [B, P] of the positions chosen (pick order), -1 padded.

    `gumbel_u(P)` returns uniforms [B, P, L] (one per pick and position); P = max(n)."""
    B, L = masked.shape
    P = int(n.max()) if n.numel() else 0
    order = torch.full((B, P), -1, dtype=torch.long, device=masked.device)
    if P == 0:
        return order
    g = _gumbel(gumbel_u(P))
    pos = torch.arange(L, device=masked.device)
    d_rev = distance_to_revealed(masked)
    d_chosen = torch.full((B, L), math.inf, dtype=torch.float64, device=masked.device)
    available = masked.clone()
    rows = torch.arange(B, device=masked.device)
    for j in range(P):
        active = available & (j < n)[:, None]
        has = active.any(-1)
        if not has.any():
            break
        d = torch.minimum(d_rev, d_chosen - 0.5)
        if math.isinf(strength):
            best = torch.where(active, d, -math.inf).max(-1, keepdim=True).values
            score = torch.where(active & (d == best), g[:, j], -math.inf)
        elif strength == 0.0:
            score = torch.where(active, g[:, j], -math.inf)
        else:
            score = torch.where(active, strength * torch.log(d) + g[:, j], -math.inf)
        pick = score.argmax(-1)
        order[:, j] = torch.where(has, pick, -1)
        r, p = rows[has], pick[has]
        available[r, p] = False
        d_chosen[has] = torch.minimum(d_chosen[has], (pos[None] - p[:, None]).abs().to(torch.float64))
    return order


def leftmost_positions(masked: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: the n[b] leftmost masked positions of each row."""
    rank = masked.long().cumsum(-1)  # 1 at the first masked position, 2 at the second, ...
    return masked & (rank <= n[:, None])


def spread_step(graph, x: torch.Tensor, move: torch.Tensor, stay: torch.Tensor, streams, k: int,
                strength: float, final: bool):
    """One step of the spread rule: (x_next [B, L], order [B, P] of the revealed positions, n [B])."""
    B, L = x.shape
    masked = x == graph.mask_id
    n = reveal_counts(masked, move, stay, streams.uniform(count_stream(k), 1)[:, 0], final)
    order = spread_positions(masked, n, strength, lambda P: streams.uniform(gumbel_stream(k), P, L))
    chosen = torch.zeros_like(masked)
    valid = order >= 0
    chosen[torch.arange(B, device=x.device)[:, None].expand_as(order)[valid], order[valid]] = True
    return reveal(graph, x, move, chosen, streams, k), order, n


def left_to_right_step(graph, x: torch.Tensor, move: torch.Tensor, stay: torch.Tensor, streams, k: int,
                       final: bool) -> torch.Tensor:
    """One step of the left_to_right rule: x_next [B, L]."""
    masked = x == graph.mask_id
    n = reveal_counts(masked, move, stay, streams.uniform(count_stream(k), 1)[:, 0], final)
    return reveal(graph, x, move, leftmost_positions(masked, n), streams, k)


def reveal(graph, x: torch.Tensor, move: torch.Tensor, chosen: torch.Tensor, streams, k: int) -> torch.Tensor:
    """x with each `chosen` position [B, L] set to a token drawn from its move row (float64)."""
    L = x.shape[1]
    x_next = x.clone()
    if chosen.any():
        rows = move[chosen]
        empty = rows.sum(-1) <= 0  # every score underflowed: a uniform real token, as graph.finalize does
        if empty.any():
            rows = torch.where(empty[:, None], graph.reverse_weights(x)[chosen], rows)
        x_next[chosen] = pick_destination(rows, streams.uniform(k, L, 2)[..., 1][chosen])
    return x_next


def selection_step(graph, schedule, k: int, x: torch.Tensor, move: torch.Tensor, stay: torch.Tensor,
                   streams) -> torch.Tensor:
    """The next state of step k of `schedule` under its selection rule (the hook `lsd.sample` calls)."""
    sel = schedule.selection
    final = k == schedule.nfe - 1
    if sel["rule"] == "spread":
        return spread_step(graph, x, move, stay, streams, k, sel["strength"], final)[0]
    if sel["rule"] == "left_to_right":
        return left_to_right_step(graph, x, move, stay, streams, k, final)
    raise ScheduleError(f"schedule.selection.rule: unknown {sel['rule']!r}; choose one of {list(RULES)}")
