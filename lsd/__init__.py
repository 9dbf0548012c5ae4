"""lsd: a benchmark harness for few-step samplers of discrete diffusion models.

Public API:
- `Schedule`: a few-step sampler as data (base rule, time grid, coefficients).
- `sample(model, schedule, graph=..., noise=..., num_samples=..., length=...)`: the one sampler.
- `AbsorbingGraph`, `UniformGraph`, `LogLinearNoise`, `GeometricNoise`: the diffusion;
  `GaussianGraph` / `CTMCGraph` and `ExponentialNoise`: general CTMC graphs (tauLDR's images).
- `DenoiserScore`: adapter for x0-predicting (RADD-style) models on the absorbing graph;
  `X0Score`: the same on any graph; `CallCounter`: counts NFE.
"""
__version__ = "0.1.0"

from .diffusion import (AbsorbingGraph, CallCounter, CTMCGraph, DenoiserScore, ExponentialNoise, GaussianGraph,
                        GeometricNoise, LogLinearNoise, UniformGraph, X0Score, make_graph, make_noise)
from .sampling import sample
from .step import Step
from .schedule import Schedule, ScheduleError

__all__ = ["Schedule", "ScheduleError", "sample", "Step", "AbsorbingGraph", "UniformGraph", "CTMCGraph",
           "GaussianGraph", "LogLinearNoise", "GeometricNoise", "ExponentialNoise", "make_graph", "make_noise",
           "DenoiserScore", "X0Score", "CallCounter", "__version__"]
