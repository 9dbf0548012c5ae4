"""LSD / LSD+ and the temperature baseline on the exact-score toy."""
import itertools
import json

import pytest
import torch

import lsd
from lsd import AbsorbingGraph, GeometricNoise, LogLinearNoise, Schedule, UniformGraph
from lsd.optimize.lsd import best_start, distill, fit_coefficients, perturbed_start
from lsd.optimize.lsd_grid import best_partition
from lsd.optimize.lsd_objective import STARTS, DistillationError, RowLosses, Training, adam_fit, fit_phi
from lsd.optimize.teacher import teacher_rollout
from lsd.tasks.toy import ExactScore, ToyDistribution, sampler_law, total_variation

DIST = ToyDistribution(3, 4)


def toy(graph_cls=AbsorbingGraph, noise=None):
    graph = graph_cls(3)
    return ExactScore(DIST, graph), graph, noise or (LogLinearNoise() if graph.absorbing else GeometricNoise())


@pytest.mark.parametrize("graph_cls", [AbsorbingGraph, UniformGraph])
def test_coupled_student_on_the_teacher_grid_retraces_the_teacher_and_recovers_phi_1(graph_cls):
    model, graph, noise = toy(graph_cls)
    record = teacher_rollout(model, graph, noise, length=4, trajectories=40, steps=16, candidates=16, batch_size=16)
    exact = Training(fit="exact")
    fit = fit_coefficients(model, graph, noise, record, list(range(17)), base="euler", batch_size=16, training=exact)
    assert torch.equal(fit["samples"], record.samples)  # identical states all the way
    # teacher scores are stored in float32: Phi = 1 to float32 precision
    assert fit["coefficients"] == pytest.approx([1.0] * 16, abs=1e-6)
    # Adam from Phi = 1 stays within a few learning-rate steps of it (its updates are scale-free)
    sgd = fit_coefficients(model, graph, noise, record, list(range(17)), base="euler", batch_size=16)
    assert sgd["coefficients"] == pytest.approx([1.0] * 16, abs=0.05)
    # the independent ablation does not retrace the teacher
    loose = fit_coefficients(model, graph, noise, record, list(range(17)), base="euler", coupling="independent",
                             batch_size=16, training=exact)
    assert not torch.equal(loose["samples"], record.samples)


def test_closed_form_phi_is_the_minimiser():
    from scipy.optimize import minimize_scalar

    g = torch.Generator().manual_seed(0)
    s, s_star = torch.rand(500, generator=g, dtype=torch.float64), torch.rand(500, generator=g, dtype=torch.float64)
    phi, loss, loss_one = fit_phi(s, s_star, "scale")
    numeric = minimize_scalar(lambda p: float(((s_star - p * s) ** 2).sum())).x
    assert phi == pytest.approx(numeric, rel=1e-6) and loss <= loss_one
    phi_pow, loss_pow, _ = fit_phi(s, s ** 1.7, "power")
    assert phi_pow == pytest.approx(1.7, rel=1e-3) and loss_pow < 1e-8
    # log space: power is least squares through the origin, scale a mean shift of log Phi
    log_s, log_t = torch.log(s), torch.log(s_star)
    for convention in ("power", "scale"):
        phi_log, loss_log, loss_log_one = fit_phi(log_s, log_t, convention, "log")
        numeric = minimize_scalar(lambda p: float(lsd.optimize.lsd_objective.entry_loss(
            log_s, log_t, torch.tensor(p, dtype=torch.float64), convention, "log")), bounds=(1e-3, 10),
            method="bounded", options={"xatol": 1e-9}).x
        assert phi_log == pytest.approx(numeric, rel=1e-5) and loss_log <= loss_log_one
    assert fit_phi(log_s, 1.3 * log_s, "power", "log")[0] == pytest.approx(1.3)


def _random_losses(convention, space, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, 5, 3, generator=g, dtype=torch.float64) + 0.1
    t = s * (0.6 + 0.3 * torch.rand(n, 5, 3, generator=g, dtype=torch.float64))
    compared = torch.rand(n, 5, 3, generator=g) < 0.7
    if space == "log":
        s, t = torch.log(s), torch.log(t)
    losses = RowLosses(convention, space)
    losses.add(s[:5], t[:5], compared[:5])
    losses.add(s[5:], t[5:], compared[5:])
    return losses, s[compared], t[compared]


@pytest.mark.parametrize("convention,space", [("scale", "score"), ("power", "log"), ("scale", "log"),
                                              ("power", "score")])
