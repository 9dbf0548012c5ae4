"""`lsd train`: the losses against brute force and exact scores, the training loop (checkpoints,
resume, determinism), the CLI path, the optional DiT features and the committed checkpoints."""
import argparse
import itertools
import json
import math

import pytest
import torch
from safetensors.torch import load_file

import lsd
from lsd.backbones.dit import DiT, DiTConfig
from lsd.backbones.hub import BackboneNotAvailable, load_dit, save_dit
from lsd.backbones.hub_config import from_hub_config, to_hub_config
from lsd.backbones.tauldr_io import load_tauldr_dir
from lsd.backbones.trained import TRAINED, load_trained
from lsd.tasks.toy import ExactScore, ToyDistribution
from lsd.training import (RECIPES, diffusion_loss, get_recipe, make_task, masked_cross_entropy, sample_times,
                          score_entropy, train)
from lsd.training.command import configure_parser, run
from lsd.training.losses import _k

GRAPHS = {"absorbing": (lsd.AbsorbingGraph, lsd.LogLinearNoise), "uniform": (lsd.UniformGraph, lsd.GeometricNoise)}


# losses ----------------------------------------------------------------------------------------

def brute_force_score_entropy(log_score, x0, x_t, sigma_bar, graph):
    """Score entropy from its definition, one term at a time: for every position i and y != x_t[i],
    the ratio of the whole-sequence forward probabilities q(x_t with x_i := y | x0) / q(x_t | x0)."""
    B, L = x0.shape
    out = torch.zeros(B, L, dtype=torch.float64)
    for b in range(B):
        kernel = graph.transition(sigma_bar[b:b + 1].double())[0]  # [dim, V]: q(y | v)

        def seq_prob(x):
            return math.prod(float(kernel[x[j], x0[b, j]]) for j in range(L))

        base = seq_prob(x_t[b].tolist())
        weights = graph.reverse_weights(x_t[b:b + 1])[0]
        for i in range(L):
            for y in range(graph.dim):
                if y == int(x_t[b, i]) or weights[i, y] == 0:
                    continue
                changed = x_t[b].tolist()
                changed[i] = y
                r = seq_prob(changed) / base
                s = float(log_score[b, i, y])
                k = r * (math.log(r) - 1.0) if r > 0 else 0.0
                out[b, i] += float(weights[i, y]) * (math.exp(s) - r * s + k)
    return out


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_score_entropy_matches_brute_force(graph_name):
    V, L, B = 3, 4, 6
    graph = GRAPHS[graph_name][0](V)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, V, (B, L), generator=g)
    sigma_bar = torch.tensor([0.05, 0.3, 1.0, 2.0, 4.0, 0.7], dtype=torch.float64)
    x_t = graph.corrupt(x0, sigma_bar, torch.rand(B, L, 2, generator=g, dtype=torch.float64))
    if graph_name == "uniform":  # make sure both cases (x_t == x0 and x_t != x0) occur
        x_t[0, 0], x_t[1, 1] = (x0[0, 0] + 1) % V, x0[1, 1]
    else:
        x_t[0, 0], x_t[1, 1] = V, x0[1, 1]
    log_score = torch.randn(B, L, graph.dim, generator=g, dtype=torch.float64)
    fast = score_entropy(log_score, x0, x_t, sigma_bar, graph)
    slow = brute_force_score_entropy(log_score, x0, x_t, sigma_bar, graph)
    assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-10)
    assert (fast >= 0).all()
    # the loss vanishes exactly at s = r (one x0: the ratios themselves are the minimiser)
    assert float(_k(torch.tensor(1.0))) == -1.0 and float(_k(torch.tensor(0.0))) == 0.0


