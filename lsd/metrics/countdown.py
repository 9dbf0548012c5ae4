"""Countdown error rates (conventions.md section 7): both definitions, named.

Rule: every non-zero token is followed by itself minus one; a zero may be followed by any
token (a new countdown starts); the last token has no successor and cannot violate. A
sample of length L has L - 1 transitions (x_i, x_{i+1}).

- `error_rate_any`: share of samples with at least one violating transition (the paper's metric).
- `error_rate_per_transition`: mean over samples of (violating transitions / (L - 1)) (the
  per-token metric of the JYS code, with every transition checked).
- `jys_code_error_rate`: a faithful re-implementation of the JYS reference checker, for
  comparison with its published numbers only. That checker divides by L (position 0 counts
  as a success) and, after checking a transition out of a non-zero token, treats the next
  token as a zero, so the transition right after a checked one is never checked.
"""
from __future__ import annotations

import torch

from .entropy import token_matrix


def _tokens(samples) -> torch.Tensor:
    return token_matrix(samples, "countdown metric")


def countdown_violations(samples) -> torch.Tensor:
    """[n, L - 1] bool: transition (x_i, x_{i+1}) breaks the rule (x_i != 0 and x_{i+1} != x_i - 1)."""
    x = _tokens(samples)
    return (x[:, :-1] != 0) & (x[:, 1:] != x[:, :-1] - 1)


def countdown_error_rates(samples) -> dict:
    """{'error_rate_any', 'error_rate_per_transition', 'num_samples', 'sample_length',
    'violates' ([n] bool tensor), 'violation_share' ([n] float64 tensor)}."""
    x = _tokens(samples)
    v = countdown_violations(x)
    violates = v.any(1)
    share = v.to(torch.float64).mean(1) if v.shape[1] else torch.zeros(x.shape[0], dtype=torch.float64)
    return {
        "error_rate_any": float(violates.to(torch.float64).mean()),
        "error_rate_per_transition": float(share.mean()),
        "num_samples": int(x.shape[0]),
        "sample_length": int(x.shape[1]),
        "violates": violates,
        "violation_share": share,
    }


def jys_code_error_rate(samples) -> float:
    """The JYS reference code's per-token error rate (quirks included; see the module docstring)."""
    x = _tokens(samples).tolist()
    rates = []
    for row in x:
        errors, prev = 0, row[0]
        for cur in row[1:]:
            if prev == 0:
                prev = cur
            else:
                errors += cur != prev - 1
                prev = 0
        rates.append(errors / len(row))
    return float(sum(rates) / len(rates))
