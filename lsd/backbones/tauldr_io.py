"""tauLDR checkpoints: the released CIFAR-10 checkpoint and the directories of the small
networks trained here (the network itself: `lsd.backbones.tauldr`).

Loading the released checkpoint (`load_tauldr`): tauLDR's readme links a Dropbox folder; the
CIFAR-10 files are `cifar10/checkpoints/ckpt_0001999999.pt` and `cifar10/config/config_001.yaml`.
Put the .pt at `checkpoints/tauldr-cifar10/ckpt_0001999999.pt` in this repository (or point
`LSD_TAULDR_CHECKPOINT` at it; `LSD_CHECKPOINTS` moves the whole folder). The file is a
`torch.save` pickle {"model": state, "optimizer": ..., "n_iter": ...}; `state` holds the online
weights under `net.module.*` and the EMA weights as the list `ema_shadow_params` (state-dict
order), beside `ema_decay` and `ema_num_updates`. It is read with `torch.load(weights_only=True)`
and only numpy's scalar reconstructor and float64 dtype allow-listed (the optimizer state holds
a numpy float), never full unpickling. EMA weights by default (`ema=False`: the online ones);
`net.origin["weights"]` records which. The yaml is not needed: the architecture is fixed here.

Small versions of the same network (`TauLDRConfig(...)` of another width, image size and level
count) are trained here (`lsd train --recipe tiny-tauldr-digits`) and saved as a directory
(config.json + model.safetensors, `save_tauldr` / `load_tauldr_dir`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..io import one_line
from .tauldr import MODEL_TYPE, TauLDRConfig, TauLDRNet, as_score_model

CHECKPOINT_NAME = "ckpt_0001999999.pt"
CHECKPOINT_ENV = "LSD_TAULDR_CHECKPOINT"
DROPBOX = "https://www.dropbox.com/scl/fo/zmwsav82kgqtc0tzgpj3l/h?dl=0&rlkey=k6d2bp73k4ifavcg9ldjhgu0s"


# the released checkpoint -------------------------------------------------------------------

def default_checkpoint() -> Path:
    """`$LSD_TAULDR_CHECKPOINT`, else `<checkpoints>/tauldr-cifar10/ckpt_0001999999.pt`."""
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return Path(env).expanduser()
    from .base import checkpoints_root

    return checkpoints_root() / "tauldr-cifar10" / CHECKPOINT_NAME


def missing_hint(path: Path) -> str:
    return (f"tauLDR CIFAR-10 checkpoint not found at {path}: download cifar10/checkpoints/{CHECKPOINT_NAME} "
            f"(and cifar10/config/config_001.yaml) from the Dropbox folder linked in the tauLDR readme "
            f"(github.com/andrew-cr/tauLDR: {DROPBOX}) and put it at {path}, or set {CHECKPOINT_ENV}=/path/to/it")


def _numpy_globals() -> list:
    """The numpy objects a numpy float64 scalar in the optimizer state needs, under both module
    names (numpy 1 pickles say `numpy.core.multiarray`, numpy 2 ones `numpy._core.multiarray`)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            type(np.dtype(np.float64))]


