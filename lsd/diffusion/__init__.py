from .ctmc import CTMCGraph, GaussianGraph
from .graph import AbsorbingGraph, Graph, UniformGraph
from .noise import NOISES, ExponentialNoise, GeometricNoise, LogLinearNoise, Noise, make_noise
from .registry import GRAPHS, make_graph
from .scores import CallCounter, DenoiserScore, ScoreModel, X0Score

__all__ = ["Graph", "AbsorbingGraph", "UniformGraph", "CTMCGraph", "GaussianGraph", "make_graph", "GRAPHS", "Noise",
           "LogLinearNoise", "GeometricNoise", "ExponentialNoise", "make_noise", "NOISES", "ScoreModel",
           "DenoiserScore", "X0Score", "CallCounter"]
