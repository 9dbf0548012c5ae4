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
    """

    def __init__(self, log_denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], graph: AbsorbingGraph):
        if not graph.absorbing:
            raise ValueError("DenoiserScore: x0-predicting models are supported on the absorbing graph only")
        self.log_denoiser = log_denoiser
        self.graph = graph

    def __call__(self, x_t, sigma_bar):
        log_p = self.log_denoiser(x_t, sigma_bar)
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
