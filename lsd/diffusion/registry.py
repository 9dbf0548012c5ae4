"""The registry of graphs by name (`make_graph`): a module of its own, above both graph.py and
ctmc.py, so that neither imports the other back."""
from __future__ import annotations

from .ctmc import CTMCGraph, GaussianGraph
from .graph import AbsorbingGraph, Graph, UniformGraph

GRAPHS = {"absorbing": AbsorbingGraph, "uniform": UniformGraph, "ctmc": CTMCGraph, "gaussian": GaussianGraph}


def make_graph(config: dict) -> Graph:
    """Build a graph from `{"type": name, "num_tokens": V, ...}` (other keys: the class's arguments)."""
    from .noise import build_from_config

    return build_from_config(GRAPHS, config, "graph")
