"""The score-model protocol and the adapter for models that predict x_0.

A score model is any callable `model(x_t: LongTensor[B, L], sigma_bar: Tensor[B])` that
returns the log concrete score `[B, L, graph.dim]`, with the entry of the current token
equal to log 1 = 0 (SEDD's output convention). `sigma_bar` arrives as float64; networks
cast it to their own dtype.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from .graph import AbsorbingGraph


class ScoreModel(Protocol):
    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor: ...


class DenoiserScore:
    """Turn a model of log p(x_0^i = y | x_t) over the V real tokens into a score model.

    Absorbing graph only (RADD, anchors.md section 3): at a masked position
    log s_y = log p(y) - log(expm1(sigma_bar)); the mask column (the current token there)
    is 0. Unmasked positions never move on the absorbing graph, so their entries are
    irrelevant and kept finite.

    `cache=True` (for time-independent denoisers such as RADD and the exact oracle): the
    denoiser's output only changes when the sequence does, so rows identical to the previous
    call's are not recomputed. `network_calls` counts forward passes actually run (RADD's
    E-NFE) and `rows_evaluated` the sequences they covered. Samples are bit-identical with and
    without the cache as long as the network computes each row independently of the others in
    its batch (true of the DiT on CPU, tested; batched GPU kernels may differ in the last bit).
    """

    def __init__(self, log_denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], graph: AbsorbingGraph,
                 cache: bool = False):
        if not graph.absorbing:
            raise ValueError("DenoiserScore: x0-predicting models are supported on the absorbing graph only")
        self.log_denoiser = log_denoiser
        self.graph = graph
        self.cache = cache
        self.network_calls = 0
        self.rows_evaluated = 0
        self._last_x = self._last_out = None

    def denoise(self, x_t, sigma_bar):
        """log p(x0 | x_t), reusing the previous call's rows where the sequence is unchanged."""
        if not self.cache or x_t.is_meta:
            self.network_calls += 1
            self.rows_evaluated += x_t.shape[0]
            return self.log_denoiser(x_t, sigma_bar)
        last = self._last_x
        if last is None or last.shape != x_t.shape or last.device != x_t.device:
            changed = torch.ones(x_t.shape[0], dtype=torch.bool, device=x_t.device)
        else:
            changed = (x_t != last).any(-1)
        if changed.all():
            out = self.log_denoiser(x_t, sigma_bar)
        else:
            out = self._last_out.clone()
            if changed.any():
                out[changed] = self.log_denoiser(x_t[changed], sigma_bar[changed])
        n = int(changed.sum())
        self.network_calls += n > 0
        self.rows_evaluated += n
        self._last_x, self._last_out = x_t.clone(), out
        return out

    def __call__(self, x_t, sigma_bar):
        log_p = self.denoise(x_t, sigma_bar)
        offset = torch.log(torch.expm1(sigma_bar.to(log_p.dtype)))[:, None, None]
        log_score = torch.cat([log_p - offset, torch.zeros_like(log_p[..., :1])], dim=-1)
        # The current token's entry is log 1 = 0 (only matters at unmasked positions).
        return log_score.scatter(-1, x_t[..., None], 0.0)


class CallCounter:
    """Wraps a model and counts its calls: the NFE of everything that runs through it."""

    def __init__(self, model: ScoreModel):
        self.model = model
        self.calls = 0

    def __call__(self, x_t, sigma_bar):
        self.calls += 1
        return self.model(x_t, sigma_bar)
