"""What the workflow knows about the library: read from the library's own leaf module
lsd/workflow_facts.py, loaded by its path so that parsing a workflow does not import torch
(importing the `lsd` package would)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def _library_file(name: str) -> Path:
    """A file of the `lsd` package: this checkout's, else the installed one's (found, not imported)."""
    here = Path(__file__).resolve().parents[3] / "lsd" / name
    if here.is_file():
        return here
    spec = importlib.util.find_spec("lsd")  # a top-level package: located without running its __init__
    if spec is None or spec.origin is None:
        raise ImportError(f"lsd/{name}: neither in this checkout nor installed")
    return Path(spec.origin).parent / name


def _load(name: str):
    path = _library_file(name)
    spec = importlib.util.spec_from_file_location(f"_lsd_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_facts = _load("workflow_facts.py")
HUB_REPOS = dict(_facts.HUB_IDS)  # lsd.backbones.registry.HUB_IDS: the Hub backbones and their repositories
HUB_TOKENIZER = _facts.HUB_TOKENIZER
GRAPH_OF = dict(_facts.GRAPH_OF)  # backbones not on the absorbing graph
ORDINAL_GRAPHS = tuple(_facts.ORDINAL_GRAPHS)
TASK_OF = dict(_facts.TASK_OF)
IMAGE_BACKBONES = tuple(_facts.IMAGE_BACKBONES)
JYS_FINE_STEPS = _facts.JYS_FINE_STEPS
