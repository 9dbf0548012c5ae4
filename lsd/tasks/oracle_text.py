"""OracleText: a synthetic language with an exact likelihood and an exact denoiser.

The language is a first-order Markov chain over V tokens, built deterministically from a
seed. Every token `a` has `successors` likely next tokens: one fixed successor along a
random cycle through all V tokens (so the sparse chain is irreducible) and
`successors - 1` further distinct tokens drawn at random. Their weights are Dirichlet(1)
(normalised standard exponentials). A leak of total mass `leak` is spread uniformly over
all V tokens, so every sequence has a finite likelihood:

    T[a, b] = (1 - leak) * W[a, b] + leak / V,     W sparse and row-stochastic.

The first token is drawn from the stationary distribution pi of T, so every position has
marginal pi. With few likely successors, neighbouring tokens are strongly dependent:
decoding two neighbours in the same parallel step, each from its own marginal, very often
picks a pair that only the leak explains (about log(V / leak) = 11.8 nats at the defaults),
which is exactly the error that few-step samplers make.

Exact quantities:
- `nll(x)` = -log pi[x_1] - sum_{i >= 2} log T[x_{i-1}, x_i], in nats, float64.
- `sequence_entropy()` = H(X_1, ..., X_L) = H(pi) + (L - 1) * h, where
  `h = conditional_entropy()` = sum_a pi_a H(T[a, :]) is the chain's entropy rate
  (the entropy of x_i given x_{i-1}, the same for every i because X_1 ~ pi).
- `entropy_rate()` = H(X_1, ..., X_L) / L, in nats per token: the expected per-token NLL
  of a corpus sequence, E[nll(x)] / L, exactly (not the L -> infinity limit h).
- The denoising posterior p(x0_i | x_t) for a partially masked x_t: forward-backward,
  in `lsd.backbones.oracle_exact`.

Configuration `{vocab, length, successors, leak, seed}`: vocab in [64, 512], length in
[1, 128]. Tests that enumerate all V^L sequences need tiny vocabularies: `strict=False`
lowers the vocab bound to 2 (documented override; everything else is unchanged).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

DEFAULTS = {"vocab": 128, "length": 64, "successors": 4, "leak": 1e-3, "seed": 0}
VOCAB_RANGE = (64, 512)
VOCAB_RANGE_LOOSE = (2, 512)
LENGTH_RANGE = (1, 128)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_int(name: str, value, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"oracle-text.{name}: must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


class OracleText:
    """A seeded sparse Markov chain over `vocab` tokens with sequences of `length` tokens.

    OracleText(config=None, *, strict=True, **overrides): `config` (a dict) and keyword
    overrides together set {vocab, length, successors, leak, seed}; missing keys take
    `DEFAULTS`. Unknown keys or bad values raise ValueError naming them.
    """

    name = "oracle-text"
    graph_type = "absorbing"

    def __init__(self, config: dict | None = None, *, strict: bool = True, **overrides):
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"oracle-text: config must be a dict, got {type(config).__name__}")
        merged = {**DEFAULTS, **(config or {}), **overrides}
        unknown = sorted(set(merged) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"oracle-text: unknown config key(s) {unknown}; known: {sorted(DEFAULTS)}")
        low, high = VOCAB_RANGE if strict else VOCAB_RANGE_LOOSE
        self.vocab = _check_int("vocab", merged["vocab"], low, high)
        self.length = _check_int("length", merged["length"], *LENGTH_RANGE)
        self.successors = _check_int("successors", merged["successors"], 1, self.vocab)
        leak = merged["leak"]
        if isinstance(leak, bool) or not isinstance(leak, (int, float)) or not 0.0 < float(leak) < 1.0:
            raise ValueError(f"oracle-text.leak: must be a number in (0, 1), got {leak!r}")
        self.leak = float(leak)
        self.seed = _check_int("seed", merged["seed"], 0, 2**63 - 1)
        self.strict = bool(strict)
        self.transition, self.sparse = self._build()
        self.initial = self._stationary()
        self.log_transition = torch.log(self.transition)
        self.log_initial = torch.log(self.initial)

    # construction ------------------------------------------------------------------
    def _build(self):
        V, k = self.vocab, self.successors
        g = torch.Generator().manual_seed(self.seed)
        cycle = torch.argsort(torch.rand(V, generator=g, dtype=torch.float64))
        nxt = torch.empty(V, dtype=torch.long)
        nxt[cycle] = torch.roll(cycle, -1)  # token cycle[j] -> cycle[j + 1]
        # Random further successors: the k - 1 smallest keys among the tokens other than nxt[a].
        keys = torch.rand(V, V, generator=g, dtype=torch.float64)
        keys[torch.arange(V), nxt] = 2.0
        extra = torch.argsort(keys, dim=1)[:, : k - 1]
        succ = torch.cat([nxt[:, None], extra], dim=1)  # [V, k], distinct per row
        u = torch.rand(V, k, generator=g, dtype=torch.float64)
        weights = -torch.log1p(-u)  # standard exponentials: Dirichlet(1) after normalising
        weights = weights / weights.sum(1, keepdim=True)
        sparse = torch.zeros(V, V, dtype=torch.float64).scatter_(1, succ, weights)
        transition = (1.0 - self.leak) * sparse + self.leak / V
        return transition, sparse

    def _stationary(self) -> torch.Tensor:
        """pi with pi T = pi, sum pi = 1: a linear solve (the chain is irreducible and aperiodic)."""
        V = self.vocab
        a = self.transition.T - torch.eye(V, dtype=torch.float64)
        a[-1] = 1.0
        b = torch.zeros(V, dtype=torch.float64)
        b[-1] = 1.0
        pi = torch.linalg.solve(a, b).clamp_min(0.0)
        for _ in range(3):  # polish to a fixed point of the chain
            pi = pi @ self.transition
        return pi / pi.sum()

    # metadata ----------------------------------------------------------------------
    def config(self) -> dict:
        return {"vocab": self.vocab, "length": self.length, "successors": self.successors,
                "leak": self.leak, "seed": self.seed}

    def fingerprint(self) -> str:
        """sha256 (hex, 16 chars) of V and the transition matrix quantised to multiples of 2^-40.

        Quantising makes the hash immune to last-ulp differences of log/sum across platforms."""
        q = torch.round(self.transition * 2.0**40).to(torch.int64).numpy()
        h = hashlib.sha256()
        h.update(f"oracle-text/1 V={self.vocab}".encode())
        h.update(np.ascontiguousarray(q, dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    def make_graph(self):
        from ..diffusion.graph import AbsorbingGraph

        return AbsorbingGraph(self.vocab)

    # sampling and likelihood --------------------------------------------------------
    def sample_corpus(self, n: int, seed: int = 0) -> torch.Tensor:
        """n sequences [n, L] drawn from the chain by inverse CDF from a torch.Generator(seed)."""
        if not _is_int(n) or n < 0:
            raise ValueError(f"oracle-text.sample_corpus: n must be an integer >= 0, got {n!r}")
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(n, self.length, generator=g, dtype=torch.float64)
        cdf0 = torch.cumsum(self.initial, 0)
        cdf = torch.cumsum(self.transition, 1)
        x = torch.empty(n, self.length, dtype=torch.long)
        x[:, 0] = torch.searchsorted(cdf0, u[:, :1] * cdf0[-1], right=True)[:, 0]
        x[:, 0].clamp_(max=self.vocab - 1)
        for i in range(1, self.length):
            rows = cdf[x[:, i - 1]]
            pick = torch.searchsorted(rows, u[:, i:i + 1] * rows[:, -1:], right=True)[:, 0]
            x[:, i] = pick.clamp_(max=self.vocab - 1)
        return x

    def check_tokens(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.length:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"oracle-text.{what}: expected a LongTensor [n, {self.length}], got {shape}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"oracle-text.{what}: expected integer tokens, got {x.dtype}")
        if x.numel() and (x.min() < 0 or x.max() >= self.vocab):
            raise ValueError(f"oracle-text.{what}: tokens must lie in [0, {self.vocab - 1}] "
                             f"(no masks), got range [{int(x.min())}, {int(x.max())}]")
        return x.long()

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Exact NLL in nats of each sequence of x [n, L]: Tensor [n] float64."""
        x = self.check_tokens(x)
        out = -self.log_initial[x[:, 0]]
        if self.length > 1:
            out = out - self.log_transition[x[:, :-1], x[:, 1:]].sum(1)
        return out

    # entropies ---------------------------------------------------------------------
    def conditional_entropy(self) -> float:
        """h = H(x_i | x_{i-1}) = sum_a pi_a H(T[a, :]), nats: the chain's asymptotic entropy rate."""
        row_h = -(self.transition * self.log_transition).sum(1)
        return float((self.initial * row_h).sum())

    def sequence_entropy(self) -> float:
        """H(x_1, ..., x_L) = H(pi) + (L - 1) h, nats: the expected NLL of a corpus sequence."""
        h0 = -float((self.initial * self.log_initial).sum())
        return h0 + (self.length - 1) * self.conditional_entropy()

    def entropy_rate(self) -> float:
        """H(x_1, ..., x_L) / L, nats per token: equals E[nll(x)] / L for x from the corpus."""
        return self.sequence_entropy() / self.length

    def __repr__(self) -> str:
        return f"OracleText({self.config()})"

