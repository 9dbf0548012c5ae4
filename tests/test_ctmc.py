"""General CTMC graphs (tauLDR's Gaussian-rate graph), x0 scores on any graph, tau-leaping and the
decoding last step: against scipy's expm, brute-force enumeration and exact sampler laws."""
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

import lsd
from lsd.diffusion import CTMCGraph, ExponentialNoise, GaussianGraph, X0Score, make_graph, make_noise
from lsd.diffusion.ctmc import gaussian_rate_matrix
from lsd.random import RandomStreams
from lsd.step import draw_tauleap, poisson_quantile, transition_probabilities
from lsd.tasks.toy import ExactScore, ToyDistribution, sampler_law, total_variation

DIGITS = dict(num_tokens=17, rate_sigma=6.0 * 17 / 256, q_sigma=512.0 * 17 / 256)


def tauldr_loops(S, rate_sigma, q_sigma):
    """The Gaussian-rate matrix as tauLDR's description reads, one entry at a time, in place."""
    rate = np.zeros((S, S))
    vals = np.exp(-np.arange(S) ** 2 / rate_sigma ** 2)
    for i in range(S):
        for j in range(S):
            if i < S // 2 and i < j < S - i:
                rate[i, j] = vals[j - i - 1]
            elif i > S // 2 and S - 1 - i < j < i:
                rate[i, j] = vals[i - j - 1]
    for i in range(S):
        for j in range(S):
            if rate[j, i] > 0.0:
                rate[i, j] = rate[j, i] * np.exp(-((j + 1) ** 2 - (i + 1) ** 2 + S * (i + 1) - S * (j + 1))
                                                 / (2 * q_sigma ** 2))
    np.fill_diagonal(rate, 0.0)
    return rate - np.diag(rate.sum(1))


@pytest.mark.parametrize("S,rate_sigma,q_sigma", [(256, 6.0, 512.0), (17, DIGITS["rate_sigma"], DIGITS["q_sigma"]),
                                                  (6, 1.5, 2.0), (5, 1.0, 3.0)])
def test_gaussian_rate_matrix_is_tauldrs(S, rate_sigma, q_sigma):
    got = gaussian_rate_matrix(S, rate_sigma, q_sigma).numpy()
    np.testing.assert_allclose(got, tauldr_loops(S, rate_sigma, q_sigma), rtol=1e-15, atol=0)


@pytest.mark.parametrize("graph", [GaussianGraph(256), GaussianGraph(**DIGITS), GaussianGraph(5, 1.0, 3.0)],
                         ids=["cifar10", "digits", "five"])
