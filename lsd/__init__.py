"""lsd: a benchmark harness for few-step samplers of discrete diffusion models.

Public API:
- `Schedule`: a few-step sampler as data (base rule, time grid, coefficients).
- `sample(model, schedule, graph=..., noise=..., num_samples=..., length=...)`: the one sampler.
- `AbsorbingGraph`, `UniformGraph`, `LogLinearNoise`, `GeometricNoise`: the diffusion.
- `DenoiserScore`: adapter for x0-predicting (RADD-style) models; `CallCounter`: counts NFE.
"""
__version__ = "0.1.0"

from .diffusion import (AbsorbingGraph, CallCounter, DenoiserScore, GeometricNoise, LogLinearNoise,
                        UniformGraph, make_graph, make_noise)
from .sampling import Step, sample
from .schedule import Schedule, ScheduleError

__all__ = ["Schedule", "ScheduleError", "sample", "Step", "AbsorbingGraph", "UniformGraph", "LogLinearNoise",
           "GeometricNoise", "make_graph", "make_noise", "DenoiserScore", "CallCounter", "__version__"]
