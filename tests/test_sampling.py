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
    """Log-linear noise + normalised (exact) scores: the two rules are the same step (docs/conventions.md section 2)."""
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


# Sparse steps (lsd.sparse_step.sparse_step) against the dense specification, bit for bit -----------
import lsd.sparse_step  # noqa: E402
from lsd.sparse_step import exact_rows, sparse_step, step_move_factor  # noqa: E402
from lsd.step import dense_step, step_probabilities  # noqa: E402


@pytest.fixture
def one_thread():
    """Bit-identity is claimed on one CPU thread (torch may split one row's float64 sum between threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RandomScores:
    """A deterministic stand-in network: log scores over a wide range that depend on the whole state."""

    def __init__(self, graph, spread=3.0, normalised=True, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(graph.dim, graph.dim, generator=g) * spread
        self.graph, self.normalised = graph, normalised

    def __call__(self, x, sigma_bar):
        scores = self.table[x] + (x.float().mean(-1) / self.graph.dim)[:, None, None]
        if self.graph.absorbing and self.normalised:  # SEDD's output: log p(x0 | x_t) - log(e^sigma_bar - 1)
            real = torch.log_softmax(scores[..., :-1], -1) - torch.log(torch.expm1(sigma_bar.float()))[:, None, None]
            scores = torch.cat([real, torch.zeros_like(scores[..., :1])], -1)
        return scores


SPARSE_CASES = [  # graph, noise, base, steps, schedule options
    ("absorbing", LogLinearNoise(), "euler", 1, {}),
    ("absorbing", LogLinearNoise(), "euler", 4, {}),
    ("absorbing", LogLinearNoise(), "tweedie", 32, {}),
    ("absorbing", GeometricNoise(1e-3, 20.0), "euler", 6, {"coefficients": [0.5, 1.3, 0.0, 2.0, 1.0, 0.8]}),
    ("absorbing", GeometricNoise(1e-3, 20.0), "tweedie", 6, {"coefficients": [0.5, 1.3, 0.7, 2.0, 1.0, 0.8],
                                                             "convention": "power"}),
    ("uniform", GeometricNoise(1e-4, 20.0), "euler", 5, {}),
    ("uniform", GeometricNoise(1e-4, 20.0), "euler", 16, {"coefficients": [1.5] * 16, "convention": "power"}),
]


@pytest.mark.parametrize("case", range(len(SPARSE_CASES)))
@pytest.mark.parametrize("normalised", [True, False])
def test_sparse_steps_give_the_dense_samples_bit_for_bit(case, normalised, one_thread, monkeypatch):
    kind, noise, base, steps, options = SPARSE_CASES[case]
    graph = AbsorbingGraph(37) if kind == "absorbing" else UniformGraph(29)
    model = RandomScores(graph, spread=2.0 if normalised else 7.0, normalised=normalised)
    grid = Schedule.uniform(base, steps)
    schedule = Schedule(base, grid.times, **options) if options else grid
    assert lsd.sparse_step.supports_sparse_step(graph, schedule)
    built = []  # rows the sparse path builds in float64, against the candidates it had
    real_exact_rows = lsd.sparse_step.exact_rows
    monkeypatch.setattr(lsd.sparse_step, "exact_rows", lambda *a: built.append(a[6].shape[0]) or real_exact_rows(*a))
    n = 11 if base == "euler" else 22  # tweedie: also batches of 20, where torch vectorises e^delta - 1
    kwargs = dict(graph=graph, noise=noise, num_samples=n, length=19, seed=5, batch_size=4 if base == "euler" else 20)
    dense = lsd.sample(model, schedule, dense=True, **kwargs)
    assert not built
    sparse = lsd.sample(model, schedule, **kwargs)
    assert torch.equal(sparse, dense)
    assert built  # the sparse path ran, building rows only where positions may move
    if kind == "absorbing" and normalised and steps >= 16:  # a small step moves few masks: few rows are built
        assert sum(built) < 0.5 * n * 19 * steps


def crafted_streams(u_move, u_pick):
    """A stand-in for RandomStreams that returns chosen uniforms for the step's stream."""

    class Streams:
        def uniform(self, stream, *shape):
            return torch.stack([u_move, u_pick], -1)

    return Streams()


@pytest.mark.parametrize("kind,base,convention", [("absorbing", "euler", "scale"), ("absorbing", "tweedie", "power"),
                                                  ("uniform", "euler", "scale")])
def test_sparse_step_decides_like_the_dense_draw_at_the_boundary(kind, base, convention, one_thread):
    """Uniforms placed on, and one or a few ulps either side of, each position's dense move mass:
    the float32 estimate must defer every such position to its exact float64 row."""
    graph = AbsorbingGraph(300) if kind == "absorbing" else UniformGraph(300)
    noise, B, L = LogLinearNoise(), 6, 40
    schedule = Schedule(base, Schedule.uniform(base, 4).times, [1.1, 0.9, 1.2, 1.0], convention=convention)
    model = RandomScores(graph, spread=4.0)
    g = torch.Generator().manual_seed(1)
    x = torch.where(torch.rand(B, L, generator=g) < 0.7, graph.dim - 1, torch.randint(0, graph.num_tokens, (B, L),
                                                                                       generator=g))
    for k in range(schedule.nfe):
        log_score = model(x, noise.total(torch.full((B,), schedule.times[k], dtype=torch.float64)))
        move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
        total = move.sum(-1)
        offsets = torch.tensor([-2.0 ** 31, -1.0, 0.0, 1.0, 2.0 ** 31], dtype=torch.float64)[torch.arange(L) % 5]
        u_move = (total / (total + stay).clamp_min(1e-300) * (1.0 + offsets * 2.0 ** -52)).clamp(0.0, 1.0 - 2.0 ** -53)
        u_move = torch.where(torch.arange(L) % 7 == 6, torch.rand(B, L, dtype=torch.float64, generator=g), u_move)
        streams = crafted_streams(u_move, torch.rand(B, L, dtype=torch.float64, generator=g))
        want = dense_step(graph, noise, schedule, k, x, log_score, streams)
        assert torch.equal(sparse_step(graph, noise, schedule, k, x, log_score, streams), want)
        assert (want != x).any()
        x = want


