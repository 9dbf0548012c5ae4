"""Oracle perplexity: perplexity of samples under a language whose exact NLL is known.

For the oracle-text task (`lsd.tasks.OracleText`) pass `nll_fn=task.nll` and
`entropy_rate=task.entropy_rate()`. Every token of a sequence is scored (the oracle also
scores position 0 through its initial distribution), so a sample of length L has L tokens.
The floor exp(entropy_rate) is the perplexity of exact samples from the oracle in the
corpus aggregation (E[nll(x)] / L = entropy rate); mean-of-exps sits above it by Jensen.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def oracle_perplexity(nll_fn, samples, entropy_rate: float | None = None, batch_size: int = 4096) -> dict:
    """Both perplexity aggregations of `samples` [n, L] under the exact `nll_fn(x) -> [n]` (nats).

    Returns {'ppl_mean_of_exps', 'ppl_corpus', 'nll_per_token', 'floor' (exp(entropy_rate) or None),
    'entropy_rate', 'num_samples', 'sample_length', 'sum_nll' (np.ndarray [n]), 'n_tokens' (np.ndarray [n])}."""
    x = torch.as_tensor(samples)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"oracle_perplexity: expected a non-empty token tensor [n, L], got shape {tuple(x.shape)}")
    parts = []
    for start in range(0, x.shape[0], batch_size):
        nll = torch.as_tensor(nll_fn(x[start:start + batch_size]))
        if nll.shape != (min(batch_size, x.shape[0] - start),):
            raise ValueError(f"oracle_perplexity: nll_fn must return one NLL per sequence, got shape {tuple(nll.shape)}")
        parts.append(nll.detach().to(torch.float64).cpu())
    sum_nll = torch.cat(parts).numpy()
    if not np.all(np.isfinite(sum_nll)):
        raise ValueError("oracle_perplexity: nll_fn returned a non-finite NLL (a sample outside the oracle's support?)")
    n, length = x.shape
    n_tokens = np.full(n, length, dtype=np.int64)
    if entropy_rate is not None and not (isinstance(entropy_rate, (int, float)) and math.isfinite(entropy_rate)):
        raise ValueError(f"oracle_perplexity: entropy_rate must be a finite float (nats/token), got {entropy_rate!r}")
    return {
        "ppl_mean_of_exps": float(np.exp(sum_nll / length).mean()),
        "ppl_corpus": float(math.exp(sum_nll.sum() / (n * length))),
        "nll_per_token": float(sum_nll.sum() / (n * length)),
        "floor": None if entropy_rate is None else float(math.exp(entropy_rate)),
        "entropy_rate": None if entropy_rate is None else float(entropy_rate),
        "num_samples": int(n),
        "sample_length": int(length),
        "sum_nll": sum_nll,
        "n_tokens": n_tokens,
    }
