"""The small backbones trained by this harness (`lsd train`), loaded by name.

Checkpoints live in `checkpoints/<name>/` at the repository root: `config.json` +
`model.safetensors` (the Hub layout of `lsd.backbones.hub.save_dit`, or the tauLDR UNet's of
`lsd.backbones.tauldr_io.save_tauldr` for `tiny-tauldr-digits`) and `training.json` (the recipe,
seed, task fingerprint and provenance). `LSD_CHECKPOINTS` moves the folder.
Names and recipes: `lsd.training.RECIPES`.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import TRAINED, Backbone, checkpoints_root
from .hub import BackboneNotAvailable

__all__ = ["TRAINED", "checkpoint_dir", "checkpoints_root", "load_trained"]


def checkpoint_dir(name: str) -> Path:
    return checkpoints_root() / name


def load_trained(name: str, device="cpu", autocast: bool = False):
    """`Backbone` of a trained backbone: the score model (RADD wrapped in
    `DenoiserScore`; the tauLDR UNet in `X0Score`), its graph, noise and length, and `info` with
    the training record."""
    from .dit import as_score_model
    from .hub import load_dit
    from .tauldr_io import is_tauldr_dir

    if name not in TRAINED:
        raise ValueError(f"trained backbone: unknown {name!r}; choose one of {list(TRAINED)}")
    folder = checkpoint_dir(name)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise BackboneNotAvailable(f"{name}: no checkpoint in {folder}; `lsd train --recipe {name}` reproduces it")
    if is_tauldr_dir(folder):
        from .tauldr import MODEL_TYPE
        from .tauldr import as_score_model as tauldr_score_model
        from .tauldr_io import load_tauldr_dir

        net = load_tauldr_dir(folder, device=device, autocast=autocast)
        cfg = net.config
        model = tauldr_score_model(net)
        info = {**net.origin, "kind": MODEL_TYPE, "tokens": cfg.levels, "trained": True}
    else:
        net = load_dit(folder, device=device, autocast=autocast)
        cfg = net.config
        model = as_score_model(net)
        info = {**net.origin, "kind": cfg.kind, "tokens": cfg.tokens, "trained": True}
    record = folder / "training.json"
    if record.is_file():
        data = json.loads(record.read_text())
        task = data.get("task") or {}
        # the same keys as every registered backbone: task name, its config and fingerprint
        info.update(task=task.get("name"), task_config=task.get("config", {}),
                    task_fingerprint=task.get("fingerprint"), steps=data.get("steps"), seed=data.get("seed"),
                    git=(data.get("provenance") or {}).get("git"))
    return Backbone(name, model, cfg.make_graph(), cfg.make_noise(), cfg.length, info)
