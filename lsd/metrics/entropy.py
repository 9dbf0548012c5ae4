"""Unigram entropy of samples: the guard against repetitive, low-entropy text (conventions.md section 4).

Per sample: the entropy (natural log, nats) of the empirical distribution of its tokens,
H = -sum_v p_v log p_v with p_v = count of v / L; reported as the mean over samples.
A constant sequence has 0; k distinct tokens each occurring L / k times give log k.
"""
from __future__ import annotations

import torch


def token_matrix(samples, metric: str) -> torch.Tensor:
    """`samples` as a LongTensor [n, L] of tokens, L >= 1, or a one-line error naming `metric`."""
    x = torch.as_tensor(samples)
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{metric}: expected tokens [n, L] with L >= 1, got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"{metric}: expected integer tokens, got {x.dtype}")
    return x.long()


def unigram_entropy_per_sample(samples) -> torch.Tensor:
    """[n] float64: entropy in nats of each row's empirical token distribution (sort-based, no vocab size needed)."""
    x = token_matrix(samples, "unigram_entropy")
    n, length = x.shape
    s, _ = torch.sort(x, dim=1)
    new_run = torch.ones_like(s, dtype=torch.bool)
    new_run[:, 1:] = s[:, 1:] != s[:, :-1]
    run = torch.cumsum(new_run.long(), dim=1) - 1  # index of each token's run of equal values
    counts = torch.zeros(n, length, dtype=torch.float64).scatter_add_(1, run, torch.ones(n, length, dtype=torch.float64))
    p = counts / length
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros((), dtype=torch.float64))).sum(1)


def unigram_entropy(samples) -> float:
    """Mean over samples of the per-sample unigram entropy (nats)."""
    return float(unigram_entropy_per_sample(samples).mean())
