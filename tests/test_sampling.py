"""The sampler against exact ground truth on the enumerable toy (lsd.tasks.toy)."""
import numpy as np
import pytest
import torch

import lsd
from lsd import AbsorbingGraph, CallCounter, GeometricNoise, LogLinearNoise, Schedule, UniformGraph
from lsd.tasks.toy import ExactScore, ToyDistribution, sampler_law, total_variation

# Absorbing with log-linear noise (SEDD text); uniform with geometric noise (SEDD's uniform
# default) and absorbing with geometric noise, where Euler and Tweedie differ.
SETUPS = {
    "absorbing-loglinear": (AbsorbingGraph, LogLinearNoise()),
    "absorbing-geometric": (AbsorbingGraph, GeometricNoise(1e-3, 20.0)),
    "uniform-geometric": (UniformGraph, GeometricNoise(1e-4, 20.0)),
}


def setup(name, vocab=3, length=4):
    graph_cls, noise = SETUPS[name]
    dist, graph = ToyDistribution(vocab, length), graph_cls(vocab)
    return dist, graph, noise, ExactScore(dist, graph)


def sampling_tv_quantile(law, n, q=0.999, reps=2000, seed=0):
    """Quantile of TV(empirical of n exact draws from `law`, `law`): the pure sampling-noise part."""
    rng = np.random.default_rng(seed)
    p = law.numpy() / law.numpy().sum()
    counts = rng.multinomial(n, p, size=reps) / n
    return float(np.quantile(0.5 * np.abs(counts - p).sum(1), q))


@pytest.mark.parametrize("name", list(SETUPS))
@pytest.mark.parametrize("base", ["euler", "tweedie"])
def test_fine_grid_reproduces_the_data(name, base):
    """256 steps, 20000 samples.

    TV(empirical, data) <= TV(empirical, law_M) + TV(law_M, data), where law_M is the exact law
    of the 256-step sampler (`sampler_law`, which includes its O(1/M) discretisation error) and
    the first term is pure multinomial noise, whose 99.9% quantile we simulate. We check the
    sampler draws from law_M (first bound) and that law_M is close to the data (second)."""
    dist, graph, noise, model = setup(name)
    schedule, n = Schedule.uniform(base, 256), 20000
    law = sampler_law(model, schedule, graph, noise, dist.length)
    discretisation = total_variation(law, dist.probs)
    assert discretisation < 0.02  # first order: a few times 1 / M
    x = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=n, length=dist.length,
                   seed=3, batch_size=n)
    emp = dist.empirical(x)
    noise_bound = sampling_tv_quantile(law, n)
    assert total_variation(emp, law) < noise_bound
    assert total_variation(emp, dist.probs) < noise_bound + discretisation


@pytest.mark.parametrize("name", list(SETUPS))
def test_few_steps_show_the_compounding_decoding_error(name):
    dist, graph, noise, model = setup(name)
    n = 20000
    for steps in (1, 2):
        for base in ("euler", "tweedie"):
            schedule = Schedule.uniform(base, steps)
            x = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=n, length=dist.length,
                           batch_size=n)
            bound = sampling_tv_quantile(dist.probs, n)
            # the factorised update samples positions (nearly) independently: far from the data
            assert total_variation(dist.empirical(x), dist.probs) > 10 * bound
            assert total_variation(sampler_law(model, schedule, graph, noise, dist.length), dist.probs) > 0.3


def test_one_tweedie_step_is_exact_for_a_single_position():
    """With L = 1 there is no factorisation error and the analytic step is exact (absorbing);
    on the uniform graph only the start law exp(-sigma_bar(1)) away from uniform remains."""
    dist = ToyDistribution(5, 1, seed=2)
    for graph, noise, tol in [(AbsorbingGraph(5), LogLinearNoise(), 1e-12), (UniformGraph(5), GeometricNoise(), 1e-4)]:
        model = ExactScore(dist, graph)
        law = sampler_law(model, Schedule.uniform("tweedie", 1), graph, noise, 1)
        assert total_variation(law, dist.probs) < tol
        x = lsd.sample(model, Schedule.uniform("tweedie", 1), graph=graph, noise=noise, num_samples=20000,
                       length=1, batch_size=20000)
        assert total_variation(dist.empirical(x), dist.probs) < sampling_tv_quantile(dist.probs, 20000) + tol


