"""Jump Your Steps (lsd.optimize.jys) on the exact-score toy."""
import json
import math

import pytest

from lsd import AbsorbingGraph, CallCounter, GeometricNoise, LogLinearNoise, Schedule, UniformGraph
from lsd.optimize.jys import KLUBEstimator, golden_section, interval_klub, jys_schedule, teacher_data
from lsd.tasks.toy import ExactScore, ToyDistribution, sampler_law, total_variation

# The same noises as tests/test_sampling.py: log-linear, and geometric where Euler and Tweedie differ.
NOISES = {"loglinear": LogLinearNoise(), "geometric": GeometricNoise(1e-3, 20.0)}


@pytest.fixture(scope="module")
def toy():
    dist = ToyDistribution(3, 4)
    graph = AbsorbingGraph(3)
    return dist, graph, ExactScore(dist, graph), dist.sample(4096, seed=1)


@pytest.mark.parametrize("noise_name", list(NOISES))
def test_klub_is_nonnegative_vanishes_for_short_steps_and_grows_with_length(toy, noise_name):
    dist, graph, model, data = toy
    noise = NOISES[noise_name]
    est = KLUBEstimator(model, graph, noise, data[:2048], batch_size=2048)
    t_a = 0.95
    lengths = [1e-7, 0.05, 0.15, 0.3, 0.5, 0.7]
    parts = [est.interval(t_a, t_a - d) for d in lengths]
    for p in parts:
        assert p["klub"] >= 0 and p["hazard"] >= -1e-12 and p["decoding"] >= -1e-12
        assert not p["final"]
    values = [p["klub"] for p in parts]
    assert values[0] < 1e-5 * values[-1]
    assert all(b > a for a, b in zip(values, values[1:])), values
    # The last step (ending at t_min) is estimated too, and is the largest from the same start.
    last = est.interval(t_a, 1e-5)
    assert last["final"] and last["klub"] >= values[-1]


def test_klub_of_a_single_position_is_the_closed_form_hazard_term():
    """L = 1: no context, so no decoding error; with log-linear noise the exact unmasking hazard
    is 1/tau and the frozen one 1/t_a, and P(masked at tau) = (1 - eps) tau, so

        KLUB = int (1 - eps) tau [1/t_a - 1/tau + (1/tau) log(t_a/tau)] dtau
             = (1 - eps) [(t_a^2 - t_b^2) / (2 t_a) + t_b log(t_b / t_a)]."""
    dist = ToyDistribution(3, 1)
    graph, noise = AbsorbingGraph(3), LogLinearNoise()
    data = dist.sample(16384, seed=0)
    t_a, t_b = 0.9, 0.3
    got = interval_klub(ExactScore(dist, graph), graph, noise, data, t_a, t_b, quadrature=8, batch_size=16384)
    exact = (1 - noise.eps) * ((t_a**2 - t_b**2) / (2 * t_a) + t_b * math.log(t_b / t_a))
    assert abs(got["decoding"]) < 1e-12
    assert got["hazard"] == pytest.approx(exact, rel=0.03)  # Monte Carlo over the masks: ~1% sd


def test_klub_matches_a_fine_quadrature_and_does_not_depend_on_batching(toy):
    dist, graph, model, data = toy
    noise = NOISES["geometric"]  # a narrow peak in time: the clean-fraction variable handles it
    coarse = interval_klub(model, graph, noise, data[:1024], 0.99, 1e-5, batch_size=1024)["klub"]
    fine = interval_klub(model, graph, noise, data[:1024], 0.99, 1e-5, batch_size=1024, quadrature=24)["klub"]
    assert abs(coarse - fine) < 0.05 * fine
    batched = interval_klub(model, graph, noise, data[:1024], 0.99, 1e-5, batch_size=100)["klub"]
    assert batched == pytest.approx(coarse, rel=1e-9)
    # Pinsker: a one-step sampler's TV to the data needs KL >= 2 TV^2; the bound must cover it.
    law = sampler_law(model, Schedule("euler", [0.99, 1e-5]), graph, noise, dist.length)
    assert fine >= 2 * total_variation(law, dist.probs) ** 2


