"""Backbones by name: what configs refer to.

`load_backbone(name_or_path)` returns a `Backbone`: the score model together with the
graph, noise and sequence length it was trained for, and where it came from. Names:
- `toy-absorbing`, `toy-uniform`: the exact-score test bed (lsd.tasks.toy).
- `oracle-exact`: the perfect denoiser of the `oracle-text` language (forward-backward).
- `tiny-sedd-text`, `tiny-radd-text`, `tiny-sedd-countdown`, `tiny-sedd-digits`,
  `tiny-tauldr-digits`: small backbones trained here (`lsd train`), committed under
  `checkpoints/` (the last: the tauLDR UNet on a 17-level Gaussian-rate graph).
- `tauldr-cifar10`: tauLDR's released CIFAR-10 model (`lsd.backbones.tauldr`), read from
  `$LSD_TAULDR_CHECKPOINT` or `checkpoints/tauldr-cifar10/ckpt_0001999999.pt`; when absent, one
  line says where to download it and where to put it.
- `sedd-small`, `sedd-medium`, `radd`, `radd-lambda`: the paper's Hub checkpoints.
- any Hub id (`owner/name`) or local checkpoint directory (config.json + weights).
"""
from __future__ import annotations

from ..diffusion import AbsorbingGraph, GeometricNoise, LogLinearNoise, UniformGraph
from ..workflow_facts import HUB_IDS  # the paper's Hub checkpoints, a fact the workflow reads too
from .base import TRAINED, Backbone

__all__ = ["Backbone", "HUB_IDS", "TRAINED", "backbone_names", "load_backbone"]


def _toy(name: str) -> Backbone:
    from ..tasks.toy import ExactScore, ToyDistribution

    dist = ToyDistribution()
    graph, noise = (AbsorbingGraph(dist.vocab), LogLinearNoise()) if name == "toy-absorbing" else \
        (UniformGraph(dist.vocab), GeometricNoise())
    return Backbone(name, ExactScore(dist, graph), graph, noise, dist.length,
                    {"source": "lsd.tasks.toy", "vocab": dist.vocab, "exact": True})


def _dit(name: str, device, autocast: bool) -> Backbone:
    from .dit import as_score_model
    from .hub import load_dit

    net = load_dit(HUB_IDS.get(name, name), device=device, autocast=autocast)
    cfg = net.config
    return Backbone(name, as_score_model(net), cfg.make_graph(), cfg.make_noise(), cfg.length,
                    {**net.origin, "kind": cfg.kind, "tokens": cfg.tokens})


def _oracle_exact(name: str) -> Backbone:
    from ..tasks.oracle_text import OracleText
    from .oracle_exact import oracle_exact_score

    task = OracleText()
    model = oracle_exact_score(task)
    return Backbone(name, model, model.graph, LogLinearNoise(), task.length,
                    {"source": "lsd.backbones.oracle_exact", "exact": True, "task": "oracle-text",
                     "task_config": task.config(), "task_fingerprint": task.fingerprint()})


def _trained(name: str, device="cpu", autocast: bool = False) -> Backbone:
    from .trained import load_trained

    return load_trained(name, device=device, autocast=autocast)


def _tauldr(name: str, device="cpu", autocast: bool = False) -> Backbone:
    from .tauldr_io import tauldr_backbone

    return tauldr_backbone(name, device=device, autocast=autocast)


BUILTIN = {"toy-absorbing": _toy, "toy-uniform": _toy, "oracle-exact": _oracle_exact,
           **{name: _trained for name in TRAINED}, "tauldr-cifar10": _tauldr}


def backbone_names() -> list[str]:
    return sorted(BUILTIN) + sorted(HUB_IDS)


def load_backbone(name_or_path: str, device="cpu", autocast: bool = False) -> Backbone:
    """A registered backbone by name, a Hub id or a local checkpoint directory."""
    name = str(name_or_path)
    if name in TRAINED or name == "tauldr-cifar10":  # networks: built on the requested device
        return BUILTIN[name](name, device=device, autocast=autocast)
    if name in BUILTIN:
        return BUILTIN[name](name)
    if name in HUB_IDS or "/" in name or name.startswith("."):
        return _dit(name, device, autocast)
    raise ValueError(f"backbone: unknown {name!r}; choose one of {backbone_names()}, a Hub id or a directory")
