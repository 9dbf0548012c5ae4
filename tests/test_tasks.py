"""Tasks: OracleText (exact NLL, entropy, forward-backward denoiser), Countdown, Digits, registry.

Every exact quantity is checked against an independent computation: plain-Python products
of chain probabilities over all V^L sequences of tiny configurations (`strict=False` allows
vocabularies below 64), hand-built countdown sequences, and the raw sklearn arrays.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

import lsd
from lsd.backbones.oracle_exact import OracleDenoiser, oracle_exact_score
from lsd.tasks import TASKS, Countdown, Digits, OracleText, make_task
from lsd.tasks.digits import save_grid, to_images


def tiny(vocab=4, length=5, successors=2, leak=0.05, seed=1):
    return OracleText({"vocab": vocab, "length": length, "successors": successors, "leak": leak, "seed": seed},
                      strict=False)


def brute_force_probs(task):
    """All V^L sequences (itertools.product order) and their probabilities, in plain Python floats."""
    T = task.transition.tolist()
    pi = task.initial.tolist()
    seqs = list(itertools.product(range(task.vocab), repeat=task.length))
    probs = []
    for s in seqs:
        p = pi[s[0]]
        for a, b in zip(s[:-1], s[1:]):
            p *= T[a][b]
        probs.append(p)
    return torch.tensor(seqs, dtype=torch.long), torch.tensor(probs, dtype=torch.float64)


# ---------------------------------------------------------------------------------- OracleText
def test_oracle_defaults_and_structure():
    task = OracleText()
    assert task.config() == {"vocab": 128, "length": 64, "successors": 4, "leak": 1e-3, "seed": 0}
    T, V = task.transition, task.vocab
    assert T.dtype == torch.float64 and T.shape == (V, V)
    torch.testing.assert_close(T.sum(1), torch.ones(V, dtype=torch.float64), rtol=0, atol=1e-14)
    floor = task.leak / V
    assert torch.allclose(T.min(), torch.tensor(floor, dtype=torch.float64))
    assert ((T > 2 * floor).sum(1) == task.successors).all()  # exactly k likely successors per token
    pi = task.initial
    assert abs(pi.sum().item() - 1) < 1e-14 and (pi > 0).all()
    torch.testing.assert_close(pi @ T, pi, rtol=0, atol=1e-15)  # stationary
    # Regression pin: the default language must never change silently (benchmarks depend on it).
    assert task.fingerprint() == "576e3527941768f7"


def test_oracle_determinism_by_seed():
    a, b, c = OracleText(seed=5), OracleText({"seed": 5}), OracleText(seed=6)
    assert torch.equal(a.transition, b.transition) and a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert torch.equal(a.sample_corpus(8, seed=3), b.sample_corpus(8, seed=3))
    assert not torch.equal(a.sample_corpus(8, seed=3), a.sample_corpus(8, seed=4))
    assert torch.equal(a.sample_corpus(8, seed=3), a.sample_corpus(20, seed=3)[:8])


@pytest.mark.parametrize("config, match", [
    ({"vocab": 5}, r"oracle-text\.vocab: must be an integer in \[64, 512\], got 5"),
    ({"vocab": 1024}, r"oracle-text\.vocab"),
    ({"length": 129}, r"oracle-text\.length"),
    ({"length": 0}, r"oracle-text\.length"),
    ({"successors": 0}, r"oracle-text\.successors"),
    ({"leak": 0.0}, r"oracle-text\.leak"),
    ({"leak": 1.5}, r"oracle-text\.leak"),
    ({"seed": -1}, r"oracle-text\.seed"),
    ({"vocab": 64.0}, r"oracle-text\.vocab"),
    ({"colour": 1}, r"unknown config key\(s\) \['colour'\]"),
])
def test_oracle_config_errors(config, match):
    with pytest.raises(ValueError, match=match) as err:
        OracleText(config)
    assert "\n" not in str(err.value)


def test_oracle_small_vocab_needs_override():
    with pytest.raises(ValueError, match="vocab"):
        OracleText(vocab=4)
    assert tiny().vocab == 4


def test_oracle_nll_and_entropy_match_enumeration():
    task = tiny()
    seqs, probs = brute_force_probs(task)
    assert abs(probs.sum().item() - 1) < 1e-12
    torch.testing.assert_close(task.nll(seqs), -torch.log(probs), rtol=0, atol=1e-12)
    entropy = -(probs * probs.log()).sum().item()
    assert abs(task.sequence_entropy() - entropy) < 1e-12
    assert abs(task.entropy_rate() - entropy / task.length) < 1e-12
    # h = H(x_2 | x_1) by enumeration over the first two positions
    p2 = task.initial[:, None] * task.transition
    h = -(p2 * torch.log(p2 / task.initial[:, None])).sum().item()
    assert abs(task.conditional_entropy() - h) < 1e-12


def test_oracle_corpus_follows_the_chain():
    # Tiny chain, all 27 sequences: chi-square goodness of fit of 20000 seeded draws.
    task = tiny(vocab=3, length=3, successors=2, leak=0.1, seed=2)
    seqs, probs = brute_force_probs(task)
    x = task.sample_corpus(20000, seed=0)
    index = (x * torch.tensor([9, 3, 1])).sum(1)
    counts = torch.bincount(index, minlength=27).numpy()
    assert stats.chisquare(counts, probs.numpy() * len(x)).pvalue > 1e-4


def test_oracle_corpus_nll_matches_entropy():
    # Corpus sequences are i.i.d., so the mean NLL is within a few standard errors of its
    # expectation L * entropy_rate (CLT; 5 SE has a two-sided false-alarm rate of 6e-7 and
    # the draw is seeded, so this is deterministic).
    task = OracleText()
    nll = task.nll(task.sample_corpus(4000, seed=11))
    se = nll.std().item() / math.sqrt(len(nll))
    assert abs(nll.mean().item() - task.sequence_entropy()) < 5 * se
    assert 1.0 < task.entropy_rate() < 1.3


def test_oracle_leak_keeps_random_sequences_finite_and_bad():
    task = OracleText()
    rand = torch.randint(0, task.vocab, (256, task.length), generator=torch.Generator().manual_seed(0))
    nll = task.nll(rand) / task.length
    assert torch.isfinite(nll).all()
    # every transition has probability >= leak / V, the first token >= min(pi)
    bound = (-task.initial.log().min().item() + (task.length - 1) * math.log(task.vocab / task.leak)) / task.length
    assert (nll <= bound + 1e-9).all()
    corpus = task.nll(task.sample_corpus(256, seed=0)) / task.length
    assert nll.min() > corpus.max() + 3.0  # far worse than every corpus sequence
    assert nll.mean() > 8 * task.entropy_rate()


def test_oracle_input_errors():
    task = OracleText()
    with pytest.raises(ValueError, match=r"expected a LongTensor \[n, 64\]"):
        task.nll(torch.zeros(2, 63, dtype=torch.long))
    with pytest.raises(ValueError, match="no masks"):
        task.nll(torch.full((2, 64), 128, dtype=torch.long))


# ---------------------------------------------------------------------------- exact denoiser
def brute_force_posterior(task, seqs, probs, x_t):
    """p(x0_i = y | x_t) [L, V] by summing sequence probabilities consistent with x_t."""
    observed = x_t != task.vocab
    consistent = ((seqs == x_t) | ~observed).all(1)
    p = probs * consistent
    out = torch.zeros(task.length, task.vocab, dtype=torch.float64)
    for i in range(task.length):
        out[i] = torch.bincount(seqs[:, i], weights=p, minlength=task.vocab)
    return out / p.sum()


def test_denoiser_matches_enumeration():
    task = tiny(vocab=4, length=5, successors=2, leak=0.05, seed=1)
    seqs, probs = brute_force_probs(task)
    M = task.vocab
    x_t = torch.tensor([
        [M, M, M, M, M],
        [0, M, M, M, 3],
        [M, 2, M, 1, M],
        [1, 1, M, 0, 2],
        [3, 0, 2, 1, 1],  # nothing masked
        [M, M, M, M, 2],
    ])
    den = OracleDenoiser(task)
    log_p = den(x_t, torch.full((len(x_t),), 0.7, dtype=torch.float64))
    assert log_p.shape == (len(x_t), task.length, task.vocab) and log_p.dtype == torch.float64
    assert torch.isfinite(log_p).all() and log_p.min() >= -1e4
    for b in range(len(x_t)):
        expected = brute_force_posterior(task, seqs, probs, x_t[b])
        torch.testing.assert_close(log_p[b].exp(), expected, rtol=0, atol=1e-10)
    # The absorbing posterior does not depend on sigma_bar, nor on the rest of the batch.
    other = den(x_t, torch.full((len(x_t),), 5.0, dtype=torch.float64))
    assert torch.equal(log_p, other)
    torch.testing.assert_close(den(x_t[2:3], torch.ones(1, dtype=torch.float64)), log_p[2:3], rtol=0, atol=1e-15)


def test_denoiser_matches_enumeration_second_chain():
    task = tiny(vocab=5, length=4, successors=3, leak=0.01, seed=7)
    seqs, probs = brute_force_probs(task)
    gen = torch.Generator().manual_seed(0)
    x0 = seqs[torch.multinomial(probs, 12, replacement=True, generator=gen)]
    mask = torch.rand(x0.shape, generator=gen) < 0.6
    x_t = torch.where(mask, task.vocab, x0)
    post = OracleDenoiser(task).posterior(x_t)
    for b in range(len(x_t)):
        torch.testing.assert_close(post[b], brute_force_posterior(task, seqs, probs, x_t[b]), rtol=0, atol=1e-10)


def test_denoiser_full_mask_gives_stationary_marginals():
    task = OracleText()
    x_t = torch.full((2, task.length), task.vocab, dtype=torch.long)
    post = OracleDenoiser(task).posterior(x_t)
    torch.testing.assert_close(post, task.initial.expand_as(post), rtol=0, atol=1e-12)


def test_oracle_exact_score_convention():
    task = OracleText()
    model = oracle_exact_score(task)
    assert isinstance(model, lsd.DenoiserScore) and model.graph.absorbing and model.graph.dim == task.vocab + 1
    x0 = task.sample_corpus(3, seed=0)
    masked = torch.rand(x0.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    x_t = torch.where(masked, task.vocab, x0)
    sigma_bar = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    log_s = model(x_t, sigma_bar)
    assert log_s.shape == (3, task.length, task.vocab + 1) and torch.isfinite(log_s).all()
    assert (log_s.gather(-1, x_t[..., None]) == 0).all()  # current token's entry is log 1
    # exact scores are normalised at masked positions: sum_y s_y = 1 / expm1(sigma_bar)
    total = log_s[..., :task.vocab].exp().sum(-1)
    expected = (1 / torch.expm1(sigma_bar))[:, None].expand_as(total)
    torch.testing.assert_close(total[masked], expected[masked], rtol=1e-12, atol=0)


def test_parallel_decoding_visibly_hurts():
    # With exact scores, 8 uniform Euler steps decode about 2 neighbours per step jointly and
    # independently; 1024 steps are close to exact ancestral sampling.
    task = OracleText(vocab=64, length=16, seed=3)
    model, noise = oracle_exact_score(task), lsd.LogLinearNoise()

    def nll_per_token(steps):
        x = lsd.sample(model, lsd.Schedule.uniform("euler", steps), graph=model.graph, noise=noise,
                       num_samples=32, length=task.length, seed=0)
        v = task.nll(x) / task.length
        return v.mean().item(), v.std().item() / math.sqrt(len(v))

    few, _ = nll_per_token(8)
    many, se = nll_per_token(1024)
    assert abs(many - task.entropy_rate()) < 4 * se
    assert few > many + 0.5, (few, many)


# --------------------------------------------------------------------------------- Countdown
def test_countdown_hand_built_violations():
    task = Countdown(length=6)
    x = torch.tensor([
        [3, 2, 1, 0, 5, 4],    # clean; ends mid-countdown: the last token has no successor
        [3, 2, 2, 1, 0, 0],    # (2, 2) breaks the rule once
        [0, 7, 0, 0, 3, 1],    # (7, 0) and (3, 1): 2 of 5
        [5, 5, 5, 5, 5, 5],    # every transition
        [0, 0, 0, 0, 0, 31],   # zeros may be followed by anything
        [1, 0, 31, 30, 29, 7],  # (29, 7)
    ])
    assert task.violates(x).tolist() == [False, True, True, True, False, True]
    torch.testing.assert_close(task.violation_share(x),
                               torch.tensor([0, 1, 2, 5, 0, 1], dtype=torch.float64) / 5, rtol=0, atol=0)
    assert task.violations(x).shape == (6, 5)


def test_countdown_corpus():
    task = Countdown()
    assert (task.vocab, task.length) == (32, 256) and task.graph_type == "absorbing"
    x = task.sample_corpus(500, seed=0)
    assert x.shape == (500, 256) and x.dtype == torch.long
    assert x.min() >= 0 and x.max() <= 31
    assert not task.violates(x).any() and (task.violation_share(x) == 0).all()
    assert torch.equal(x, task.sample_corpus(500, seed=0)) and not torch.equal(x, task.sample_corpus(500, seed=1))
    # Countdown starts (first token and every token after a 0) are uniform over 0..31.
    starts = torch.cat([x[:, 0], x[:, 1:][x[:, :-1] == 0]])
    counts = torch.bincount(starts, minlength=32).numpy()
    assert stats.chisquare(counts).pvalue > 1e-4
    # Random tokens nearly always break the rule.
    rand = torch.randint(0, 32, (100, 256), generator=torch.Generator().manual_seed(0))
    assert task.violates(rand).all() and task.violation_share(rand).mean() > 0.9


def test_countdown_errors():
    task = Countdown()
    with pytest.raises(ValueError, match="mask left behind"):
        task.violates(torch.full((1, 256), 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['k'\]"):
        Countdown(k=3)
    with pytest.raises(ValueError, match=r"countdown\.length"):
        Countdown(length=1)


# ------------------------------------------------------------------------------------ Digits
def test_digits_split_and_levels():
    from sklearn.datasets import load_digits

    raw = load_digits().data.astype(np.int64)
    task = Digits()
    assert (task.vocab, task.length, task.graph_type) == (17, 64, "uniform")
    assert len(task.train) + len(task.test) == len(raw) == 1797 and len(task.test) == 359
    assert sorted(task.train_index.tolist() + task.test_index.tolist()) == list(range(1797))
    assert np.array_equal(task.train.numpy(), raw[task.train_index.numpy()])
    assert task.train.min() == 0 and task.train.max() == 16 and task.train.dtype == torch.long
    again, other = Digits(seed=0), Digits(seed=1)
    assert torch.equal(again.test_index, task.test_index) and again.fingerprint() == task.fingerprint()
    assert not torch.equal(other.test_index, task.test_index)
    s = task.sample_corpus(100, seed=2)
    assert s.shape == (100, 64) and torch.equal(s, task.sample_corpus(100, seed=2))
    assert len({tuple(r) for r in task.sample_corpus(len(task.train), seed=0).tolist()}) == len(
        {tuple(r) for r in task.train.tolist()})
    with pytest.raises(ValueError, match=r"digits\.sample_corpus"):
        task.sample_corpus(len(task.train) + 1)
    with pytest.raises(ValueError, match=r"digits\.test_fraction"):
        Digits(test_fraction=1.0)


def test_digits_images_and_grid(tmp_path):
    task = Digits()
    imgs = to_images(task.test[:10])
    assert imgs.shape == (10, 8, 8) and imgs.min() >= 0 and imgs.max() <= 1
    np.testing.assert_array_equal(imgs[3].reshape(-1), task.test[3].numpy() / 16)
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 16\]"):
        to_images(torch.full((1, 64), 17))
    path = tmp_path / "sub" / "grid.png"
    save_grid(task.test[:10], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary left behind
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[:2] == ((3 * 9 + 1) * 8, (4 * 9 + 1) * 8)  # ceil(sqrt(10)) = 4 columns, 3 rows, 8 px per pixel


# ---------------------------------------------------------------------------------- registry
def test_registry():
    assert set(TASKS) == {"oracle-text", "countdown", "digits"}
    assert make_task("oracle-text", vocab=64, length=8).config()["vocab"] == 64
    assert make_task("countdown").length == 256
    assert isinstance(make_task("digits", seed=1), Digits)
    for name in TASKS:
        assert make_task(name).make_graph().num_tokens == TASKS[name]().vocab
    with pytest.raises(ValueError, match=r"task: unknown 'cifar'; choose one of") as err:
        make_task("cifar")
    assert "\n" not in str(err.value)