def toy_expected_loss(dist, graph, sigma, log_score_fn):
    """E_{x0 ~ p, x_t ~ q(. | x0)} sum_i score entropy, by enumeration of x0 and x_t."""
    dim, L = graph.dim, dist.length
    states_t = torch.tensor(list(itertools.product(range(dim), repeat=L)), dtype=torch.long)
    kernel = graph.transition(torch.tensor(sigma, dtype=torch.float64))  # [dim, V]
    q = torch.ones(len(states_t), len(dist.states), dtype=torch.float64)
    for j in range(L):
        q = q * kernel[states_t[:, j]][:, dist.states[:, j]]
    joint = q * dist.probs[None]  # [S_t, S_0]
    keep = joint > 0
    it, i0 = keep.nonzero(as_tuple=True)
    sb = torch.full((len(states_t),), sigma, dtype=torch.float64)
    log_score = log_score_fn(states_t, sb)
    per = score_entropy(log_score[it], dist.states[i0], states_t[it], sb[it], graph).sum(-1)
    return (joint[it, i0] * per).sum()


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_exact_score_minimises_the_expected_loss(graph_name):
    dist = ToyDistribution(vocab=3, length=3)
    graph = GRAPHS[graph_name][0](3)
    exact = ExactScore(dist, graph)
    g = torch.Generator().manual_seed(1)
    for sigma in (0.2, 1.0, 3.0):
        base = exact(torch.zeros(1, 3, dtype=torch.long), torch.tensor([sigma], dtype=torch.float64))  # warm
        del base
        best = toy_expected_loss(dist, graph, sigma, exact)
        for scale in (0.3, 0.05):
            noise = {}

            def perturbed(x, sb):
                key = x.shape
                if key not in noise:
                    noise[key] = scale * torch.randn(*x.shape, graph.dim, generator=g, dtype=torch.float64)
                return exact(x, sb) + noise[key]

            assert toy_expected_loss(dist, graph, sigma, perturbed) > best + 1e-6
        for shift in (-0.1, 0.1):  # a uniform shift of every log score is worse too
            assert toy_expected_loss(dist, graph, sigma, lambda x, sb: exact(x, sb) + shift) > best + 1e-6
        # and the gradient at the exact score vanishes
        states = None

        def leaf(x, sb):
            nonlocal states
            states = exact(x, sb).clone().requires_grad_(True)
            return states

        toy_expected_loss(dist, graph, sigma, leaf).backward()
        assert states.grad.abs().max() < 1e-9


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_exact_score_wins_the_monte_carlo_training_loss(graph_name):
    """The training loss itself (random times, corruption and data, common random numbers)."""
    dist = ToyDistribution(vocab=3, length=4)
    graph_cls, noise_cls = GRAPHS[graph_name]
    graph, noise = graph_cls(3), noise_cls()
    exact = ExactScore(dist, graph)
    n = 8000
    x0 = dist.sample(n, seed=3)
    g = torch.Generator().manual_seed(4)
    t = sample_times(n, 1e-3, g)
    u = torch.rand(n, 4, 2, generator=g, dtype=torch.float64)
    losses = {}
    for name, shift in (("exact", 0.0), ("up", 0.4), ("down", -0.4)):
        losses[name] = float(diffusion_loss(lambda x, sb: exact(x, sb) + shift, x0, t, u, graph, noise,
                                            "score_entropy").mean())
    assert losses["up"] > losses["exact"] + 0.01 and losses["down"] > losses["exact"] + 0.01
    # an ELBO (sigma(t)-weighted DSE), tight for exact scores: its mean is the entropy of p up to
    # Monte-Carlo noise (standard error about 0.03 absorbing, 0.07 uniform at this n)
    entropy = float(-(dist.probs * dist.probs.log()).sum())
    assert abs(losses["exact"] - entropy) < 0.25, (losses["exact"], entropy)


