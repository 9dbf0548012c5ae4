"""Graphs: the forward corruption of one token and the reverse step rules that undo it.

Conventions (SEDD, docs/conventions.md section 1):
- `num_tokens` = V real tokens; `dim` = classes the model scores (V + 1 with a mask for
  the absorbing graph, mask id = V; V for the uniform graph).
- The forward rate matrix is sigma(t) Q. Q_absorb sends every token to the mask;
  Q_uniform = (1/V) 11^T - I. General reversible CTMCs with a dense base matrix (tauLDR's
  Gaussian-rate graph among them) live in `lsd.diffusion.ctmc`; every graph is registered by
  name in `lsd.diffusion.registry` (`make_graph`).
- A score model returns log s(x, t)_{i, y} ~ log p_t(x with x_i := y) / p_t(x); the reverse
  rate from x_i to y != x_i is sigma(t) * Q(y, x_i) * s_y, with Q(y, x_i) = `reverse_weights`.

All step rules return the unnormalised probabilities of one step as a pair
`(move [B, L, dim], stay [B, L])`: `move` holds P(x_i -> y) for y != x_i (zero at
y == x_i), `stay` holds P(x_i -> x_i). Both are clamped at 0 and the sampler normalises
their sum, which is how an Euler step too large for its rate (stay < 0) is resolved.
"""
from __future__ import annotations

import torch


class Graph:
    name = "graph"
    absorbing = False
    ordinal = False  # values can be added and clamped (pixel intensities): the `tauleap` rule needs it

    def __init__(self, num_tokens: int):
        if int(num_tokens) < 2:
            raise ValueError(f"graph.num_tokens: need at least 2 tokens, got {num_tokens}")
        self.num_tokens = int(num_tokens)

    @property
    def dim(self) -> int:
        return self.num_tokens

    def config(self) -> dict:
        return {"type": self.name, "num_tokens": self.num_tokens}

    # forward process ---------------------------------------------------------------
    def transition(self, sigma_bar: torch.Tensor) -> torch.Tensor:
        """q(x_t = y | x_0 = v) as a tensor [..., dim, V] for total noise `sigma_bar` [...]."""
        raise NotImplementedError

    def corrupt(self, x0: torch.Tensor, sigma_bar: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(. | x0) per position from uniforms `u` [B, L, 2]; sigma_bar is [B]."""
        raise NotImplementedError

    def limit(self, u: torch.Tensor) -> torch.Tensor:
        """The start state of sampling, x_T, drawn from uniforms `u` [B, L, 2]."""
        raise NotImplementedError

    def limit_distribution(self) -> torch.Tensor:
        """The law [dim] (float64) of one position of `limit`: what exact sampler laws start from."""
        raise NotImplementedError

    # reverse process ---------------------------------------------------------------
    def reverse_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Q(y, x_i) for y != x_i, zero at y == x_i: [B, L, dim] float64."""
        raise NotImplementedError

    def tweedie(self, x, score, delta):
        """SEDD's analytic ("Tweedie") step over total noise `delta` = sigma_bar(t) - sigma_bar(s) [B]."""
        raise NotImplementedError

    def finalize(self, move, stay, x, **context):
        """Last step of a sampler: leave no absorbing state behind. Identity by default.

        `context` holds what a graph may need beyond the step's probabilities: `score` (the
        scaled score), `delta` [B] (total noise from the step's start to the final time) and
        `posterior` (log p(x0 | x_t) when the score model gave it, else None); the CTMC graphs
        use them to decode (`lsd.diffusion.ctmc`)."""
        return move, stay


class AbsorbingGraph(Graph):
    """Every token jumps to the mask (id V) at rate sigma(t); masks never leave in forward time."""

    name = "absorbing"
    absorbing = True

    @property
    def dim(self) -> int:
        return self.num_tokens + 1

    @property
    def mask_id(self) -> int:
        return self.num_tokens

    def transition(self, sigma_bar):
        keep = torch.exp(-sigma_bar)[..., None, None]
        eye = torch.eye(self.dim, self.num_tokens, dtype=keep.dtype, device=keep.device)
        to_mask = torch.zeros_like(eye)
        to_mask[self.mask_id] = 1.0
        return keep * eye + (1.0 - keep) * to_mask

    def corrupt(self, x0, sigma_bar, u):
        p_mask = -torch.expm1(-sigma_bar.to(torch.float64))[:, None]
        return torch.where(u[..., 0] < p_mask, self.mask_id, x0)

    def limit(self, u):
        return torch.full(u.shape[:2], self.mask_id, dtype=torch.long, device=u.device)

    def limit_distribution(self):
        return torch.eye(self.dim, dtype=torch.float64)[self.mask_id]

    def reverse_weights(self, x):
        w = torch.zeros(*x.shape, self.dim, dtype=torch.float64, device=x.device)
        w[..., : self.num_tokens] = (x == self.mask_id)[..., None].to(torch.float64)
        return w

    def tweedie(self, x, score, delta):
        # Masked position: P(y) = (e^delta - 1) s_y, P(stay masked) = 1 - sum_y P(y).
        move = torch.expm1(delta)[:, None, None] * score * self.reverse_weights(x)
        return move, 1.0 - move.sum(-1)

    def finalize(self, move, stay, x, **context):
        masked = x == self.mask_id
        stuck = masked & (move.sum(-1) <= 0)
        if stuck.any():  # every score underflowed: fall back to a uniform real token
            move = torch.where(stuck[..., None], self.reverse_weights(x), move)
        return move, torch.where(masked, torch.zeros_like(stay), stay)


class UniformGraph(Graph):
    """Each token is resampled uniformly at rate sigma(t): Q = (1/V) 11^T - I."""

    name = "uniform"

    def transition(self, sigma_bar):
        keep = torch.exp(-sigma_bar)[..., None, None]
        eye = torch.eye(self.dim, dtype=keep.dtype, device=keep.device)
        return keep * eye + (1.0 - keep) / self.dim

    def corrupt(self, x0, sigma_bar, u):
        p_resample = -torch.expm1(-sigma_bar.to(torch.float64))[:, None]
        fresh = (u[..., 1] * self.dim).long().clamp_max(self.dim - 1)
        return torch.where(u[..., 0] < p_resample, fresh, x0)

    def limit(self, u):
        return (u[..., 1] * self.dim).long().clamp_max(self.dim - 1)

    def limit_distribution(self):
        return torch.full((self.dim,), 1.0 / self.dim, dtype=torch.float64)

    def reverse_weights(self, x):
        w = torch.full((*x.shape, self.dim), 1.0 / self.dim, dtype=torch.float64, device=x.device)
        return w.scatter_(-1, x[..., None], 0.0)

    def tweedie(self, x, score, delta):
        # SEDD's analytic sampler: p(y) = [exp(-delta Q)^T s]_y * exp(delta Q)(x -> y), with the
        # score's own entry equal to 1.
        n = self.dim
        keep = torch.exp(-delta)[:, None, None]  # e^-delta
        full = score.scatter(-1, x[..., None], 1.0)
        staggered = (keep - 1.0) / (n * keep) * full.sum(-1, keepdim=True) + full / keep
        jump = (1.0 - keep) / n
        move = (staggered * jump).scatter(-1, x[..., None], 0.0)
        stay = staggered.gather(-1, x[..., None])[..., 0] * (1.0 - (n - 1) * jump[..., 0])
        return move, stay