@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 8])
def test_jys_schedule_is_a_valid_schedule(toy, nfe):
    dist, graph, model, data = toy
    counter = CallCounter(model)
    s = jys_schedule(counter, graph, NOISES["geometric"], data[:1024], nfe, fine_steps=128, batch_size=1024)
    assert isinstance(s, Schedule) and s.nfe == nfe and s.base == "euler"
    assert s.times[0] == 1.0 and s.times[-1] == 1e-5
    assert all(b < a for a, b in zip(s.times, s.times[1:]))
    assert s.coefficients == (1.0,) * nfe
    fine = Schedule.uniform("euler", 128).times
    assert all(any(abs(t - f) < 1e-12 for f in fine) for t in s.times)  # nested in the fine grid
    md = s.metadata
    assert md["method"] == "jys" and md["nfe"] == nfe and md["fine_steps"] == 128 and md["iterations"] == 32
    assert len(md["klub"]) == nfe and all(v >= 0 for v in md["klub"])
    assert md["network_calls"] == counter.calls > 0 and md["data_size"] == 1024 and md["seed"] == 0
    assert md["wall_time_s"] > 0 and "torch" in md["provenance"]
    again = Schedule.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.times == s.times and again.metadata["klub"] == md["klub"]


@pytest.mark.parametrize("nfe", [4, 8])
def test_jys_beats_the_uniform_grid_on_the_geometric_toy(toy, nfe):
    """Exact sampler laws, Euler rule, geometric noise: JYS's grid is no worse than the uniform one."""
    dist, graph, model, data = toy
    noise = NOISES["geometric"]
    jys = jys_schedule(model, graph, noise, data, nfe, batch_size=4096)
    tv_jys = total_variation(sampler_law(model, jys, graph, noise, dist.length), dist.probs)
    uniform = Schedule.uniform("euler", nfe)
    tv_uniform = total_variation(sampler_law(model, uniform, graph, noise, dist.length), dist.probs)
    assert tv_jys <= tv_uniform, (tv_jys, tv_uniform, jys.times)


def test_jys_is_deterministic_given_the_seed(toy):
    dist, graph, model, data = toy
    noise = NOISES["loglinear"]
    kwargs = dict(fine_steps=64, batch_size=512)
    a = jys_schedule(model, graph, noise, data[:512], 4, seed=3, **kwargs)
    b = jys_schedule(model, graph, noise, data[:512], 4, seed=3, **kwargs)
    assert a.times == b.times and a.metadata["klub"] == b.metadata["klub"]
    c = jys_schedule(model, graph, noise, data[:512], 4, seed=3, base="tweedie", **kwargs)
    assert c.base == "tweedie" and c.times == a.times  # base only records the rule


def test_golden_section_finds_the_minimum_of_a_unimodal_function():
    calls = []

    def f(j):
        calls.append(j)
        return (j - 377) ** 2

    best, values = golden_section(f, 0, 1024, iterations=32, tol_points=0.25)
    assert best == 377 and len(calls) == len(set(calls)) < 25
    best, _ = golden_section(lambda j: -j, 10, 12, iterations=32, tol_points=0.25)
    assert best == 11

    def two_minima(j):  # a shallow minimum at 300 and the global one at 950
        return min((j - 300) ** 2 + 100, (j - 950) ** 2)

    assert golden_section(two_minima, 0, 1024, iterations=32, tol_points=0.25)[0] == 300  # plain: trapped
    assert golden_section(two_minima, 0, 1024, iterations=32, tol_points=0.25, scan=8)[0] == 950


def test_uniform_graph_and_teacher_data_run(toy):
    dist = ToyDistribution(3, 4)
    graph, noise = UniformGraph(3), GeometricNoise()
    model = ExactScore(dist, graph)
    data = teacher_data(model, graph, noise, 64, dist.length, steps=32)
    assert data.shape == (64, 4) and data.max() < 3
    s = jys_schedule(model, graph, noise, data, 3, fine_steps=32, batch_size=64)
    assert s.nfe == 3 and s.metadata["graph"]["type"] == "uniform" and all(v >= 0 for v in s.metadata["klub"])


def test_jys_rejects_bad_input(toy):
    dist, graph, model, data = toy
    with pytest.raises(ValueError, match="fine_steps"):
        jys_schedule(model, graph, LogLinearNoise(), data[:8], 16, fine_steps=8)
    masked = data[:8].clone()
    masked[0, 0] = graph.mask_id
    with pytest.raises(ValueError, match="no masks"):
        jys_schedule(model, graph, LogLinearNoise(), masked, 2, fine_steps=8)
    with pytest.raises(ValueError, match="bound"):
        jys_schedule(model, graph, LogLinearNoise(), data[:8], 2, fine_steps=8, bound="nope")
