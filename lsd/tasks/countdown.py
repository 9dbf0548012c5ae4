"""Countdown (Zhao et al. 2024, "Informed correctors for discrete diffusion models"; also JYS).

A sequence is a concatenation of countdowns k, k - 1, ..., 0, each with k drawn uniformly
from [0, vocab - 1], truncated to `length` tokens; it always starts at the top of a
countdown. Defaults: 256 tokens over 32 values (conventions.md section 7). Absorbing graph.

Rule: every non-zero token is followed by itself minus one. A zero may be followed by
anything (a new countdown starts). The last position has no successor, so it can never
violate; a sequence has L - 1 transitions (x_i, x_{i+1}).

Two metrics, both per sample (average them over samples for a table):
- `violates(x)` [n] bool: the sample breaks the rule at least once (the paper's metric:
  its mean is the share of samples violating the rule).
- `violation_share(x)` [n] float64: violating transitions / (L - 1), i.e. the share of the
  sample's L - 1 transitions (x_i, x_{i+1}) with x_i != 0 and x_{i+1} != x_i - 1 (the JYS
  code's per-token metric; its mean over samples is what JYS reports).
"""
from __future__ import annotations

import hashlib

import torch

DEFAULTS = {"vocab": 32, "length": 256}


class Countdown:
    """Countdown(config=None, **overrides): config keys {vocab (default 32), length (default 256)}."""

    name = "countdown"
    graph_type = "absorbing"

    def __init__(self, config: dict | None = None, **overrides):
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"countdown: config must be a dict, got {type(config).__name__}")
        merged = {**DEFAULTS, **(config or {}), **overrides}
        unknown = sorted(set(merged) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"countdown: unknown config key(s) {unknown}; known: {sorted(DEFAULTS)}")
        for key, low in (("vocab", 2), ("length", 2)):
            v = merged[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"countdown.{key}: must be an integer >= {low}, got {v!r}")
        self.vocab, self.length = merged["vocab"], merged["length"]

    def config(self) -> dict:
        return {"vocab": self.vocab, "length": self.length}

    def fingerprint(self) -> str:
        return hashlib.sha256(f"countdown/1 V={self.vocab} L={self.length}".encode()).hexdigest()[:16]

    def make_graph(self):
        from ..diffusion.graph import AbsorbingGraph

        return AbsorbingGraph(self.vocab)

    def sample_corpus(self, n: int, seed: int = 0) -> torch.Tensor:
        """n sequences [n, L]; position i uses the uniform u[:, i] of a torch.Generator(seed)
        to draw k = floor(u * vocab) when a new countdown starts there."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"countdown.sample_corpus: n must be an integer >= 0, got {n!r}")
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(n, self.length, generator=g, dtype=torch.float64)
        fresh = (u * self.vocab).long().clamp_(max=self.vocab - 1)
        x = torch.empty(n, self.length, dtype=torch.long)
        x[:, 0] = fresh[:, 0]
        for i in range(1, self.length):
            prev = x[:, i - 1]
            x[:, i] = torch.where(prev == 0, fresh[:, i], prev - 1)
        return x

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.length:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"countdown: expected a LongTensor [n, {self.length}], got {shape}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"countdown: expected integer tokens, got {x.dtype}")
        if x.numel() and (x.min() < 0 or x.max() >= self.vocab):
            raise ValueError(f"countdown: tokens must lie in [0, {self.vocab - 1}] (a mask left behind?), "
                             f"got range [{int(x.min())}, {int(x.max())}]")
        return x.long()

    def violations(self, x: torch.Tensor) -> torch.Tensor:
        """[n, L - 1] bool: transition (x_i, x_{i+1}) breaks the rule (x_i != 0 and x_{i+1} != x_i - 1)."""
        x = self._check(x)
        return (x[:, :-1] != 0) & (x[:, 1:] != x[:, :-1] - 1)

    def violates(self, x: torch.Tensor) -> torch.Tensor:
        """[n] bool: the sample has at least one violating transition (the paper's metric)."""
        return self.violations(x).any(1)

    def violation_share(self, x: torch.Tensor) -> torch.Tensor:
        """[n] float64: violating transitions / (L - 1) (the JYS code's metric)."""
        return self.violations(x).to(torch.float64).mean(1)

    def __repr__(self) -> str:
        return f"Countdown({self.config()})"