def test_adam_converges_to_the_exact_minimiser_on_a_convex_case(convention, space):
    losses, s, t = _random_losses(convention, space)
    exact, exact_loss, _ = fit_phi(s, t, convention, space)
    assert abs(exact - 1.0) > 0.1  # far enough from the start for the test to mean something
    everyone = torch.arange(len(losses))
    # the per-trajectory losses add up to the loss of all entries
    assert float(losses(torch.tensor(exact, dtype=torch.float64), everyone).sum()) == pytest.approx(exact_loss)
    full, updates = adam_fit(losses, Training(epochs=3000, minibatch=len(losses)), seed=0)
    assert updates == 3000 and full == pytest.approx(exact, abs=2e-3)
    # the paper's mini-batches of one trajectory: a noisy neighbourhood of the minimiser
    noisy, updates = adam_fit(losses, Training(epochs=200), seed=0)
    assert updates == 200 * len(losses) and noisy == pytest.approx(exact, abs=0.05)
    # 16 epochs of batch 1 from Phi = 1 cannot move further than lr x updates
    paper, _ = adam_fit(losses, Training(), seed=0)
    assert abs(paper - 1.0) <= 1e-2 * 16 * len(losses) + 1e-9


def test_zero_optimisation_steps_give_uniform_euler_exactly():
    model, graph, noise = toy()
    uniform = Schedule.uniform("euler", 4)
    for training in (Training(epochs=0), Training(lr=0.0)):
        s = distill(model, graph, noise, method="lsd", nfe=4, length=4, teacher_steps=64, candidates=16,
                    trajectories=16, zeta=0.25, seed=3, training=training)
        assert s.coefficients == uniform.coefficients and s.times == uniform.times
        assert s.metadata["training"]["fit"] == "sgd"
        draw = lambda sch: lsd.sample(model, sch, graph=graph, noise=noise, num_samples=32, length=4, seed=5)  # noqa
        assert torch.equal(draw(s), draw(uniform))
    trained = distill(model, graph, noise, method="lsd", nfe=4, length=4, teacher_steps=64, candidates=16,
                      trajectories=16, zeta=0.25, seed=3)
    assert trained.coefficients != uniform.coefficients and trained.metadata["adam_updates"] == [16 * 16] * 4


@pytest.mark.parametrize("graph_cls", [AbsorbingGraph, UniformGraph])
@pytest.mark.parametrize("start", STARTS)
def test_relaxed_start_stays_inside_its_hamming_ball(graph_cls, start):
    dist = ToyDistribution(3, 8)
    graph = graph_cls(3)
    model = ExactScore(dist, graph)
    noise = LogLinearNoise() if graph.absorbing else GeometricNoise()
    record = teacher_rollout(model, graph, noise, length=8, trajectories=24, steps=16, candidates=8, batch_size=24)
    ids, rows, grid = torch.arange(24), slice(0, 24), [0, 4, 8]
    for zeta in (0.0, 0.1, 0.25, 0.5, 1.0):
        if start == "best":
            x, calls = best_start(model, graph, noise, record, grid, list(range(24)), zeta,
                                  Training(start=start, start_candidates=3), base="euler", convention="scale",
                                  coupling="coupled", device="cpu")
            assert calls == 3 * 2
        else:
            x = perturbed_start(graph, record, rows, ids, zeta, record.seed, start)
        changed = x != record.states[0]
        radius = round(zeta * 8)
        assert int(changed.sum(1).max()) <= radius
        if graph.absorbing:  # a revealed position always changes: exactly the radius
            assert bool((changed.sum(1) == radius).all())
        if start == "teacher":
            assert torch.equal(x[changed], record.samples[changed])


def test_exact_fit_reproduces_the_earlier_coefficients_bit_for_bit():
    from pathlib import Path

    reference = json.loads((Path(__file__).parent / "data" / "lsd_exact_reference.json").read_text())["rows"]
    graphs = {"absorbing": AbsorbingGraph, "uniform": UniformGraph}
    for row in reference:
        model, graph, noise = toy(graphs[row["graph"]])
        s = distill(model, graph, noise, method=row["method"], nfe=4, length=4, convention=row["convention"],
                    teacher_steps=64, candidates=16, trajectories=32, zeta=row["zeta"], seed=3,
                    training={"fit": "exact", "start": "marginal", "space": "score"})
        assert [c.hex() for c in s.coefficients] == row["coefficients"], row
        assert [t.hex() for t in s.times] == row["times"], row


