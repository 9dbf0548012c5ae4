import torch

from lsd.random import RandomStreams, splitmix64, splitmix64_reference


def test_splitmix64_matches_the_unsigned_reference():
    values = [0, 1, 2, 12345, 2**62 + 7, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]
    signed = torch.tensor([v - 2**64 if v >= 2**63 else v for v in values], dtype=torch.long)
    got = [int(v) & (2**64 - 1) for v in splitmix64(signed)]
    assert got == [splitmix64_reference(v) for v in values]


def test_streams_are_per_sample_and_per_stream():
    a = RandomStreams(7, torch.arange(5)).uniform(0, 3, 2)
    b = RandomStreams(7, torch.tensor([3, 1])).uniform(0, 3, 2)
    assert a.dtype == torch.float64 and a.shape == (5, 3, 2)
    assert torch.equal(a[[3, 1]], b)  # a sample's stream does not depend on its batch
    assert not torch.equal(a, RandomStreams(8, torch.arange(5)).uniform(0, 3, 2))
    assert not torch.equal(a, RandomStreams(7, torch.arange(5)).uniform(1, 3, 2))


def test_uniforms_look_uniform():
    u = RandomStreams(0, torch.arange(200)).uniform(3, 500).flatten()
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 5 * (1 / 12 / u.numel()) ** 0.5
    # 53 random bits: far more distinct values than float32 could hold in [0, 1)
    assert (u * 2**53 % 2**29 != 0).float().mean() > 0.99
    hist = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert (hist - 0.1).abs().max() < 0.01
