"""The selection rules (lsd.selection: spread, left_to_right) and lsd-spread (lsd.optimize.spread)."""
import json
import math

import numpy as np
import pytest
import torch

import lsd
from lsd import AbsorbingGraph, CallCounter, LogLinearNoise, Schedule, ScheduleError, UniformGraph
from lsd.backbones.oracle_exact import oracle_exact_score
from lsd.optimize.spread import distill_spread, grid_times, spread_objective, spread_schedule
from lsd.random import RandomStreams
from lsd.selection import count_stream, distance_to_revealed, spread_positions
from lsd.tasks.oracle_text import OracleText
from lsd.tasks.toy import ExactScore, ToyDistribution, total_variation

NOISE = LogLinearNoise()


@pytest.fixture(scope="module")
def oracle():
    task = OracleText(vocab=8, length=16, successors=2, strict=False)
    model = oracle_exact_score(task)
    return task, model, model.graph


def spread(nfe, strength=math.inf, times=None):
    return spread_schedule("euler", times or Schedule.uniform("euler", nfe).times, strength)


def left_to_right(times):
    return Schedule("euler", times, selection={"rule": "left_to_right"})


def one_token_per_step(length):
    """t_k = (L - k) / L: with exact scores each step's expected count is exactly 1."""
    return [(length - k) / length for k in range(length)] + [1e-5]


def test_reveals_the_scheduled_count_and_everything_by_the_last_step(oracle):
    task, model, graph = oracle
    schedule = spread(5, 2.0)
    seen = []

    def check(step):
        masked = step.x == graph.mask_id
        revealed = (masked & (step.x_next != graph.mask_id)).sum(-1)
        assert ((step.x_next != step.x) <= masked).all()  # only masks move
        if step.index == schedule.nfe - 1:
            assert (revealed == masked.sum(-1)).all()
        else:
            total = step.move.sum(-1)
            expected = torch.where(masked, total / (total + step.stay), 0.0).sum(-1)
            u = RandomStreams(11, step.sample_ids).uniform(count_stream(step.index), 1)[:, 0]
            assert torch.equal(revealed, torch.floor(expected + u).long().clamp(max=masked.sum(-1)))
        seen.append(int(revealed.sum()))

    x = lsd.sample(model, schedule, graph=graph, noise=NOISE, num_samples=9, length=task.length, seed=11,
                   batch_size=9, callback=check)
    assert (x < task.vocab).all() and len(seen) == 5 and sum(seen) == 9 * task.length


def test_farthest_point_spreads_a_single_run():
    g = torch.Generator().manual_seed(0)
    uniforms = lambda P: torch.rand(3, P, 64, generator=g, dtype=torch.float64)  # noqa: E731
    masked = torch.ones(3, 64, dtype=torch.bool)
    order = spread_positions(masked, torch.tensor([8, 8, 8]), math.inf, uniforms)
    gap = lambda picks: min(b - a for a, b in zip(sorted(picks), sorted(picks)[1:]))  # noqa: E731
    for row in order.tolist():
        assert row[0] in (31, 32)  # the first pick splits the run (ends count as revealed) in its middle
        assert gap([-1, *row[:7], 64]) >= 7  # seven picks: binary splits, runs of 7 or 8 masks
        assert gap(row) >= 4  # the eighth splits one of those runs
    # a run between revealed tokens: picks stay inside it and far from its ends and each other
    masked = torch.zeros(1, 64, dtype=torch.bool)
    masked[0, 10:41] = True
    order = spread_positions(masked, torch.tensor([3]), math.inf, lambda P: torch.rand(1, P, 64, generator=g))
    p = sorted(order[0].tolist())
    assert all(10 <= i <= 40 for i in p) and p[1] in (24, 25, 26) and min(p[0] - 9, 41 - p[-1]) >= 6
    assert distance_to_revealed(masked)[0, 25].item() == 16  # nearest revealed: 9 and 41


