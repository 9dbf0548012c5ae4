from .graph import GRAPHS, AbsorbingGraph, Graph, UniformGraph, make_graph  # isort: skip (before ctmc)
from .ctmc import CTMCGraph, GaussianGraph
from .noise import NOISES, ExponentialNoise, GeometricNoise, LogLinearNoise, Noise, make_noise
from .scores import CallCounter, DenoiserScore, ScoreModel, X0Score

__all__ = ["Graph", "AbsorbingGraph", "UniformGraph", "CTMCGraph", "GaussianGraph", "make_graph", "GRAPHS", "Noise",
           "LogLinearNoise", "GeometricNoise", "ExponentialNoise", "make_noise", "NOISES", "ScoreModel",
           "DenoiserScore", "X0Score", "CallCounter"]
