"""What every backbone module shares: the `Backbone` record, the names of the backbones
trained here and where their checkpoints live. A leaf: it imports no other backbone module,
so the registry, the trained loader and the tauLDR loader can all depend on it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..diffusion import Graph, Noise

# The small backbones trained by this harness (`lsd train --recipe NAME`), committed under checkpoints/.
TRAINED = ("tiny-sedd-text", "tiny-radd-text", "tiny-sedd-countdown", "tiny-sedd-digits", "tiny-tauldr-digits")


@dataclass
class Backbone:
    name: str
    model: Callable  # the score model: (x_t [B, L], sigma_bar [B]) -> log score [B, L, dim]
    graph: Graph
    noise: Noise
    length: int
    info: dict = field(default_factory=dict)


def checkpoints_root() -> Path:
    """`$LSD_CHECKPOINTS`, else `checkpoints/` at the repository root."""
    env = os.environ.get("LSD_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "checkpoints"
