import numpy as np
import pytest
import scipy.linalg
import torch

from lsd import AbsorbingGraph, DenoiserScore, GeometricNoise, LogLinearNoise, UniformGraph
from lsd.diffusion import make_graph, make_noise
from lsd.random import RandomStreams
from lsd.tasks.toy import ExactScore, ToyDistribution


def rate_matrix(graph):
    """Q[y, v]: forward rate from v to y (columns sum to 0), written independently of the graph code."""
    n = graph.dim
    if graph.absorbing:
        q = np.zeros((n, n))
        for v in range(graph.num_tokens):
            q[graph.mask_id, v], q[v, v] = 1.0, -1.0
        return q
    return np.ones((n, n)) / n - np.eye(n)


@pytest.mark.parametrize("graph", [AbsorbingGraph(4), UniformGraph(4)])
def test_transition_is_the_matrix_exponential(graph):
    for sb in [0.01, 0.7, 3.0]:
        expected = scipy.linalg.expm(sb * rate_matrix(graph))[:, : graph.num_tokens]
        got = graph.transition(torch.tensor(sb, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_noise_rate_is_the_derivative_of_total_noise():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    for noise in [LogLinearNoise(), LogLinearNoise(1e-2), GeometricNoise()]:
        h = 1e-6
        numeric = (noise.total(t + h) - noise.total(t - h)) / (2 * h)
        torch.testing.assert_close(noise.rate(t), numeric, rtol=1e-5, atol=1e-8)
    loglinear = LogLinearNoise(1e-3)
    # a token is masked at time t with probability (1 - eps) t
    torch.testing.assert_close(-torch.expm1(-loglinear.total(t)), (1 - 1e-3) * t)


@pytest.mark.parametrize("graph", [AbsorbingGraph(3), UniformGraph(3)])
def test_forward_marginals_match_the_closed_form(graph):
    """Corrupt toy data x0 -> x_t and compare the empirical law of x_t with sum_x0 p(x0) q(x_t | x0)."""
    dist = ToyDistribution(3, 2)
    n, sb = 40000, torch.tensor(0.8, dtype=torch.float64)
    x0 = dist.sample(n, seed=1)
    xt = graph.corrupt(x0, sb.expand(n), RandomStreams(0, torch.arange(n)).uniform(0, 2, 2))
    kernel = graph.transition(sb)  # [dim, V]
    dim = graph.dim
    exact = torch.zeros(dim, dim, dtype=torch.float64)
    for p, s in zip(dist.probs, dist.states):
        exact += p * torch.outer(kernel[:, s[0]], kernel[:, s[1]])
    counts = torch.bincount(xt[:, 0] * dim + xt[:, 1], minlength=dim * dim).reshape(dim, dim) / n
    # each cell is a binomial frequency: 5 standard deviations
    assert ((counts - exact).abs() <= 5 * (exact * (1 - exact) / n).sqrt() + 1e-4).all()


def test_make_graph_and_noise_name_bad_config():
    assert make_graph({"type": "absorbing", "num_tokens": 5}).dim == 6
    assert make_noise({"type": "geometric", "sigma_min": 1e-3, "sigma_max": 10}).sigma_max == 10
    with pytest.raises(ValueError, match="graph.type"):
        make_graph({"type": "ring", "num_tokens": 5})
    with pytest.raises(ValueError, match="noise.type"):
        make_noise({"type": "cosine"})
    with pytest.raises(ValueError, match="noise.eps"):
        LogLinearNoise(0.0)


def test_denoiser_adapter_recovers_the_exact_score():
    """RADD convention: log s_y = log p(x0 = y | x_t) - log expm1(sigma_bar) at masked positions."""
    dist, graph = ToyDistribution(3, 3), AbsorbingGraph(3)
    exact = ExactScore(dist, graph)
    x = torch.tensor([[3, 0, 3], [3, 3, 3], [1, 3, 2]])
    sb = torch.tensor([0.4, 2.0, 0.9], dtype=torch.float64)

    def posterior(x_t, sigma_bar):  # p(x0_i | x_t) by enumeration, independently of the score code
        out = torch.zeros(*x_t.shape, 3, dtype=torch.float64)
        for b in range(len(x_t)):
            ok = ((dist.states == x_t[b]) | (x_t[b] == 3)).all(-1)
            w = dist.probs * ok
            for i in range(3):
                out[b, i] = torch.bincount(dist.states[:, i], weights=w, minlength=3) / w.sum()
        return out.log().clamp_min(-1e4)

    adapted = DenoiserScore(posterior, graph)(x, sb)
    masked = x == 3
    torch.testing.assert_close(adapted[masked], exact(x, sb)[masked])
    assert (adapted.gather(-1, x[..., None]) == 0).all()
    with pytest.raises(ValueError, match="absorbing"):
        DenoiserScore(posterior, UniformGraph(3))
