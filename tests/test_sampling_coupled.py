"""Coupled evaluation sampling (`lsd.sample(..., coupling="coupled")`): every sampler of a seed shares
each sample's clock and token draws, so each keeps its own law while sample i of two samplers
stays close. Checked against the exact law of the enumerable toy (lsd.tasks.toy)."""
import numpy as np
import pytest
import torch

import lsd
from lsd import AbsorbingGraph, LogLinearNoise, Schedule, UniformGraph
from lsd.tasks.toy import ExactScore, ToyDistribution, sampler_law, total_variation


def toy(graph_cls=AbsorbingGraph):
    dist = ToyDistribution(3, 4)
    graph = graph_cls(3)
    return dist, graph, LogLinearNoise(), ExactScore(dist, graph)


def sampling_tv_quantile(law, n, q=0.999, reps=2000, seed=0):
    """Quantile of TV(empirical of n exact draws from `law`, `law`): the pure sampling-noise part."""
    rng = np.random.default_rng(seed)
    p = law.numpy() / law.numpy().sum()
    counts = rng.multinomial(n, p, size=reps) / n
    return float(np.quantile(0.5 * np.abs(counts - p).sum(1), q))


def learned_like(nfe: int) -> Schedule:
    """A non-uniform grid with coefficients != 1, as a distilled sampler has."""
    times = [1 - (1 - 1e-5) * (k / nfe) ** 1.5 for k in range(nfe + 1)]
    return Schedule(base="euler", times=times, coefficients=[1.0 + 0.1 * (k % 3) for k in range(nfe)])


@pytest.mark.parametrize("schedule", [Schedule.uniform("euler", 4), Schedule.uniform("tweedie", 8), learned_like(4)],
                         ids=["euler4", "tweedie8", "learned4"])
def test_coupled_sampler_keeps_its_law(schedule):
    """TV(empirical, exact law of this few-step sampler) within the multinomial noise bound, coupled
    as independent; and both equally far from the data law (the sampler's own discretisation)."""
    dist, graph, noise, model = toy()
    n = 20000
    law = sampler_law(model, schedule, graph, noise, dist.length)
    bound = sampling_tv_quantile(law, n)
    discretisation = total_variation(law, dist.probs)
    for coupling in ("independent", "coupled"):
        x = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=n, length=dist.length, seed=5,
                       batch_size=n, coupling=coupling)
        emp = dist.empirical(x)
        assert total_variation(emp, law) < bound, coupling
        assert total_variation(emp, dist.probs) < bound + discretisation, coupling


def test_coupled_samples_are_batch_size_invariant_and_deterministic():
    dist, graph, noise, model = toy()
    schedule = learned_like(4)
    runs = [lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=50, length=dist.length, seed=2,
                       batch_size=b, coupling="coupled") for b in (50, 7, 1)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    tail = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=20, length=dist.length, seed=2,
                      first_sample=30, coupling="coupled")
    assert torch.equal(tail, runs[0][30:])
    other = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=50, length=dist.length, seed=3,
                       coupling="coupled")
    assert not torch.equal(other, runs[0])


def test_coupling_makes_samplers_of_a_seed_agree_sample_by_sample():
    """Sample i of a 4-step and of a 64-step sampler: equal far more often when coupled."""
    dist, graph, noise, model = toy()
    agree = {}
    for coupling in ("independent", "coupled"):
        a, b = (lsd.sample(model, Schedule.uniform("euler", nfe), graph=graph, noise=noise, num_samples=4000,
                           length=dist.length, seed=1, batch_size=4000, coupling=coupling) for nfe in (4, 64))
        agree[coupling] = float((a == b).all(-1).double().mean())
    assert agree["coupled"] > agree["independent"] + 0.3, agree


def test_default_is_independent_and_other_graphs_are_unchanged():
    dist, graph, noise, model = toy()
    schedule = Schedule.uniform("euler", 4)
    default = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=64, length=dist.length, seed=4)
    independent = lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=64, length=dist.length, seed=4,
                             coupling="independent")
    assert torch.equal(default, independent)
    # uniform graph: positions jump repeatedly, no clock to share; coupled = the per-step streams
    dist, graph, noise, model = toy(UniformGraph)
    runs = [lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=64, length=dist.length, seed=4,
                       coupling=c) for c in ("independent", "coupled")]
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="coupling must be one of"):
        lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=4, length=dist.length, coupling="paired")


def test_sample_command_takes_the_coupling(tmp_path):
    import json

    from lsd.backbones.registry import load_backbone
    from lsd.cli import main
    from lsd.io import load_samples

    path = tmp_path / "euler4.json"
    Schedule.uniform("euler", 4).save(path)
    outs = {}
    for coupling in ("coupled", "independent"):
        out = str(tmp_path / f"{coupling}.safetensors")
        assert main(["--threads", "1", "sample", "--backbone", "toy-absorbing", "--schedule", str(path),
                     "--num-samples", "32", "--seed", "1", "--coupling", coupling, "--quiet", "--out", out]) == 0
        assert json.loads(open(out + ".json").read())["coupling"] == coupling
        outs[coupling] = load_samples(out)[0]
    bb = load_backbone("toy-absorbing")
    direct = lsd.sample(bb.model, Schedule.uniform("euler", 4), graph=bb.graph, noise=bb.noise, num_samples=32,
                        length=bb.length, seed=1, coupling="coupled")
    assert torch.equal(outs["coupled"], direct) and not torch.equal(outs["coupled"], outs["independent"])


@pytest.mark.parametrize("schedule", [learned_like(4), Schedule.uniform("tweedie", 8)], ids=["learned4", "tweedie8"])
def test_coupled_sparse_steps_equal_the_dense_ones(schedule):
    """The default (sparse, masked rows only) coupled step is bit for bit the dense specification."""
    dist, graph, noise, model = toy()
    runs = [lsd.sample(model, schedule, graph=graph, noise=noise, num_samples=500, length=dist.length, seed=6,
                       coupling="coupled", dense=dense) for dense in (False, True)]
    assert torch.equal(runs[0], runs[1])