@pytest.mark.parametrize("name", list(SETUPS))
def test_euler_error_is_first_order(name):
    dist, graph, noise, model = setup(name)
    tv = [total_variation(sampler_law(model, Schedule.uniform("euler", m), graph, noise, dist.length), dist.probs)
          for m in (16, 64, 256)]
    assert tv[0] > tv[1] > tv[2]
    for a, b in zip(tv, tv[1:]):  # 4x the steps, about a quarter of the error
        assert 0.15 < b / a < 0.4


def test_euler_and_tweedie_coincide_exactly_when_they_should():
    """Log-linear noise + normalised (exact) scores: the two rules are the same step (anchors.md s2)."""
    dist, graph, noise, model = setup("absorbing-loglinear")
    for m in (2, 5):
        e = sampler_law(model, Schedule.uniform("euler", m), graph, noise, dist.length)
        t = sampler_law(model, Schedule.uniform("tweedie", m), graph, noise, dist.length)
        torch.testing.assert_close(e, t, atol=1e-12, rtol=0)
    for name in ("absorbing-geometric", "uniform-geometric"):
        dist, graph, noise, model = setup(name)
        e = sampler_law(model, Schedule.uniform("euler", 4), graph, noise, dist.length)
        t = sampler_law(model, Schedule.uniform("tweedie", 4), graph, noise, dist.length)
        assert total_variation(e, t) > 0.01


@pytest.mark.parametrize("name", ["absorbing-loglinear", "uniform-geometric"])
def test_samples_do_not_depend_on_batch_size(name):
    dist, graph, noise, model = setup(name)
    schedule = Schedule.uniform("tweedie", 6)
    runs = [lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=64, length=dist.length,
                       seed=11, batch_size=b) for b in (1, 7, 64)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    tail = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=14, length=dist.length,
                      seed=11, batch_size=5, first_sample=50)
    assert torch.equal(tail, runs[0][50:])
    other_seed = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=64, length=dist.length, seed=12)
    assert not torch.equal(other_seed, runs[0])


def test_nfe_counts_every_network_call_and_callback_sees_each_step():
    dist, graph, noise, model = setup("absorbing-loglinear")
    counted = CallCounter(model)
    steps = []
    schedule = Schedule.uniform("euler", 5)
    x = lsd.sample(counted, schedule, graph=graph, noise=noise, num_samples=10, length=dist.length,
                   batch_size=4, callback=steps.append)
    assert counted.calls == schedule.nfe * 3  # 3 batches, M calls each, the final step included
    assert [s.index for s in steps[:5]] == list(range(5)) and len(steps) == 15
    assert steps[0].t == 1.0 and steps[4].t_next == schedule.times[-1]
    assert steps[0].log_score.shape == (4, dist.length, graph.dim)
    assert (steps[0].x == graph.mask_id).all()  # sampling starts from the all-mask state
    assert (x < graph.num_tokens).all()  # and leaves no mask behind


def test_coefficients_act_on_the_score():
    dist, graph, noise, model = setup("absorbing-loglinear")
    base = Schedule.uniform("euler", 4)
    same = Schedule("euler", base.times, [1.0] * 4, convention="power")
    torch.testing.assert_close(sampler_law(model, base, graph, noise, 4), sampler_law(model, same, graph, noise, 4))
    # Phi = 0 on the first three steps: nothing unmasks until the last step, which then decodes
    # every position independently from the all-mask state (the one-step sampler).
    frozen = Schedule("euler", base.times, [0.0, 0.0, 0.0, 1.0])
    one_step = Schedule.uniform("euler", 1)
    torch.testing.assert_close(sampler_law(model, frozen, graph, noise, 4), sampler_law(model, one_step, graph, noise, 4))
    # A larger coefficient unmasks more tokens in the first step.
    seen = {}
    for phi in (1.0, 3.0):
        s = Schedule("euler", base.times, [phi, 1, 1, 1])
        lsd.sample(model, s, graph=graph, noise=noise, num_samples=2000, length=4, batch_size=2000,
                   callback=lambda st, phi=phi: seen.setdefault(phi, (st.x_next != graph.mask_id).float().mean().item()))
    assert seen[3.0] > 2 * seen[1.0]


def test_bad_arguments_are_refused():
    dist, graph, noise, model = setup("absorbing-loglinear")
    with pytest.raises(ValueError, match="batch_size"):
        lsd.sample(model, Schedule.uniform("euler", 2), graph=graph, noise=noise, num_samples=4, length=4, batch_size=0)
