"""The exact-score test bed: an enumerable distribution over short sequences.

`ToyDistribution` puts mass on all V^L sequences of a tiny vocabulary with strong
dependencies between neighbouring positions. `ExactScore` computes its concrete score under
any graph by enumeration, p_t(x with x_i := y) / p_t(x), and is a score model like any
network. `sampler_law` propagates the whole distribution of a sampler's state through a
schedule, so a sampler's output law is known exactly, without sampling noise.
"""
from __future__ import annotations

import itertools

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..step import step_probabilities
from ..schedule import Schedule


class ToyDistribution:
    """p(x) proportional to exp(coupling * #{i: x_{i+1} = x_i + 1 mod V}) * w(x), w random in [0.5, 1.5].

    With coupling 3 the chain x_i, x_i + 1, ... dominates: each position alone is close to
    uniform, so sampling positions independently (few steps) is visibly wrong."""

    def __init__(self, vocab: int = 3, length: int = 4, coupling: float = 3.0, seed: int = 0):
        self.vocab, self.length = int(vocab), int(length)
        self.states = torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long).reshape(-1, length)
        follows = (self.states[:, 1:] == (self.states[:, :-1] + 1) % vocab).sum(-1).to(torch.float64)
        g = torch.Generator().manual_seed(seed)
        weight = 0.5 + torch.rand(len(self.states), generator=g, dtype=torch.float64)
        p = torch.exp(coupling * follows) * weight
        self.probs = p / p.sum()

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """Position of each sequence of x [n, L] in `states` (base-V number)."""
        powers = self.vocab ** torch.arange(self.length - 1, -1, -1)
        return (x * powers).sum(-1)

    def empirical(self, x: torch.Tensor) -> torch.Tensor:
        """Empirical distribution of samples x [n, L] over `states`; samples holding a mask raise."""
        if (x < 0).any() or (x >= self.vocab).any():
            raise ValueError("toy: samples contain tokens outside the vocabulary (a mask left behind?)")
        counts = torch.bincount(self.index(x), minlength=len(self.states)).to(torch.float64)
        return counts / counts.sum()

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return self.states[torch.multinomial(self.probs, n, replacement=True, generator=g)]


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()


class ExactScore:
    """Exact log concrete score of `dist` under `graph`, by enumeration over all x_0.

    score(x)_{i, y} = sum_x0 p(x0) q(y | x0_i) prod_{j != i} q(x_j | x0_j) / p_t(x)."""

    def __init__(self, dist: ToyDistribution, graph: Graph):
        if graph.num_tokens != dist.vocab:
            raise ValueError(f"ExactScore: graph has {graph.num_tokens} tokens, distribution {dist.vocab}")
        self.dist, self.graph = dist, graph

    def __call__(self, x, sigma_bar):
        # Sequences repeat a lot (dim^L distinct states): score each distinct (x, sigma_bar) once.
        key = torch.cat([x, sigma_bar.to(torch.float64).view(torch.long)[:, None]], dim=1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        return self._score(unique[:, :-1], unique[:, -1].view(torch.float64))[inverse]

    def _score(self, x, sigma_bar):
        states, p0 = self.dist.states, self.dist.probs
        kernel = self.graph.transition(sigma_bar)  # [B, dim, V]
        at_x = kernel.gather(1, x[..., None].expand(-1, -1, kernel.shape[-1]))  # [B, L, V]: q(x_j | v)
        factors = at_x.gather(2, states.T[None].expand(len(x), -1, -1))  # [B, L, S]: q(x_j | x0_j)
        score = []
        for i in range(x.shape[1]):
            others = torch.cat([factors[:, :i], factors[:, i + 1:]], dim=1).prod(1) * p0  # [B, S]
            by_value = others @ torch.nn.functional.one_hot(states[:, i], self.dist.vocab).to(others)  # [B, V]
            numer = torch.einsum("bv,byv->by", by_value, kernel)  # [B, dim]
            score.append(numer / numer.gather(1, x[:, i:i + 1]))
        log_score = torch.log(torch.stack(score, dim=1)).clamp_min(-1e4)
        return log_score.scatter(-1, x[..., None], 0.0)


def sampler_law(model, schedule: Schedule, graph: Graph, noise: Noise, length: int) -> torch.Tensor:
    """Exact law of the sampler's final state over all V^L sequences (order of `itertools.product`).

    Enumerates all dim^L states, applies `step_probabilities` (the sampler's own step) to each,
    and pushes the distribution through the product of per-position transitions, starting from
    the product of `graph.limit_distribution()`. Rules with one categorical draw per position
    only (euler, tweedie): the Poisson counts of `tauleap` are not a categorical step."""
    if schedule.base == "tauleap":
        raise ValueError("sampler_law: the tauleap rule draws Poisson counts, not one categorical jump; sample it")
    dim = graph.dim
    states = torch.tensor(list(itertools.product(range(dim), repeat=length)), dtype=torch.long)
    start = graph.limit_distribution()  # [dim]
    law = start[states].prod(-1)
    for k in range(schedule.nfe):
        sigma_bar = noise.total(torch.full((len(states),), schedule.times[k], dtype=torch.float64))
        move, stay = step_probabilities(graph, noise, schedule, k, states, model(states, sigma_bar))
        per_position = move.scatter(-1, states[..., None], stay[..., None])
        per_position = per_position / per_position.sum(-1, keepdim=True)  # [S, L, dim]
        # T[a, b] = prod_i P_i(a -> b_i)
        trans = torch.ones(len(states), len(states), dtype=torch.float64)
        for i in range(length):
            trans = trans * per_position[:, i, states[:, i]]
        law = law @ trans
    real = (states < graph.num_tokens).all(-1)
    return law[real]
