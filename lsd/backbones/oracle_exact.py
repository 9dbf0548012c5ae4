"""The exact denoiser of `OracleText`: p(x0_i = y | x_t) by forward-backward.

On the absorbing graph, x_t reveals the tokens of x_0 at its unmasked positions and nothing
else: a mask at position i is independent of x0_i and every mask has the same probability
1 - exp(-sigma_bar). So p(x0 | x_t) is the chain conditioned on the observed tokens and does
not depend on sigma_bar. With evidence e_i(y) = 1 at masked positions and e_i(y) = [y == x_i]
at observed ones:

    alpha_1 = pi * e_1,  alpha_i = (alpha_{i-1} T) * e_i,
    beta_L = 1,          beta_i = T (e_{i+1} * beta_{i+1}),
    p(x0_i = y | x_t) = alpha_i(y) beta_i(y) / sum_y' alpha_i(y') beta_i(y'),

each message rescaled to sum 1 (float64), batched over sequences, looped over positions.
Observed positions get the one-hot posterior; its log-zeros are clamped to -1e4 so that the
output is finite everywhere.
"""
from __future__ import annotations

import torch

from ..diffusion.graph import AbsorbingGraph
from ..diffusion.scores import DenoiserScore
from ..tasks.oracle_text import OracleText

LOG_ZERO = -1e4


class OracleDenoiser:
    """Callable `(x_t [B, L] with mask id V, sigma_bar [B]) -> log p(x0_i = y | x_t) [B, L, V]` float64."""

    def __init__(self, task: OracleText):
        if not isinstance(task, OracleText):
            raise ValueError(f"OracleDenoiser: expected an OracleText task, got {type(task).__name__}")
        self.task = task
        self.mask_id = task.vocab

    def evidence(self, x_t: torch.Tensor) -> torch.Tensor:
        """e [B, L, V] float64: 1 everywhere at masked positions, one-hot at observed ones."""
        V = self.task.vocab
        if x_t.dim() != 2 or x_t.shape[1] != self.task.length:
            raise ValueError(f"OracleDenoiser: x_t must be [B, {self.task.length}], got {tuple(x_t.shape)}")
        if x_t.numel() and (x_t.min() < 0 or x_t.max() > V):
            raise ValueError(f"OracleDenoiser: tokens must lie in [0, {V}] (mask id {V}), "
                             f"got range [{int(x_t.min())}, {int(x_t.max())}]")
        masked = x_t == self.mask_id
        onehot = torch.zeros(*x_t.shape, V, dtype=torch.float64, device=x_t.device)
        onehot.scatter_(-1, x_t.clamp_max(V - 1)[..., None], 1.0)
        return torch.where(masked[..., None], torch.ones_like(onehot), onehot)

    def posterior(self, x_t: torch.Tensor) -> torch.Tensor:
        """p(x0_i = y | x_t) [B, L, V] float64 (rows sum to 1)."""
        e = self.evidence(x_t)
        T = self.task.transition.to(e.device)
        pi = self.task.initial.to(e.device)
        B, L, V = e.shape
        alpha = torch.empty_like(e)
        a = pi[None] * e[:, 0]
        alpha[:, 0] = a / a.sum(-1, keepdim=True)
        for i in range(1, L):
            a = (alpha[:, i - 1] @ T) * e[:, i]
            alpha[:, i] = a / a.sum(-1, keepdim=True)
        post = torch.empty_like(e)
        beta = torch.ones(B, V, dtype=torch.float64, device=e.device)
        post[:, L - 1] = alpha[:, L - 1]
        for i in range(L - 2, -1, -1):
            b = (e[:, i + 1] * beta) @ T.T
            beta = b / b.sum(-1, keepdim=True)
            p = alpha[:, i] * beta
            post[:, i] = p / p.sum(-1, keepdim=True)
        return post

    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        return torch.log(self.posterior(x_t)).clamp_min(LOG_ZERO)


def oracle_exact_score(task: OracleText) -> DenoiserScore:
    """The exact score model of `task` on `AbsorbingGraph(task.vocab)` (dim V + 1, mask id V)."""
    return DenoiserScore(OracleDenoiser(task), AbsorbingGraph(task.vocab), cache=True)