def test_x0_cross_entropy_is_the_posterior_log_loss():
    """x0_ce: sum over positions of -log p(x0_i | x_t); the exact posterior beats a perturbed one
    in expectation over (x0, x_t)."""
    dist = ToyDistribution(4, 2)
    graph, noise = lsd.GaussianGraph(4, 1.0, 3.0), lsd.ExponentialNoise()
    n = 1000
    x0 = dist.sample(n, seed=2)
    t = torch.full((n,), 0.2, dtype=torch.float64)
    u = torch.rand(n, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    states = dist.states

    def exact(x_t, sigma_bar):
        kernel = graph.transition(sigma_bar[:1])[0]  # [y, v]
        like = kernel[x_t[:, None, :], states[None]].prod(-1) * dist.probs  # [n, S]
        post = torch.stack([like @ torch.nn.functional.one_hot(states[:, i], 4).double() for i in range(2)], 1)
        return torch.log(post / post.sum(-1, keepdim=True))

    loss = diffusion_loss(exact, x0, t, u, graph, noise, "x0_ce")
    x_t = graph.corrupt(x0, noise.total(t), u)
    torch.testing.assert_close(loss, -exact(x_t, noise.total(t)).gather(-1, x0[..., None])[..., 0].sum(-1))
    flat = diffusion_loss(lambda x, s: torch.log_softmax(0.5 * exact(x, s), -1), x0, t, u, graph, noise, "x0_ce")
    assert float(loss.mean()) < float(flat.mean())


def test_masked_cross_entropy_prefers_the_exact_denoiser():
    dist = ToyDistribution(vocab=3, length=4)
    graph, noise = lsd.AbsorbingGraph(3), lsd.LogLinearNoise()
    exact = ExactScore(dist, graph)

    def denoiser(temperature):
        def log_p(x, sb):  # log p(x0 | x_t) = log s + log expm1(sigma_bar) over real tokens
            lp = exact(x, sb)[..., :3] + torch.log(torch.expm1(sb))[:, None, None]
            return torch.log_softmax(lp / temperature, dim=-1)
        return log_p

    n = 8000
    x0 = dist.sample(n, seed=5)
    g = torch.Generator().manual_seed(6)
    t, u = sample_times(n, 1e-3, g), torch.rand(n, 4, 2, generator=g, dtype=torch.float64)
    losses = {temp: float(diffusion_loss(denoiser(temp), x0, t, u, graph, noise, "masked_ce").mean())
              for temp in (1.0, 0.7, 1.4)}
    assert losses[1.0] < min(losses[0.7], losses[1.4])
    entropy = float(-(dist.probs * dist.probs.log()).sum())
    assert abs(losses[1.0] - entropy) < 0.25, (losses[1.0], entropy)
    x_t = torch.tensor([[3, 0, 3, 1]])
    ce = masked_cross_entropy(torch.log(torch.full((1, 4, 3), 1 / 3)), torch.tensor([[2, 0, 1, 1]]), x_t, 3)
    assert torch.allclose(ce, torch.tensor([[math.log(3), 0, math.log(3), 0]], dtype=torch.float64))


def test_sample_times_are_stratified():
    t = sample_times(8, 1e-3, torch.Generator().manual_seed(0))
    strata = torch.floor((t - 1e-3) / (1 - 1e-3) * 8).long()
    assert sorted(strata.tolist()) == list(range(8))


# the training loop -----------------------------------------------------------------------------

def tiny_recipe(**train):
    recipe = get_recipe("tiny-sedd-text")
    recipe["name"] = "tiny-test"
    recipe["task"]["config"] = {"vocab": 64, "length": 16}
    recipe["model"].update(hidden_size=32, n_heads=2, n_blocks=1, cond_dim=16, conv_kernel=3)
    recipe["train"].update(steps=6, batch_size=8, warmup=2, eval_every=3, eval_batch=8, checkpoint_every=100,
                           **train)
    return recipe


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    recipe = tiny_recipe()
    train(recipe, tmp_path / "full", progress=False)

    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "cut", progress=False, callback=interrupt)
    assert (tmp_path / "cut" / "state.pt").is_file() and not (tmp_path / "cut" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="--resume"):
        train(recipe, tmp_path / "cut", progress=False)
    train(recipe, tmp_path / "cut", progress=False, resume=True)
    assert not (tmp_path / "cut" / "state.pt").exists()
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    rec_full = json.loads((tmp_path / "full" / "training.json").read_text())
    rec_cut = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert rec_full["steps"] == rec_cut["steps"] == 6 and rec_full["last"] == rec_cut["last"]


def test_training_is_deterministic_from_the_seed(tmp_path):
    recipe = tiny_recipe(ema=0.0)
    train(recipe, tmp_path / "a", progress=False, steps=3)
    train(recipe, tmp_path / "b", progress=False, steps=3)
    recipe["seed"] = 1
    train(recipe, tmp_path / "c", progress=False, steps=3)
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.attn_qkv.weight"], c["blocks.0.attn_qkv.weight"])
    assert not (tmp_path / "a" / "state.pt").exists()