def test_gaussian_graph_properties(graph):
    R, pi = graph.rate_matrix, graph.start
    S = graph.num_tokens
    assert float(R.sum(1).abs().max()) < 1e-12  # rows sum to zero
    assert (R - torch.diag(torch.diag(R)) >= 0).all()
    flow = pi[:, None] * R
    assert float((flow - flow.T).abs().max()) < 1e-15  # detailed balance
    assert float((pi @ R).abs().max()) < 1e-15  # pi is stationary
    for sb in (1e-3, 0.4, 3.0):
        expected = scipy.linalg.expm(sb * R.numpy())
        np.testing.assert_allclose(graph.transition_matrix(torch.tensor(sb)).numpy(), expected, atol=1e-11)
        # the harness's layout: q(x_t = y | x_0 = v) as [y, v]
        np.testing.assert_allclose(graph.transition(torch.tensor([sb])).numpy()[0], expected.T, atol=1e-11)
    far = graph.transition_matrix(torch.tensor(50.0 / abs(graph.eigenvalues[-2].item())))
    torch.testing.assert_close(far, pi.expand(S, S), atol=1e-12, rtol=0)
    if S % 2 == 0:  # tauLDR's start distribution (centre S // 2) is the stationary one
        k = np.arange(1, S + 1)
        target = np.exp(-((k - S // 2) ** 2) / (2 * graph.q_sigma ** 2))
        np.testing.assert_allclose(pi.numpy(), target / target.sum(), rtol=1e-12)


def test_ctmc_graph_from_any_reversible_matrix_and_configs():
    g = torch.Generator().manual_seed(0)
    S = 5
    pi = torch.rand(S, generator=g, dtype=torch.float64) + 0.2
    pi /= pi.sum()
    sym = torch.rand(S, S, generator=g, dtype=torch.float64)
    sym = sym + sym.T
    rates = sym / pi[:, None]  # pi_i R_ij = sym_ij: reversible w.r.t. pi
    graph = CTMCGraph(S, rates.tolist())
    torch.testing.assert_close(graph.start, pi)  # the stationary law, found from the matrix
    np.testing.assert_allclose(graph.transition_matrix(torch.tensor(0.7)).numpy(),
                               scipy.linalg.expm(0.7 * graph.rate_matrix.numpy()), atol=1e-12)
    for original in (graph, GaussianGraph(**DIGITS, final="sample")):
        rebuilt = make_graph(original.config())
        assert type(rebuilt) is type(original) and rebuilt.config() == original.config()
        torch.testing.assert_close(rebuilt.rate_matrix, original.rate_matrix, rtol=0, atol=0)
        assert rebuilt.final == original.final
    assert make_graph({"type": "gaussian", "num_tokens": 256}).config() == {
        "type": "gaussian", "num_tokens": 256, "rate_sigma": 6.0, "q_sigma": 512.0, "final": "argmax"}
    with pytest.raises(ValueError, match="not reversible"):
        CTMCGraph(3, [[0, 1, 0], [0, 0, 1], [1, 0, 0]], start=[1 / 3] * 3)
    with pytest.raises(ValueError, match="graph.final"):
        GaussianGraph(5, final="mode")
    with pytest.raises(ValueError, match="graph.rates"):
        CTMCGraph(3, [[0, 1], [1, 0]])


def test_exponential_noise_is_tauldrs():
    noise = make_noise({"type": "exponential"})
    assert isinstance(noise, ExponentialNoise) and make_noise(noise.config()).config() == noise.config()
    t = torch.linspace(0.01, 0.99, 40, dtype=torch.float64)
    torch.testing.assert_close(noise.total(t), 3.0 * (100.0 ** t - 1.0))
    torch.testing.assert_close(noise.rate(t), 3.0 * np.log(100.0) * 100.0 ** t)
    torch.testing.assert_close(noise.time(noise.total(t)), t)
    assert float(noise.total(torch.tensor(0.0, dtype=torch.float64))) == 0.0


def test_corrupt_and_limit_have_the_right_marginals():
    graph = GaussianGraph(5, 1.0, 3.0)
    n, sb = 40000, torch.tensor(0.6, dtype=torch.float64)
    x0 = torch.tensor([[0, 3]]).expand(n, 2)
    u = RandomStreams(0, torch.arange(n)).uniform(0, 2, 2)
    xt = graph.corrupt(x0, sb.expand(n), u)
    P = graph.transition_matrix(sb)
    for i, v in enumerate((0, 3)):
        freq = torch.bincount(xt[:, i], minlength=5).double() / n
        assert ((freq - P[v]).abs() <= 5 * (P[v] * (1 - P[v]) / n).sqrt() + 1e-4).all()
    start = graph.limit(u)
    freq = torch.bincount(start.flatten(), minlength=5).double() / (2 * n)
    pi = graph.start
    assert ((freq - pi).abs() <= 5 * (pi * (1 - pi) / (2 * n)).sqrt()).all()
    torch.testing.assert_close(graph.limit_distribution(), pi)


def exact_posterior(dist, graph, x_t, sigma_bar):
    """p(x0_i = v | x_t) by enumeration over the whole toy distribution."""
    out = torch.zeros(*x_t.shape, dist.vocab, dtype=torch.float64)
    for b in range(len(x_t)):
        kernel = graph.transition(sigma_bar[b:b + 1])[0]  # [y, v]
        like = kernel[x_t[b][None, :], dist.states].prod(-1) * dist.probs  # p(x0) q(x_t | x0)
        for i in range(x_t.shape[1]):
            out[b, i] = torch.zeros(dist.vocab, dtype=torch.float64).index_add_(0, dist.states[:, i], like)
        out[b] /= like.sum()
    return out.log()


@pytest.mark.parametrize("graph", [GaussianGraph(4, 1.0, 3.0), lsd.UniformGraph(4)], ids=["gaussian", "uniform"])
def test_x0_score_is_the_exact_score_for_the_exact_posterior(graph):
    dist = ToyDistribution(4, 3)
    x = dist.states[torch.tensor([0, 5, 17, 40, 63])]
    sb = torch.tensor([0.05, 0.3, 1.0, 2.5, 0.8], dtype=torch.float64)
    model = X0Score(lambda x_t, s: exact_posterior(dist, graph, x_t, s), graph, ratio_eps=0.0)
    got = model(x, sb)
    torch.testing.assert_close(got, ExactScore(dist, graph)(x, sb), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lsd.diffusion.scores.posterior_of(got), exact_posterior(dist, graph, x, sb))
    assert model.network_calls == 1


def test_x0_score_agrees_with_the_radd_adapter_on_the_absorbing_graph():
    graph = lsd.AbsorbingGraph(4)
    g = torch.Generator().manual_seed(1)
    log_p = torch.log_softmax(torch.randn(3, 5, 4, generator=g, dtype=torch.float64), -1)
    x = torch.tensor([[4, 4, 1, 4, 2], [4, 0, 4, 4, 4], [3, 4, 4, 4, 4]])
    sb = torch.tensor([0.3, 1.2, 4.0], dtype=torch.float64)
    general = X0Score(lambda *_: log_p, graph, ratio_eps=0.0)(x, sb)
    radd = lsd.DenoiserScore(lambda *_: log_p, graph)(x, sb)
    masked = x == 4
    torch.testing.assert_close(general[masked], radd[masked].double())


@pytest.mark.parametrize("graph,last", [(GaussianGraph(**DIGITS), 0.125), (GaussianGraph(256), 0.0625)],
                         ids=["digits", "cifar10"])
def test_one_tweedie_step_is_the_exact_posterior_for_one_position(graph, last):
    """With exact scores the analytic step is the exact reverse kernel p(x_s | x_t) of one position,
    also over long steps where the exact formula amplifies the score's rounding beyond use (capped
    amplification); from float32 scores it stays within a few percent."""
    noise = ExponentialNoise()
    S = graph.num_tokens
    p0 = torch.linspace(1.0, 3.0, S, dtype=torch.float64) ** 3
    p0[S // 4] += 20.0
    p0 /= p0.sum()
    x = torch.arange(S)
    for t, s in [(1.0, 0.875), (0.5, 0.375), (0.25, 0.125), (last, 1e-5), (0.03, 0.02)]:
        sb = noise.total(torch.tensor([t, s], dtype=torch.float64))
        pt, ps = p0 @ graph.transition_matrix(sb[0]), p0 @ graph.transition_matrix(sb[1])
        exact = ps[None, :] * graph.transition_matrix(sb[0] - sb[1])[:, x].T / pt[:, None]  # [x, y]
        score = pt[None, :] / pt[:, None]
        for dtype, tol in ((torch.float64, 1e-4), (torch.float32, 5e-2)):
            rounded = score.to(dtype).double()[None]
            move, stay = transition_probabilities(graph, noise, "tweedie", t, s, x[None], rounded)
            got = move[0].scatter(-1, x[:, None], stay[0][:, None]).clamp_min(0)
            expected_tv = float(((got / got.sum(-1, keepdim=True) - exact).abs().sum(-1) / 2 * pt).sum())
            assert expected_tv < tol, (t, s, dtype, expected_tv)


@pytest.fixture(scope="module")
def toy():
    dist = ToyDistribution(4, 2)
    graph = GaussianGraph(4, 1.0, 3.0, final="sample")
    return dist, graph, ExactScore(dist, graph), lsd.GeometricNoise(1e-3, 20.0)


@pytest.mark.parametrize("base", ["euler", "tweedie"])
def test_fine_grid_reproduces_the_data_on_a_ctmc_graph(toy, base):
    dist, graph, model, noise = toy
    tv = [total_variation(sampler_law(model, lsd.Schedule.uniform(base, n), graph, noise, 2), dist.probs)
          for n in (4, 64, 1024)]
    # decreasing to the floor set by the final time (sigma_bar(1e-5) = 1e-3 of noise left)
    assert tv[0] > tv[1] > tv[2] and tv[2] < 0.006, tv


def test_tauleap_reproduces_the_data_and_is_batch_size_invariant(toy):
    dist, graph, model, noise = toy
    n = 20000
    x = lsd.sample(model, lsd.Schedule.uniform("tauleap", 64), graph=graph, noise=noise, num_samples=n, length=2,
                   batch_size=n, seed=3)
    tv = total_variation(dist.empirical(x), dist.probs)
    law = sampler_law(model, lsd.Schedule.uniform("euler", 64), graph, noise, 2)  # Euler on the same grid
    assert tv < total_variation(law, dist.probs) + 0.02 and tv < 0.04, tv
    small = lsd.sample(model, lsd.Schedule.uniform("tauleap", 16), graph=graph, noise=noise, num_samples=7, length=2,
                       batch_size=7, seed=5)
    one = lsd.sample(model, lsd.Schedule.uniform("tauleap", 16), graph=graph, noise=noise, num_samples=7, length=2,
                     batch_size=1, seed=5)
    assert torch.equal(small, one)
    again = lsd.sample(model, lsd.Schedule.uniform("tauleap", 16), graph=graph, noise=noise, num_samples=7, length=2,
                       batch_size=3, seed=5)
    assert torch.equal(small, again)


def test_tau_leaping_draws_poisson_counts_and_clamps():
    lam = torch.tensor([0.0, 1e-3, 0.5, 3.0, 40.0, 900.0], dtype=torch.float64)
    u = torch.tensor([0.2, 0.9995, 0.7, 0.999, 0.01, 0.5], dtype=torch.float64)
    expected = scipy.stats.poisson.ppf(u.numpy(), lam.numpy())
    expected[0] = 0.0
    np.testing.assert_array_equal(poisson_quantile(lam, u).numpy(), expected)
    grid = torch.rand(2000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for mean in (0.3, 7.0):
        got = poisson_quantile(torch.full_like(grid, mean), grid).numpy()
        np.testing.assert_array_equal(got, scipy.stats.poisson.ppf(grid.numpy(), mean))
    # ordinal jump sum and clamping: from x = 1 over 5 values, 3 jumps to 4 (+9) and 1 to 0 (-1)
    move = torch.zeros(1, 1, 5, dtype=torch.float64)
    move[0, 0, 4], move[0, 0, 0] = 3.0, 1.0
    u = torch.full((1, 1, 5), 0.5, dtype=torch.float64)
    u[0, 0, 4] = scipy.stats.poisson.cdf(2, 3.0) + 1e-9  # exactly 3 jumps
    u[0, 0, 0] = scipy.stats.poisson.cdf(0, 1.0) + 1e-9  # exactly 1 jump
    assert int(draw_tauleap(torch.tensor([[1]]), move, u)) == 4  # 1 + 12 - 1 = 12, clamped to 4
    u[0, 0, 4] = 0.0
    assert int(draw_tauleap(torch.tensor([[1]]), move, u)) == 0  # 1 - 1


def test_tauleap_needs_ordinal_values():
    graph, noise = lsd.AbsorbingGraph(3), lsd.LogLinearNoise()
    model = ExactScore(ToyDistribution(3, 2), graph)
    with pytest.raises(ValueError, match="tauleap.*ordinal.*absorbing"):
        lsd.sample(model, lsd.Schedule.uniform("tauleap", 4), graph=graph, noise=noise, num_samples=2, length=2)


@pytest.mark.parametrize("base", ["euler", "tauleap", "tweedie"])
def test_last_step_decodes_the_argmax_of_the_posterior_at_no_extra_call(base):
    """NFE = steps; the last step jumps to argmax p(x0 | x_t) of the last network call."""
    dist = ToyDistribution(4, 3)
    graph, noise = GaussianGraph(4, 1.0, 3.0), ExponentialNoise()
    seen = {}

    def posterior(x_t, sigma_bar):
        out = exact_posterior(dist, graph, x_t, sigma_bar)
        seen["last"] = out
        return out

    counter = lsd.CallCounter(X0Score(posterior, graph))
    states = []
    x = lsd.sample(counter, lsd.Schedule.uniform(base, 5), graph=graph, noise=noise, num_samples=6, length=3,
                   batch_size=6, seed=1, callback=lambda step: states.append(step))
    assert counter.calls == 5
    assert torch.equal(x, seen["last"].argmax(-1))
    last = states[-1]
    assert torch.equal(last.x_next, x) and torch.all(last.move.sum(-1) + last.stay == 1.0)


def test_decoding_from_the_score_alone_matches_the_posterior_after_a_short_last_step():
    """Without an attached posterior (exact toy scores, recorded scores) the graph decodes from the
    score by the analytic step to the final time: the same distribution when the step is short."""
    dist = ToyDistribution(4, 3)
    graph, noise = GaussianGraph(4, 1.0, 3.0, final="sample"), ExponentialNoise()
    x = dist.states[torch.tensor([3, 11, 30, 57])]
    t, t_end = 0.05, 1e-5
    sb = noise.total(torch.full((4,), t, dtype=torch.float64))
    score = torch.exp(ExactScore(dist, graph)(x, sb))
    move, stay = transition_probabilities(graph, noise, "euler", t, t_end, x, score, final=True)
    probs = move.scatter(-1, x[..., None], stay[..., None])
    torch.testing.assert_close(probs, exact_posterior(dist, graph, x, sb).exp(), atol=2e-4, rtol=0)


def test_jys_klub_runs_on_a_ctmc_graph(toy):
    from lsd.optimize.jys import jys_schedule

    dist, graph, model, noise = toy
    schedule = jys_schedule(model, graph, noise, dist.sample(64, seed=0), 3, base="tauleap", fine_steps=32,
                            iterations=4)
    assert schedule.nfe == 3 and schedule.base == "tauleap" and all(np.isfinite(schedule.metadata["klub"]))
