"""The training losses of the small backbones, reported in nats per token (the first two are
evidence lower bounds):

- **Score entropy** (SEDD, Lou et al. 2024), for SEDD-style score networks on either graph.
  At a noisy sequence x_t ~ q(. | x0) with total noise sigma_bar = sigma_bar(t), per position

      l = sum_{y != x_t} w(x_t, y) [ s_y - r_y log s_y + K(r_y) ],  K(r) = r (log r - 1),

  where s_y is the network's score (exp of its output), w(x_t, y) = Q(y, x_t) the forward
  rate into x_t (`Graph.reverse_weights`) and r_y = q(y | x0) / q(x_t | x0) the ratio of
  the one-position transition probabilities. K makes l >= 0 (l = 0 iff s = r). The
  sequence loss is sigma(t) * sum_i l_i with t ~ U[t_eps, 1] (SEDD's diffusion-weighted
  DSE, an upper bound on -log p(x0) up to the t_eps and t = 1 edge terms).
  Absorbing graph: only masked positions contribute, w = 1 for every real y, and
  r_y = [y == x0] / expm1(sigma_bar). Uniform graph (Q = 11^T/N - I): w = 1/N for every
  y != x_t; with e = exp(-sigma_bar), p_diff = (1 - e)/N, p_same = e + p_diff:
  if x_t == x0 every r_y = p_diff / p_same; otherwise r_{x0} = p_same / p_diff and
  r_y = 1 for the other N - 2 tokens.
- **Masked cross-entropy** (RADD / MDLM), for x0-predicting networks on the absorbing graph:
  sequence loss = w(t) * sum_{masked i} -log p(x0_i | x_t) with the ELBO weight
  w(t) = sigma(t) / expm1(sigma_bar(t)), which is exactly 1/t for log-linear noise (MDLM's
  weight; RADD's lambda-DCE is the same bound). This harness uses the weighted (ELBO) form.
- **x0 cross-entropy** (`x0_ce`), for x0-predicting networks on any graph (the tauLDR UNet on
  the Gaussian-rate graph): sequence loss = sum_i -log p(x0_i | x_t) over every position, with
  weight 1 at every t. Not an ELBO: a proper scoring rule whose minimiser is the true
  posterior p(x0 | x_t), from which `lsd.X0Score` gives the exact concrete score. tauLDR trains
  the same network on its continuous-time ELBO plus 0.001 times this term; on one CPU thread
  the plain cross-entropy is the cheaper signal for a tiny model (no [B, L, S, S] ratios).

Time sampling is stratified (antithetic): t_b = t_eps + (1 - t_eps) * ((u + b/B) mod 1)
with one uniform u per batch. Every random draw of step k (data, times, noise) comes from
a torch.Generator seeded by (seed, k), so training is a pure function of the seed and
resuming from a checkpoint continues exactly (CPU: bit for bit at a fixed thread count).
"""
from __future__ import annotations

import torch

from ..diffusion.graph import AbsorbingGraph, Graph, UniformGraph
from ..diffusion.noise import Noise

LOSSES = ("score_entropy", "masked_ce", "x0_ce")


def _k(r: torch.Tensor) -> torch.Tensor:
    """K(r) = r (log r - 1), with K(0) = 0."""
    safe = torch.where(r > 0, r, torch.ones_like(r))
    return torch.where(r > 0, r * (torch.log(safe) - 1.0), torch.zeros_like(r))


def score_entropy(log_score: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, sigma_bar: torch.Tensor,
                  graph: Graph) -> torch.Tensor:
    """Denoising score entropy per position [B, L] (float64, >= 0), not yet weighted by sigma(t).

    log_score [B, L, graph.dim] (current token's entry ignored), x0 [B, L] real tokens,
    x_t [B, L] the noisy tokens, sigma_bar [B]. Closed forms of the module docstring."""
    s = log_score.to(torch.float64)
    sb = sigma_bar.to(torch.float64)[:, None]
    if isinstance(graph, AbsorbingGraph):
        V = graph.num_tokens
        masked = x_t == graph.mask_id
        ratio = 1.0 / torch.expm1(sb)  # [B, 1]
        pos = torch.exp(s[..., :V]).sum(-1)
        neg = ratio * s.gather(-1, x0[..., None])[..., 0]
        out = pos - neg + _k(ratio)
        return torch.where(masked, out, torch.zeros_like(out))
    if isinstance(graph, UniformGraph):
        n = graph.dim
        s = s.scatter(-1, x_t[..., None], 0.0)  # the current token's entry: log 1
        p_diff = -torch.expm1(-sb) / n
        p_same = torch.exp(-sb) + p_diff
        sum_exp = torch.exp(s).sum(-1) - 1.0  # over y != x_t
        sum_log = s.sum(-1)
        same = x_t == x0
        r1 = p_diff / p_same
        loss_same = sum_exp - r1 * sum_log + (n - 1) * _k(r1)
        r2 = p_same / p_diff
        s_x0 = s.gather(-1, x0[..., None])[..., 0]
        loss_diff = sum_exp - r2 * s_x0 - (sum_log - s_x0) + _k(r2) - (n - 2)
        return torch.where(same, loss_same, loss_diff) / n
    raise ValueError(f"score_entropy: unsupported graph {type(graph).__name__}")


def masked_cross_entropy(log_p: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """-log p(x0_i | x_t) at masked positions, 0 elsewhere: [B, L] float64."""
    nll = -log_p.to(torch.float64).gather(-1, x0[..., None])[..., 0]
    return torch.where(x_t == mask_id, nll, torch.zeros_like(nll))


def sample_times(batch: int, t_eps: float, generator: torch.Generator) -> torch.Tensor:
    """Stratified times in [t_eps, 1]: one uniform shifted over B evenly spaced strata, float64 [B]."""
    u = torch.rand((), generator=generator, dtype=torch.float64)
    grid = (u + torch.arange(batch, dtype=torch.float64) / batch) % 1.0
    return t_eps + (1.0 - t_eps) * grid


def diffusion_loss(net, x0: torch.Tensor, t: torch.Tensor, u: torch.Tensor, graph: Graph, noise: Noise,
                   loss: str) -> torch.Tensor:
    """Per-sequence ELBO-weighted loss [B] (nats) at times t [B] with corruption uniforms u [B, L, 2]."""
    sigma_bar = noise.total(t)
    rate = noise.rate(t)
    x_t = graph.corrupt(x0, sigma_bar, u)
    out = net(x_t, sigma_bar)
    if loss == "score_entropy":
        per_pos = score_entropy(out, x0, x_t, sigma_bar, graph)
        return rate * per_pos.sum(-1)
    if loss == "masked_ce":
        per_pos = masked_cross_entropy(out, x0, x_t, graph.mask_id)
        return rate / torch.expm1(sigma_bar) * per_pos.sum(-1)
    if loss == "x0_ce":
        return -out.to(torch.float64).gather(-1, x0[..., None])[..., 0].sum(-1)
    raise ValueError(f"loss: unknown {loss!r}; choose one of {list(LOSSES)}")