def test_resume_refuses_another_recipe(tmp_path):
    recipe = tiny_recipe()
    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path, progress=False, callback=lambda s, l: (_ for _ in ()).throw(KeyboardInterrupt))
    recipe["train"]["lr"] = 1e-4
    with pytest.raises(ValueError, match="different recipe"):
        train(recipe, tmp_path, progress=False, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(recipe, tmp_path / "empty", progress=False, resume=True)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_trains_through_the_cli_and_loads(tmp_path, name):
    parser = configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--recipe", name, "--out", str(tmp_path), "--steps", "2", "--threads", "1",
                              "--quiet"])
    run(args)
    assert torch.get_num_threads() == 1
    record = json.loads((tmp_path / "training.json").read_text())
    task = make_task(record["recipe"])
    assert record["steps"] == 2 and record["seed"] == RECIPES[name]["seed"]
    assert record["task"]["fingerprint"] == task.fingerprint()
    assert record["recipe"]["train"]["steps"] == 2 and record["recipe"]["model"] == RECIPES[name]["model"]
    assert {"torch", "git", "lsd"} <= set(record["provenance"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lsd_training"]["recipe"] == name
    if RECIPES[name].get("architecture") == "tauldr":  # the tauLDR UNet on the recipe's own graph
        from safetensors import safe_open

        with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:  # stored as the recipe says
            stored = {f.get_tensor(k).dtype for k in f.keys()} - {torch.int64}
        assert stored == {getattr(torch, RECIPES[name].get("weights_dtype", "float32"))}
        net = load_tauldr_dir(tmp_path)
        assert all(p.dtype == torch.float32 for p in net.parameters())  # computed in float32
        assert net.config.levels == task.vocab and net.config.length == task.length
        assert net.config.graph == RECIPES[name]["graph"]
    else:
        net = load_dit(tmp_path)
        assert net.config.tokens == task.vocab and net.config.graph == task.graph_type
    assert not (tmp_path / "state.pt").exists()


def test_cli_threads_default_leaves_the_global_flag_alone():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    sub = parser.add_subparsers(dest="command")
    configure_parser(sub.add_parser("train"))
    assert parser.parse_args(["--threads", "3", "train", "--recipe", "tiny-sedd-text"]).threads == 3
    assert parser.parse_args(["train", "--recipe", "tiny-sedd-text", "--threads", "2"]).threads == 2


# optional DiT features ---------------------------------------------------------------------------

def test_dit_local_mixing_and_positions_are_optional(tmp_path):
    base = dict(tokens=20, hidden_size=32, n_heads=2, n_blocks=2, cond_dim=16, length=12)
    plain = DiTConfig(**base)
    hub = to_hub_config(plain)
    assert not {"conv_kernel", "pos_embed", "rotary_values"} & set(hub["model"])
    assert not [k for k in DiT(plain).state_dict() if "conv" in k or "pos_embed" in k]
    cfg = DiTConfig(**base, conv_kernel=5, pos_embed=True, rotary_values=True)
    hub = to_hub_config(cfg)
    assert hub["model"]["conv_kernel"] == 5 and hub["model"]["pos_embed"] is True
    assert hub["model"]["rotary_values"] is True
    assert from_hub_config(hub) == cfg
    torch.manual_seed(0)
    net = DiT(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    state = net.state_dict()
    assert state["blocks.1.conv.weight"].shape == (32, 1, 5) and state["pos_embed"].shape == (12, 32)
    save_dit(net, tmp_path)
    loaded = load_dit(tmp_path)
    x = torch.randint(0, 21, (2, 12))
    sb = torch.tensor([0.5, 2.0], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x, sb), loaded(x, sb))
        # absolute positions: the same tokens at another place give another output
        same = torch.full((1, 12), 3)
        out = net(same, sb[:1])
        assert (out[0, 5] - out[0, 6]).abs().max() > 1e-4
        # rotary values change what attention reads (no parameters added)
        other = DiT(DiTConfig(**base, conv_kernel=5, pos_embed=True))
        assert other.state_dict().keys() == net.state_dict().keys()
        other.load_state_dict(net.state_dict())
        assert not torch.allclose(other.eval()(x, sb), net(x, sb))
    with pytest.raises(ValueError, match="position table"):
        net(torch.zeros(1, 13, dtype=torch.long), sb[:1])
    for bad in (4, -1, True):
        with pytest.raises(ValueError, match="conv_kernel"):
            DiTConfig(**base, conv_kernel=bad)


# committed checkpoints -------------------------------------------------------------------------

@pytest.mark.parametrize("name", TRAINED)
def test_committed_checkpoints_load_and_sample(name):
    bb = load_trained(name)
    record = bb.info
    task = make_task(get_recipe(name))
    assert record["task_fingerprint"] == task.fingerprint() and record["steps"] == RECIPES[name]["train"]["steps"]
    assert record["task"] == task.name and record["task_config"] == task.config()
    assert (bb.length, bb.graph.num_tokens) == (task.length, task.vocab)
    counter = lsd.CallCounter(bb.model)
    x = lsd.sample(counter, lsd.Schedule.uniform("euler", 4), graph=bb.graph, noise=bb.noise, num_samples=4,
                   length=bb.length, seed=0)
    assert counter.calls == 4 and x.shape == (4, task.length)
    assert int(x.min()) >= 0 and int(x.max()) < task.vocab


def test_missing_checkpoint_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LSD_CHECKPOINTS", str(tmp_path))
    with pytest.raises(BackboneNotAvailable, match="lsd train --recipe tiny-radd-text"):
        load_trained("tiny-radd-text")
    with pytest.raises(ValueError, match="unknown"):
        load_trained("tiny-nothing")
