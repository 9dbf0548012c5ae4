from .graph import GRAPHS, AbsorbingGraph, Graph, UniformGraph, make_graph
from .noise import NOISES, GeometricNoise, LogLinearNoise, Noise, make_noise
from .scores import CallCounter, DenoiserScore, ScoreModel

__all__ = ["Graph", "AbsorbingGraph", "UniformGraph", "make_graph", "GRAPHS", "Noise", "LogLinearNoise",
           "GeometricNoise", "make_noise", "NOISES", "ScoreModel", "DenoiserScore", "CallCounter"]
