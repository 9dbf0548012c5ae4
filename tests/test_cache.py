"""RADD output caching: fewer network calls, bit-identical samples."""
import torch

import lsd
from lsd.backbones.dit import DiTConfig, as_score_model, build_dit


def test_cached_radd_sampling_is_bit_identical_and_saves_calls():
    torch.manual_seed(0)
    cfg = DiTConfig(tokens=32, hidden_size=32, n_heads=2, n_blocks=1, cond_dim=16, length=12, kind="radd")
    net = build_dit(cfg).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    schedule = lsd.Schedule.uniform("euler", 128)  # many steps: most change no sequence
    runs = {}
    for cache in (False, True):
        model = as_score_model(net, cache=cache)
        counter = lsd.CallCounter(model)
        runs[cache] = (lsd.sample(counter, schedule, graph=graph, noise=noise, num_samples=10, length=12,
                                  batch_size=5, seed=4), model, counter.calls)
    assert torch.equal(runs[False][0], runs[True][0])
    assert runs[False][2] == runs[True][2] == 2 * 128  # NFE: every step is a call of the score model
    assert runs[False][1].network_calls == 2 * 128
    cached = runs[True][1]
    # a forward only at the first step and at steps that unmask something: at most 5 x 12 events
    # per batch of 5 sequences of 12 positions, against 128 steps
    assert 0 < cached.network_calls <= 2 * (1 + 5 * 12) < 2 * 128
    assert cached.rows_evaluated <= 10 + 10 * 12 < 10 * 128


def test_oracle_exact_uses_the_cache():
    from lsd.backbones.registry import load_backbone

    bb = load_backbone("oracle-exact")
    x = lsd.sample(bb.model, lsd.Schedule.uniform("euler", 256), graph=bb.graph, noise=bb.noise,
                   num_samples=2, length=bb.length, seed=0)
    assert (x < bb.graph.num_tokens).all()
    assert bb.model.network_calls < 256
