"""Noise schedules: total noise sigma_bar(t) and its rate sigma(t) = d sigma_bar / dt.

A forward process at time t in [0, 1] has corrupted each token with probability
1 - exp(-sigma_bar(t)) (absorbing graph) or moved it towards the uniform limit at the same
speed (uniform graph). Networks are conditioned on sigma_bar, never on t.
"""
from __future__ import annotations

import math

import torch


class Noise:
    """Base class. Subclasses give `total(t)` and `rate(t)` for t in [0, 1]."""

    name = "noise"

    def total(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        return {"type": self.name, **vars(self)}


class LogLinearNoise(Noise):
    """SEDD's log-linear schedule: sigma_bar(t) = -log(1 - (1 - eps) t).

    A token is masked at time t with probability (1 - eps) t, so eps keeps sigma_bar(1)
    finite (SEDD fixes eps = 1e-3)."""

    name = "loglinear"

    def __init__(self, eps: float = 1e-3):
        if not 0.0 < eps < 1.0:
            raise ValueError(f"noise.eps: must lie in (0, 1), got {eps}")
        self.eps = float(eps)

    def total(self, t):
        return -torch.log1p(-(1.0 - self.eps) * t)

    def rate(self, t):
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * t)


class GeometricNoise(Noise):
    """Geometric schedule: sigma_bar(t) = sigma_min^(1-t) sigma_max^t (SEDD's uniform-graph default)."""

    name = "geometric"

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"noise: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def total(self, t):
        return self.sigma_min ** (1.0 - t) * self.sigma_max ** t

    def rate(self, t):
        return self.total(t) * math.log(self.sigma_max / self.sigma_min)


NOISES = {"loglinear": LogLinearNoise, "geometric": GeometricNoise}


def build_from_config(registry: dict, config: dict, what: str):
    """`registry[config["type"]](**other keys)`, with a one-line error naming `what.type`."""
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in registry:
        raise ValueError(f"{what}.type: unknown {kind!r}; choose one of {sorted(registry)}")
    return registry[kind](**config)


def make_noise(config: dict) -> Noise:
    """Build a noise schedule from `{"type": name, **params}`."""
    return build_from_config(NOISES, config, "noise")