def test_left_to_right_reveals_the_leftmost_masks_batch_size_invariant(oracle):
    task, model, graph = oracle
    schedule = left_to_right(Schedule.uniform("euler", 6).times)
    revealed = []

    def check(step):
        masked = step.x == graph.mask_id
        new = masked & (step.x_next != graph.mask_id)
        for row_masked, row_new in zip(masked.tolist(), new.tolist()):
            first = [i for i, m in enumerate(row_masked) if m][:sum(row_new)]
            assert [i for i, r in enumerate(row_new) if r] == first  # the leftmost masks, nothing else
        revealed.append(int(new.sum()))

    runs = []
    for bs in (1, 5):
        counter = CallCounter(model)
        runs.append(lsd.sample(counter, schedule, graph=graph, noise=NOISE, num_samples=5, length=task.length,
                               seed=3, batch_size=bs, callback=check))
        assert counter.calls == schedule.nfe * (5 // bs)
    assert torch.equal(runs[0], runs[1]) and (runs[0] < task.vocab).all()
    assert sum(revealed) == 2 * 5 * task.length and max(revealed) > 1  # several per step on a coarse grid


def test_strength_zero_picks_uniformly_random_positions():
    g = torch.Generator().manual_seed(1)
    B, L, n = 4000, 10, 3
    masked = torch.ones(B, L, dtype=torch.bool)
    order = spread_positions(masked, torch.full((B,), n), 0.0, lambda P: torch.rand(B, P, L, generator=g,
                                                                                  dtype=torch.float64))
    freq = torch.bincount(order.flatten(), minlength=L).double() / (B * n)
    assert (freq - 1 / L).abs().max() < 0.015  # uniform: no preference for spread-out positions
    far = spread_positions(masked, torch.full((B,), n), math.inf, lambda P: torch.rand(B, P, L, generator=g,
                                                                                      dtype=torch.float64))
    assert bool(((far[:, 0] == 4) | (far[:, 0] == 5)).all())


def test_batch_size_invariance_reproducibility_and_nfe(oracle):
    task, model, graph = oracle
    schedule = spread(4, 1.0)
    runs = []
    for bs in (1, 7):
        counter = CallCounter(model)
        runs.append(lsd.sample(counter, schedule, graph=graph, noise=NOISE, num_samples=7, length=task.length,
                               seed=5, batch_size=bs))
        assert counter.calls == schedule.nfe * (7 // bs)
    assert torch.equal(runs[0], runs[1])
    again = lsd.sample(model, schedule, graph=graph, noise=NOISE, num_samples=7, length=task.length, seed=5)
    assert torch.equal(again, runs[0])


def test_schedule_json_round_trip_with_and_without_selection(tmp_path):
    l2r = Schedule("euler", [1.0, 0.5, 1e-5], selection={"rule": "left_to_right"})
    l2r.save(tmp_path / "l2r.json")
    assert json.loads((tmp_path / "l2r.json").read_text())["selection"] == {"rule": "left_to_right"}
    assert Schedule.load(tmp_path / "l2r.json") == l2r and l2r.selection == {"rule": "left_to_right"}
    for sel, stored in ((None, None), ({"rule": "spread", "strength": 2.5}, 2.5),
                        ({"rule": "spread", "strength": "inf"}, "inf")):
        s = Schedule("euler", [1.0, 0.5, 1e-5], selection=sel, metadata={"method": "x"})
        path = tmp_path / "s.json"
        s.save(path)
        d = json.loads(path.read_text())
        assert d.get("selection", {}).get("strength") == stored if sel else "selection" not in d
        t = Schedule.load(path)
        assert t == s and t.selection == s.selection
    assert Schedule.load(path).selection == {"rule": "spread", "strength": math.inf}
    old = Schedule.uniform("euler", 2).to_dict()  # a file written before selection existed
    assert "selection" not in old and Schedule.from_dict(old).selection is None
    assert Schedule.uniform("euler", 2) != Schedule("euler", Schedule.uniform("euler", 2).times,
                                                    selection={"rule": "spread"})


@pytest.mark.parametrize("selection, field", [
    ({"rule": "nearest"}, "schedule.selection.rule"),
    ({"rule": "spread", "strength": -1}, "schedule.selection.strength"),
    ({"rule": "spread", "strength": "big"}, "schedule.selection.strength"),
    ({"rule": "spread", "strength": float("nan")}, "schedule.selection.strength"),
    ({"rule": "spread", "width": 2}, "schedule.selection: unknown field"),
    ({"rule": "left_to_right", "strength": 1.0}, "schedule.selection.strength"),
    ("spread", "schedule.selection: expected an object"),
])
def test_invalid_selection_is_refused_naming_the_field(selection, field):
    d = {**Schedule.uniform("euler", 2).to_dict(), "selection": selection}
    with pytest.raises(ScheduleError, match=field.replace(".", r"\.")) as e:
        Schedule.from_dict(d)
    assert "\n" not in str(e.value)


def test_selection_needs_an_absorbing_graph():
    dist = ToyDistribution()
    graph = UniformGraph(dist.vocab)
    counter = CallCounter(ExactScore(dist, graph))
    with pytest.raises(ScheduleError, match="schedule.selection: .*absorbing graph") as e:
        lsd.sample(counter, spread(2), graph=graph, noise=NOISE, num_samples=2, length=dist.length)
    assert counter.calls == 0 and "\n" not in str(e.value)


def test_one_token_per_step_samples_the_data_law_exactly():
    """With one token per step every draw is an exact conditional: the law is the data's, whatever
    positions are chosen. 20000 samples stay within the simulated multinomial-noise bound; two
    steps of the same rule do not (parallel decoding error; with L = 4 and this strongly coupled
    toy no position pair is far enough apart for spreading to help)."""
    dist = ToyDistribution()
    graph = AbsorbingGraph(dist.vocab)
    model = ExactScore(dist, graph)
    n = 20000
    rng = np.random.default_rng(0)
    p = dist.probs.numpy()
    bound = float(np.quantile(0.5 * np.abs(rng.multinomial(n, p, size=2000) / n - p).sum(1), 0.999))
    tv = {}
    for name, schedule in {"exact-inf": spread(4, math.inf, one_token_per_step(dist.length)),
                           "exact-0": spread(4, 0.0, one_token_per_step(dist.length)),
                           "exact-l2r": left_to_right(one_token_per_step(dist.length)),
                           "two-inf": spread(2, math.inf), "two-0": spread(2, 0.0)}.items():
        x = lsd.sample(model, schedule, graph=graph, noise=NOISE, num_samples=n, length=dist.length, seed=2,
                       batch_size=n)
        tv[name] = total_variation(dist.empirical(x), dist.probs)
    assert tv["exact-inf"] < bound and tv["exact-0"] < bound and tv["exact-l2r"] < bound
    assert tv["two-inf"] > 10 * bound and tv["two-0"] > 10 * bound  # two tokens per step: not exact


def test_objective_is_zero_with_one_token_per_step_and_orders_candidates(oracle):
    task, model, graph = oracle
    L = task.length
    exact = spread_objective(model, graph, NOISE, spread(L, math.inf, one_token_per_step(L)), length=L, seed=0,
                             sample_ids=range(8))
    assert abs(exact["objective"]) < 1e-9
    far = spread_objective(model, graph, NOISE, spread(4, math.inf), length=L, seed=0, sample_ids=range(32))
    rand = spread_objective(model, graph, NOISE, spread(4, 0.0), length=L, seed=0, sample_ids=range(32))
    assert 0 < far["objective"] < rand["objective"]


def test_distill_spread_records_its_search_and_costs_exactly_its_nfe(oracle, tmp_path):
    task, model, graph = oracle
    s = distill_spread(model, graph, NOISE, nfe=3, length=task.length, strengths=(0.0, math.inf),
                       grids=("uniform", "lsd+", "geometric:8"), teacher_steps=32, candidates=16, trajectories=8,
                       seed=0, backbone="oracle-test")
    m = s.metadata
    assert s.selection["rule"] == "spread" and s.nfe == 3 and len(m["search"]) == 6
    best = min(m["search"], key=lambda r: r["objective"])
    assert (m["grid"], m["strength"]) == (best["grid"], best["strength"])
    assert m["network_calls"] == m["teacher_calls"] + m["objective_calls"] and m["teacher_calls"] == 32
    assert m["held_out_ids"] == [8, 16] and m["wall_time_s"] > 0
    path = tmp_path / "spread.json"
    s.save(path)
    loaded = Schedule.load(path)
    assert loaded == s
    counter = CallCounter(model)
    lsd.sample(counter, loaded, graph=graph, noise=NOISE, num_samples=4, length=task.length)
    assert counter.calls == 3
    times = grid_times("geometric:8", 3)
    steps = [a - b for a, b in zip(times, times[1:])]
    assert times[0] == 1.0 and times[-1] == 1e-5 and steps[-1] / steps[0] == pytest.approx(8.0)


def test_cli_distill_spread(tmp_path, capsys):
    from lsd.cli import main

    out = tmp_path / "s.json"
    assert main(["--threads", "1", "distill", "--backbone", "toy-absorbing", "--method", "spread", "--nfe", "2",
                 "--teacher-steps", "8", "--candidates", "4", "--trajectories", "4", "--quiet",
                 "--out", str(out)]) == 0
    s = Schedule.load(out)
    assert s.selection["rule"] == "spread" and s.metadata["method"] == "spread" and s.nfe == 2


def test_plan_makes_spread_schedules_on_the_shared_teacher():
    from lsd.backbones.registry import load_backbone
    from lsd.optimize.plan import make_schedules

    bb = load_backbone("toy-absorbing")
    samplers = {"lsd-spread": {"method": "spread", "base": "euler", "nfe": [2]}, "lsd": {"method": "lsd", "nfe": [2]}}
    made = make_schedules(bb, samplers, [2], 0, {"teacher_steps": 16, "trajectories": 4, "candidates": 8,
                                                 "batch_size": 4}, log=lambda *a: None)
    s = made[("lsd-spread", 2)]
    assert s.selection["rule"] == "spread" and s.metadata["sampler"] == "lsd-spread"
    assert s.metadata["teacher_shared"] and s.metadata["teacher_calls"] == 0
