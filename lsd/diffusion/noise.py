"""Noise schedules: total noise sigma_bar(t) and its rate sigma(t) = d sigma_bar / dt.

A forward process at time t in [0, 1] has corrupted each token with probability
1 - exp(-sigma_bar(t)) (absorbing graph) or moved it towards the uniform limit at the same
speed (uniform graph); on a general CTMC graph (`lsd.diffusion.ctmc`) the forward rate matrix
is sigma(t) R_b and the transition matrix exp(sigma_bar(t) R_b). Score models are called with
sigma_bar, never with t; a network trained on t (tauLDR) converts back with `Noise.time`,
which the schedules that need it provide.
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


class ExponentialNoise(Noise):
    """tauLDR's schedule (Campbell et al. 2022): rate beta(t) = a ln(b) b^t, total a (b^t - 1).

    `time_base` = a and `time_exponential` = b keep tauLDR's names (its CIFAR-10 model: a = 3,
    b = 100, so sigma_bar(1) = 297 and beta(1) = 1381.6). sigma_bar(0) = 0 exactly.
    `time(sigma_bar)` inverts `total`: tauLDR's networks are conditioned on t."""

    name = "exponential"

    def __init__(self, time_base: float = 3.0, time_exponential: float = 100.0):
        if not (float(time_base) > 0.0 and float(time_exponential) > 1.0):
            raise ValueError(f"noise: need time_base > 0 and time_exponential > 1, got {time_base}, "
                             f"{time_exponential}")
        self.time_base = float(time_base)
        self.time_exponential = float(time_exponential)

    def total(self, t):
        return self.time_base * torch.expm1(t * math.log(self.time_exponential))

    def rate(self, t):
        log_b = math.log(self.time_exponential)
        return self.time_base * log_b * torch.exp(t * log_b)

    def time(self, sigma_bar: torch.Tensor) -> torch.Tensor:
        """The t in [0, 1] with total(t) = sigma_bar."""
        return torch.log1p(sigma_bar / self.time_base) / math.log(self.time_exponential)


NOISES = {"loglinear": LogLinearNoise, "geometric": GeometricNoise, "exponential": ExponentialNoise}


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