def test_training_options_are_checked_and_reach_the_schedule_from_a_sampler_definition():
    from types import SimpleNamespace

    from lsd.optimize.plan import make_schedules

    with pytest.raises(ValueError, match="fit: unknown 'adam'"):
        Training(fit="adam")
    with pytest.raises(ValueError, match="epochs"):
        Training(epochs=-1)
    with pytest.raises(ValueError, match="space"):
        Training.from_dict({"space": "logit"})
    model, graph, noise = toy()
    with pytest.raises(ValueError, match="training: unknown key 'epoch'"):
        distill(model, graph, noise, method="lsd", nfe=4, length=4, teacher_steps=64, candidates=16,
                trajectories=8, training={"epoch": 3})
    bb = SimpleNamespace(model=model, graph=graph, noise=noise, length=4, name="toy")
    samplers = {"lsd-exact": {"method": "lsd", "base": "euler", "fit": "exact", "start": "marginal", "epochs": 3},
                "lsd-power": {"method": "lsd", "base": "euler", "convention": "power"},
                "euler-T0.8": {"method": "uniform", "base": "euler", "temperature": 0.8},
                "euler-phi": {"method": "uniform", "base": "euler", "coefficient": 0.84}}
    made = make_schedules(bb, samplers, [4], 0, {"teacher_steps": 64, "candidates": 16, "trajectories": 8,
                                                 "lr": 0.02}, log=lambda *_: None)
    exact = made[("lsd-exact", 4)].metadata["training"]
    assert (exact["fit"], exact["start"], exact["epochs"], exact["lr"], exact["space"]) == \
        ("exact", "marginal", 3, 0.02, "score")
    assert made[("lsd-exact", 4)].metadata["adam_updates"] == [0] * 4
    power = made[("lsd-power", 4)].metadata["training"]
    assert (power["fit"], power["space"], power["start"]) == ("sgd", "log", "teacher")
    cold = made[("euler-T0.8", 4)]
    assert cold.temperature == 0.8 and cold.times == Schedule.uniform("euler", 4).times
    assert list(cold.coefficients) == [1.0] * 4
    assert list(made[("euler-phi", 4)].coefficients) == [0.84] * 4 and made[("euler-phi", 4)].temperature == 1.0
    with pytest.raises(ValueError, match="samplers.lsd-bad.start"):
        make_schedules(bb, {"lsd-bad": {"method": "lsd", "base": "euler", "start": "oracle"}}, [4], 0,
                       {"teacher_steps": 64, "candidates": 16, "trajectories": 8}, log=lambda *_: None)


def test_best_partition_is_valid_and_optimal_for_any_costs():
    g = torch.Generator().manual_seed(1)
    for trial in range(30):
        G = 7
        cost = torch.rand(G + 1, G + 1, generator=g, dtype=torch.float64) * 10 ** (trial % 5 - 2)
        if trial % 3 == 0:
            cost[torch.rand(G + 1, G + 1, generator=g) < 0.3] = float("inf")
        if trial % 4 == 1:
            cost[0, 1] = float("nan")
        for nfe in range(1, G + 1):
            grid = best_partition(cost, nfe)
            assert grid[0] == 0 and grid[-1] == G and len(grid) == nfe + 1
            assert all(a < b for a, b in zip(grid, grid[1:]))
            if torch.isfinite(cost).all():  # brute force over all grids
                total = lambda gr: sum(float(cost[a, b]) for a, b in zip(gr, gr[1:]))  # noqa: E731
                best = min(total((0, *mid, G)) for mid in itertools.combinations(range(1, G), nfe - 1))
                assert total(grid) == pytest.approx(best)
    with pytest.raises(ValueError, match="nfe"):
        best_partition(torch.zeros(4, 4), 4)


@pytest.mark.parametrize("method", ["lsd", "lsd+"])
@pytest.mark.parametrize("convention", ["scale", "power"])
def test_distilled_schedules_are_valid_and_cost_exactly_their_nfe(method, convention, tmp_path):
    model, graph, noise = toy()
    s = distill(model, graph, noise, method=method, nfe=4, length=4, convention=convention, teacher_steps=64,
                candidates=16, trajectories=32, zeta=0.25, seed=3)
    s.validate()
    assert s.nfe == 4 and s.convention == convention and s.metadata["method"] == method
    assert s.times[0] == 1.0 and s.times[-1] == pytest.approx(1e-5)
    assert s.metadata["network_calls"] == 64 + 4  # one teacher batch, one student batch
    s.save(tmp_path / "s.json")
    assert Schedule.load(tmp_path / "s.json") == s
    counter = lsd.CallCounter(model)
    lsd.sample(counter, s, graph=graph, noise=noise, num_samples=8, length=4)
    assert counter.calls == Schedule.uniform("euler", 4).nfe


