"""Load and save DiT backbones: Hugging Face Hub ids or local directories.

A checkpoint is a directory holding ``config.json`` (the nested SEDD layout, see
`lsd.backbones.hub_config`) and the weights as ``model.safetensors`` or
``pytorch_model.bin`` (a plain state dict, read with ``torch.load(weights_only=True)``:
never full unpickling). ``load_dit`` tries the safetensors file first, checks every key
and shape itself and fails with one line naming the file and the first bad keys.

Hub ids go through ``huggingface_hub.hf_hub_download`` and the standard cache; with
``HF_HUB_OFFLINE=1`` (read at call time) only the cache is used. A checkpoint that is
neither cached nor reachable raises `BackboneNotAvailable` with the command to fetch it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..io import atomic_write_file, atomic_write_json, one_line
from .dit import DiT, DiTConfig
from .hub_config import from_hub_config, to_hub_config

WEIGHT_FILES = {"safetensors": "model.safetensors", "bin": "pytorch_model.bin"}
CONFIG_FILE = "config.json"
_SHOW = 5  # bad keys named per category in an error message


class BackboneNotAvailable(RuntimeError):
    """The checkpoint (or tokenizer) cannot be found locally and cannot be downloaded."""


class CheckpointError(ValueError):
    """A checkpoint was found but its config or weights are unreadable or do not match the model."""


def _offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) from the environment now, or huggingface_hub's flag."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_cache(cache_dir) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except ImportError:
        return "~/.cache/huggingface/hub"


def _download_hint(repo_id: str, cache_dir, offline: bool, reason: str = "") -> str:
    why = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the Hub is unreachable"
    extra = f" ({one_line(reason)})" if reason else ""
    return (f"{repo_id} is not in the Hugging Face cache and {why}{extra}: run `hf download {repo_id}` "
            f"(older clients: `huggingface-cli download {repo_id}`) on a machine with network and copy the "
            f"cache to this one (cache: {_hub_cache(cache_dir)}; HF_HOME/HF_HUB_CACHE move it), or pass a local "
            f"directory with config.json + model.safetensors (or pytorch_model.bin)")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1


def _resolve_local(directory: Path):
    config = directory / CONFIG_FILE
    if not config.is_file():
        raise BackboneNotAvailable(f"{directory}: no {CONFIG_FILE} in this directory (expected config.json + "
                                   f"model.safetensors or pytorch_model.bin)")
    for filename in WEIGHT_FILES.values():
        if (directory / filename).is_file():
            return config, directory / filename
    raise BackboneNotAvailable(f"{directory}: neither model.safetensors nor pytorch_model.bin in this directory")


def _resolve_hub(repo_id: str, revision, cache_dir):
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                            RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:
        raise BackboneNotAvailable(f"{repo_id}: loading from the Hub needs `huggingface_hub` (pip install "
                                   f"huggingface_hub), or pass a local directory with config.json + "
                                   f"model.safetensors") from None
    offline = _offline()

    def fetch(filename):
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=offline))

    try:
        config = fetch(CONFIG_FILE)
    except LocalEntryNotFoundError as err:
        raise BackboneNotAvailable(_download_hint(repo_id, cache_dir, offline,
                                                  "" if offline else str(err)[:200])) from None
    except RevisionNotFoundError:
        raise BackboneNotAvailable(f"{repo_id}: revision {revision!r} not found on the Hub") from None
    except RepositoryNotFoundError:
        raise BackboneNotAvailable(f"{repo_id}: no such repository on the Hugging Face Hub, or it is gated/private "
                                   f"(check the id; log in with `hf auth login`)") from None
    except EntryNotFoundError:
        raise BackboneNotAvailable(f"{repo_id}: the repository has no {CONFIG_FILE}; not a SEDD/RADD checkpoint") from None
    except HFValidationError:
        raise BackboneNotAvailable(f"{repo_id!r} is neither an existing local directory nor a valid Hub id "
                                   f"(owner/name)") from None
    except OSError as err:  # connection problems and other HTTP failures
        raise BackboneNotAvailable(_download_hint(repo_id, cache_dir, offline, str(err)[:200])) from None
    not_cached = False
    for filename in WEIGHT_FILES.values():
        try:
            return config, fetch(filename)
        except LocalEntryNotFoundError:
            not_cached = True
        except EntryNotFoundError:
            continue
        except OSError as err:
            raise BackboneNotAvailable(_download_hint(repo_id, cache_dir, offline, str(err)[:200])) from None
    if not_cached:
        raise BackboneNotAvailable(_download_hint(repo_id, cache_dir, offline))
    raise BackboneNotAvailable(f"{repo_id}: the repository has neither model.safetensors nor pytorch_model.bin")


def _snapshot_revision(path: Path) -> str | None:
    parts = path.parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def read_config(path) -> DiTConfig:
    """Parse a checkpoint's config.json into a `DiTConfig` (errors name the file)."""
    import json

    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable config.json ({one_line(err)})") from None
    try:
        return from_hub_config(raw)
    except ValueError as err:
        raise CheckpointError(f"{path}: {one_line(err)}") from None