@pytest.mark.parametrize("kind,base,convention", [("absorbing", "euler", "scale"), ("absorbing", "tweedie", "scale"),
                                                  ("absorbing", "euler", "power"), ("uniform", "euler", "power")])
def test_exact_rows_are_the_dense_rows_even_for_non_finite_scores(kind, base, convention, one_thread):
    graph = AbsorbingGraph(50) if kind == "absorbing" else UniformGraph(50)
    noise = GeometricNoise(1e-3, 20.0)
    n = 12
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(n, graph.dim, generator=g) * 30
    rows[0, 3], rows[1, 7], rows[2] = float("inf"), float("nan"), -float("inf")  # overflow, NaN, all scores zero
    rows[3, -1], rows[4, 0] = float("inf"), 1e30  # a non-finite or huge score in the weight-0 column (absorbing)
    rows[5] = 800.0  # float64 e^800 overflows
    x = torch.full((n,), graph.dim - 1) if graph.absorbing else torch.randint(0, graph.dim, (n,), generator=g)
    if not graph.absorbing:
        x[4] = 0
    for k, coefficients in ((0, [1.0, 1.0]), (1, [1.0, 0.7]), (0, [2.5, 1.0])):
        schedule = Schedule(base, [1.0, 0.4, 1e-5], coefficients, convention=convention)
        factor = step_move_factor(noise, base, schedule.times[k], schedule.times[k + 1])
        move, stay = exact_rows(graph, base, coefficients[k], convention, k == 1, factor, x, rows)
        want_move, want_stay = step_probabilities(graph, noise, schedule, k, x[None], rows[None])
        assert torch.equal(move.isnan(), want_move[0].isnan()) and torch.equal(stay.isnan(), want_stay[0].isnan())
        assert torch.equal(move.nan_to_num(-1.0), want_move[0].nan_to_num(-1.0))
        assert torch.equal(stay.nan_to_num(-1.0), want_stay[0].nan_to_num(-1.0))


def test_callbacks_and_unsupported_schedules_take_the_dense_path(monkeypatch):
    dist, graph, noise, model = setup("absorbing-loglinear")
    monkeypatch.setattr(lsd.sampling, "sparse_step", lambda *a: pytest.fail("sparse path taken"))
    for schedule in (Schedule("euler", Schedule.uniform("euler", 3).times, temperature=0.7),
                     Schedule("euler", Schedule.uniform("euler", 3).times, selection={"rule": "spread"})):
        lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=3, length=dist.length)
    lsd.sample(model, Schedule.uniform("euler", 3), graph=graph, noise=noise, num_samples=3, length=dist.length,
               callback=lambda step: None)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_sparse_steps_match_for_network_outputs_of_other_precisions(dtype, one_thread):
    graph, noise = AbsorbingGraph(300), LogLinearNoise()
    scores = RandomScores(graph, spread=3.0)
    model = lambda x, sigma_bar: scores(x, sigma_bar).to(dtype)  # noqa: E731
    for base in ("euler", "tweedie"):
        kwargs = dict(graph=graph, noise=noise, num_samples=6, length=24, seed=2, batch_size=3)
        schedule = Schedule.uniform(base, 12)
        assert torch.equal(lsd.sample(model, schedule, **kwargs), lsd.sample(model, schedule, dense=True, **kwargs))


@pytest.mark.parametrize("base,noise", [("euler", LogLinearNoise()), ("tweedie", GeometricNoise(1e-3, 20.0))])
def test_sparse_teacher_rollout_is_the_dense_one_bit_for_bit(base, noise, one_thread, monkeypatch):
    from lsd.optimize import teacher

    graph = AbsorbingGraph(120)
    model = RandomScores(graph, spread=3.0)
    kwargs = dict(length=20, trajectories=5, steps=48, base=base, candidates=6, seed=3, batch_size=3)
    used = []
    real_step = teacher.sparse_teacher_step
    monkeypatch.setattr(teacher, "sparse_teacher_step", lambda *a: used.append(1) or real_step(*a))
    sparse = teacher.teacher_rollout(model, graph, noise, **kwargs)
    assert len(used) == 2 * 48  # every step of both batches took the sparse path
    dense = teacher.teacher_rollout(model, graph, noise, dense=True, **kwargs)
    assert len(used) == 2 * 48
    for name in ("states", "log_scores", "cum_move", "samples"):
        assert torch.equal(getattr(sparse, name), getattr(dense, name)), name
