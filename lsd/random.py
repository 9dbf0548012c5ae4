"""Counter-based random streams, one per sample.

Every uniform a sampler draws is a pure function of (seed, sample index, stream, counter):
splitmix64 over int64 tensors, turned into float64 with 53 random bits. So samples do not
depend on batch size, batch order or device, and float64 categorical draws are exact to
the last bit of a double (no float32 truncation of the noise, docs/conventions.md section 2).
Streams: the sampler uses stream k for step k and `INIT` for the start state; the `tauleap`
rule also draws one uniform per position and destination from stream `TAULEAP + k` at step k.
"""
from __future__ import annotations

import torch

INIT = -1
TAULEAP = 1 << 40  # stream TAULEAP + k: the Poisson uniforms of step k of a tau-leaping sampler
_M64 = (1 << 64) - 1


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic, as the C original)."""
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def splitmix64_reference(x: int) -> int:
    """Pure-Python splitmix64 on unsigned 64-bit ints: the test oracle for `splitmix64`."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class RandomStreams:
    """Independent uniform streams for the samples `sample_ids` [B] under `seed`."""

    def __init__(self, seed: int, sample_ids: torch.Tensor):
        seed_key = splitmix64(torch.tensor(_signed(int(seed) & _M64), dtype=torch.long))
        self.keys = splitmix64(seed_key ^ sample_ids.to(torch.long))

    def uniform(self, stream: int, *shape: int) -> torch.Tensor:
        """Uniforms in [0, 1), float64, shape [B, *shape], for stream number `stream`."""
        device = self.keys.device
        stream_key = splitmix64(torch.tensor(_signed(int(stream) & _M64), dtype=torch.long, device=device))
        base = splitmix64(self.keys ^ stream_key)
        count = 1
        for n in shape:
            count *= n
        counter = torch.arange(count, dtype=torch.long, device=device) * _GOLDEN
        bits = splitmix64(base[:, None] + counter[None, :])
        return (_shr(bits, 11).to(torch.float64) * 2.0**-53).reshape(-1, *shape)