def read_tauldr_checkpoint(path) -> dict:
    """The checkpoint's pickle, `torch.load(weights_only=True)` with only `_numpy_globals` allowed."""
    from .hub import BackboneNotAvailable, CheckpointError

    path = Path(path)
    if not path.is_file():
        raise BackboneNotAvailable(missing_hint(path))
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable or needing more than the allow-list
        raise CheckpointError(f"{path}: not a readable tauLDR checkpoint under weights_only=True with numpy's "
                              f"float64 scalar allowed ({type(err).__name__}: {one_line(err)[:300]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise CheckpointError(f"{path}: expected a dict with a 'model' state dict (tauLDR's checkpoint layout)")
    return raw


def tauldr_weights(model_state: dict, ema: bool = True, source="tauLDR checkpoint") -> dict:
    """Named weights (keys without `.module.`) from tauLDR's `model` entry: the online tensors, or
    the EMA list `ema_shadow_params` matched to them in state-dict order."""
    from .hub import CheckpointError

    named = {k.replace(".module.", "."): v for k, v in model_state.items() if isinstance(v, torch.Tensor)}
    if not ema:
        return named
    shadow = model_state.get("ema_shadow_params")
    if not isinstance(shadow, (list, tuple)) or not all(isinstance(v, torch.Tensor) for v in shadow):
        raise CheckpointError(f"{source}: no 'ema_shadow_params' list of tensors (pass ema=False for the online "
                              f"weights)")
    if len(shadow) != len(named):
        raise CheckpointError(f"{source}: {len(shadow)} EMA tensors for {len(named)} named weights")
    out = {}
    for (key, online), average in zip(named.items(), shadow):
        if tuple(online.shape) != tuple(average.shape):
            raise CheckpointError(f"{source}: EMA tensor for {key} has shape {tuple(average.shape)}, "
                                  f"the weight {tuple(online.shape)}")
        out[key] = average
    return out


def load_tauldr(path=None, ema: bool = True, device="cpu", autocast: bool = False,
                config: TauLDRConfig | None = None) -> TauLDRNet:
    """The released tauLDR CIFAR-10 network (EMA weights by default), in eval mode on `device`.

    path: the .pt file (default `default_checkpoint()`); a missing file raises
    `BackboneNotAvailable` with one line saying where to get it and where to put it.
    config: the architecture (default CIFAR-10's). Strict key and shape check: a
    `CheckpointError` names the missing, unexpected or mis-shaped keys."""
    from .hub import check_state_dict

    path = Path(path) if path is not None else default_checkpoint()
    raw = read_tauldr_checkpoint(path)
    weights = tauldr_weights(raw["model"], ema=ema, source=path)
    config = config if config is not None else TauLDRConfig.cifar10()
    with torch.device("meta"):
        net = TauLDRNet(config, autocast=autocast)
    check_state_dict(weights, net.state_dict(), path)
    net.load_state_dict(weights, strict=True, assign=True)
    net = net.to(device=device, dtype=torch.float32)
    net._noise = net.config.make_noise()
    net.origin = {"source": "tauLDR", "weights_file": str(path), "weights": "ema" if ema else "online",
                  "n_iter": int(raw["n_iter"]) if isinstance(raw.get("n_iter"), int) else None}
    return net.eval()


def tauldr_backbone(name: str = "tauldr-cifar10", path=None, ema: bool = True, device="cpu", autocast: bool = False):
    """`Backbone` of the released CIFAR-10 model (X0Score on the Gaussian-rate graph)."""
    from .base import Backbone

    net = load_tauldr(path, ema=ema, device=device, autocast=autocast)
    cfg = net.config
    return Backbone(name, as_score_model(net), cfg.make_graph(), cfg.make_noise(), cfg.length,
                    {**net.origin, "kind": MODEL_TYPE, "levels": cfg.levels,
                     "image_shape": [cfg.channels, cfg.image_size, cfg.image_size]})


# directories of small trained networks -----------------------------------------------------

def save_tauldr(net: TauLDRNet, directory, extra_config: dict | None = None,
                dtype: torch.dtype = torch.float32) -> Path:
    """Write config.json (`TauLDRConfig.to_dict` + `extra_config`) and model.safetensors, atomically.
    `dtype` is the storage type of the floating-point weights (float16 halves a committed file;
    `load_tauldr_dir` computes in float32 whatever was stored)."""
    from safetensors.torch import save_file

    from ..io import atomic_write_file, atomic_write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in net.state_dict().items()}
    atomic_write_file(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_json(directory / "config.json", {**net.config.to_dict(), **(extra_config or {})})
    return directory


def is_tauldr_dir(directory) -> bool:
    try:
        config = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config.get("model"), dict) and config["model"].get("type") == MODEL_TYPE


def load_tauldr_dir(directory, device="cpu", autocast: bool = False) -> TauLDRNet:
    """A network written by `save_tauldr` (strict key and shape check), in eval mode."""
    from .hub import CheckpointError, check_state_dict, read_state_dict

    directory = Path(directory)
    try:
        config = TauLDRConfig.from_dict(json.loads((directory / "config.json").read_text()))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{directory / 'config.json'}: {err}") from None
    state = read_state_dict(directory / "model.safetensors")
    with torch.device("meta"):
        net = TauLDRNet(config, autocast=autocast)
    check_state_dict(state, net.state_dict(), directory / "model.safetensors")
    net.load_state_dict(state, strict=True, assign=True)
    net = net.to(device=device, dtype=torch.float32)
    net._noise = config.make_noise()
    net.origin = {"source": str(directory), "weights_file": str(directory / "model.safetensors")}
    return net.eval()