def read_state_dict(path) -> dict:
    """Tensors of a model.safetensors or pytorch_model.bin file (the latter with weights_only=True)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to parse is a corrupt file
        kind = "safetensors" if path.suffix == ".safetensors" else "torch (weights_only)"
        # the whole message, on one line: torch's refusal ends with its advice and warning
        raise CheckpointError(f"{path}: not a readable {kind} state dict ({type(err).__name__}: "
                              f"{one_line(err)})") from None
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise CheckpointError(f"{path}: expected a flat state dict of named tensors, got {type(state).__name__}")
    return dict(state)


def check_state_dict(state: Mapping, expected: Mapping, source) -> None:
    """Strict check: same key set and shapes, floating and finite values; one-line CheckpointError otherwise."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f", ... (+{len(items) - _SHOW})" if len(items) > _SHOW else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
        raise CheckpointError(f"{source}: state dict does not match the model config: {'; '.join(parts)}")
    bad = [k for k, v in state.items() if not v.is_floating_point()]
    if bad:
        raise CheckpointError(f"{source}: non-floating tensors {bad[:_SHOW]}")
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: non-finite values in {bad[:_SHOW]}")


def load_dit(name_or_path, device="cpu", dtype=None, *, autocast: bool = False, revision: str | None = None,
             cache_dir=None) -> DiT:
    """Load a SEDD/RADD DiT from a Hub id (``louaaron/sedd-small``) or a local directory.

    Returns the network in eval mode on `device`, cast to `dtype` (default float32; the rotary
    buffer stays float32). SEDD networks are score models as they are; for RADD use
    ``as_score_model(net)``. ``net.origin`` records where it came from (source, files, hub
    revision). Raises `BackboneNotAvailable` (nothing to load: not cached and no Hub, no such
    directory) or `CheckpointError` (a bad config.json or weights that do not match it).
    """
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir():
        config_path, weight_path = _resolve_local(local)
    elif local.exists():
        raise BackboneNotAvailable(f"{local}: expected a checkpoint directory (config.json + model.safetensors), "
                                   f"got a file")
    elif _looks_like_path(name):
        raise BackboneNotAvailable(f"{name}: no such directory (and not a Hub id of the form owner/name)")
    else:
        config_path, weight_path = _resolve_hub(name, revision, cache_dir)
    config = read_config(config_path)
    with torch.device("meta"):
        net = DiT(config, autocast=autocast)
    state = read_state_dict(weight_path)
    check_state_dict(state, net.state_dict(), weight_path)
    net.load_state_dict(state, strict=True, assign=True)
    net = net.to(device=device, dtype=dtype or torch.float32)
    net.rotary_emb.inv_freq = net.rotary_emb.inv_freq.float()
    net.origin = {"source": name, "config": str(config_path), "weights": str(weight_path),
                  "revision": _snapshot_revision(weight_path)}
    return net.eval()


def _unwrap(model) -> DiT:
    seen = 0
    while not isinstance(model, DiT) and seen < 4:
        model = getattr(model, "log_denoiser", None) or getattr(model, "model", None)
        seen += 1
    if not isinstance(model, DiT):
        raise TypeError("save_dit: expected a DiT (or a DenoiserScore/CallCounter around one)")
    return model


def _deep_merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def save_dit(model, directory, extra_config: Mapping | None = None, layout: str = "safetensors") -> Path:
    """Write `model` as a checkpoint directory that `load_dit` (and the upstream code) can read.

    config.json: ``to_hub_config(model.config)`` deep-merged with `extra_config`.
    layout: 'safetensors' (model.safetensors) or 'bin' (pytorch_model.bin via torch.save of the
    state dict); the other layout's weight file, if present, is removed so that a stale file
    can never shadow the new one. Every file is written atomically (temp file + os.replace).
    """
    if layout not in WEIGHT_FILES:
        raise ValueError(f"save_dit: layout must be one of {sorted(WEIGHT_FILES)}, got {layout!r}")
    net = _unwrap(model)
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    if any(v.is_meta for v in state.values()):
        raise ValueError("save_dit: the model lives on the meta device (no weights to save)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / WEIGHT_FILES[layout]
    if layout == "safetensors":
        from safetensors.torch import save_file

        atomic_write_file(target, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    else:
        atomic_write_file(target, lambda tmp: torch.save(state, tmp))
    for other in WEIGHT_FILES.values():
        if other != target.name:
            (directory / other).unlink(missing_ok=True)
    config = to_hub_config(net.config)
    if extra_config:
        _deep_merge(config, extra_config)
    atomic_write_json(directory / CONFIG_FILE, config)
    return directory


def load_gpt2_tokenizer(name: str = "gpt2"):
    """The GPT-2 tokenizer through transformers' AutoTokenizer (honours HF_HUB_OFFLINE)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise BackboneNotAvailable("the GPT-2 tokenizer needs `transformers` (pip install transformers)") from None
    offline = _offline()
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=offline)
    except (OSError, ValueError) as err:
        files = "config.json vocab.json merges.txt tokenizer.json tokenizer_config.json"
        why = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the Hub is unreachable"
        raise BackboneNotAvailable(
            f"tokenizer {name} is not in the Hugging Face cache and {why}: run `hf download {name} {files}` "
            f"(older clients: `huggingface-cli download {name}`) on a machine with network and copy the cache "
            f"(cache: {_hub_cache(None)}), or pass a local tokenizer directory "
            f"[{type(err).__name__}: {one_line(err)[:150]}]") from None