def test_zeta_auto_picks_from_the_grid_and_records_the_search():
    model, graph, noise = toy()
    s = distill(model, graph, noise, method="lsd", nfe=4, length=4, teacher_steps=64, candidates=16,
                trajectories=32, zeta="auto")
    search = s.metadata["zeta_search"]
    assert s.metadata["zeta"] in search and search[s.metadata["zeta"]] == min(search.values())


def test_lsd_plus_grid_helps_where_the_uniform_grid_is_poor():
    """Geometric noise puts nearly all the action near t = 1; the uniform grid wastes steps."""
    model, graph, noise = toy(noise=GeometricNoise(1e-3, 20.0))
    plus = distill(model, graph, noise, method="lsd+", nfe=4, length=4, teacher_steps=256, candidates=64,
                   trajectories=128, zeta=0.0)
    tv = lambda s: total_variation(sampler_law(model, s, graph, noise, 4), DIST.probs)  # noqa: E731
    assert tv(plus) < 0.7 * tv(Schedule.uniform("euler", 4))


def test_a_diverging_fit_stops_with_a_clear_error(tmp_path):
    model, graph, noise = toy()

    def broken(x, sigma_bar):
        out = model(x, sigma_bar)
        return torch.where(sigma_bar[:, None, None] < 0.5, float("nan"), out)

    with pytest.raises(DistillationError, match="diverged"):
        distill(broken, graph, noise, method="lsd", nfe=4, length=4, teacher_steps=16, candidates=16,
                trajectories=8, zeta=0.0)


def test_cli_distill_writes_nothing_when_it_fails(tmp_path, capsys):
    from lsd.cli import main

    out = tmp_path / "s.json"
    assert main(["--threads", "1", "distill", "--backbone", "toy-absorbing", "--method", "lsd", "--nfe", "3",
                 "--teacher-steps", "64", "--candidates", "16", "--trajectories", "8", "--quiet",
                 "--out", str(out)]) == 2
    assert "nfe (3) must divide" in capsys.readouterr().err and not out.exists()
    assert main(["--threads", "1", "distill", "--backbone", "toy-absorbing", "--method", "lsd+", "--nfe", "3",
                 "--teacher-steps", "64", "--candidates", "16", "--trajectories", "8", "--quiet",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["nfe"] == 3


def test_temperature_reshapes_destinations_only():
    model, graph, noise = toy()
    base = Schedule.uniform("euler", 4)
    cold = Schedule(base.base, base.times, temperature=0.5)
    x = torch.full((2, 4), 3)
    sb = noise.total(torch.full((2,), 1.0, dtype=torch.float64))
    from lsd.step import step_probabilities

    m1, s1 = step_probabilities(graph, noise, base, 0, x, model(x, sb))
    m2, s2 = step_probabilities(graph, noise, cold, 0, x, model(x, sb))
    torch.testing.assert_close(m1.sum(-1), m2.sum(-1))  # as much probability moves
    torch.testing.assert_close(s1, s2)
    p1, p2 = m1 / m1.sum(-1, keepdim=True), m2 / m2.sum(-1, keepdim=True)
    torch.testing.assert_close(p2, p1 ** 2 / (p1 ** 2).sum(-1, keepdim=True))  # T = 1/2 squares


def test_match_temperature_reaches_the_target_entropy():
    from lsd.metrics.entropy import unigram_entropy
    from lsd.optimize.temperature import match_temperature

    dist = ToyDistribution(4, 5, seed=4)
    graph, noise = AbsorbingGraph(4), LogLinearNoise()
    model = ExactScore(dist, graph)
    target = Schedule(*(lambda u: (u.base, u.times))(Schedule.uniform("euler", 4)), temperature=0.6)
    matched = match_temperature(model, graph, noise, target, length=5, num_samples=400, seed=1, iterations=8)
    assert matched.metadata["in_range"] and matched.temperature == pytest.approx(0.6, rel=0.15)
    run = lambda s: unigram_entropy(lsd.sample(model, s, graph=graph, noise=noise, num_samples=400, length=5,  # noqa
                                               seed=1))
    assert abs(run(matched) - run(target)) < 0.02
