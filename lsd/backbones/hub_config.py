"""The SEDD/RADD Hub config.json <-> `DiTConfig` translation: the nested layout of the
upstream checkpoints (graph, noise and model sections, RADD's "ddit_wot" marker) read into
the harness's flat config and written back for a faithful round trip."""
from __future__ import annotations

import copy

from .dit import DEFAULT_LOGLINEAR_EPS, SIZES, DiTConfig

GRAPH_TO_HUB = {"absorbing": "absorb", "uniform": "uniform"}
GRAPH_FROM_HUB = {"absorb": "absorbing", "absorbing": "absorbing", "uniform": "uniform"}
HUB_MODEL_TYPE = {"sedd": "ddit", "radd": "ddit_wot"}


def from_hub_config(config: dict) -> DiTConfig:
    """Parse the nested config.json of the SEDD/RADD hub checkpoints.

    Layout (SEDD): ``{"tokens": V, "graph": {"type": "absorb"|"uniform"}, "noise":
    {"type": "loglinear"|"geometric", "sigma_min", "sigma_max"}, "model": {"name",
    "type": "ddit", "hidden_size", "cond_dim", "length", "n_blocks", "n_heads",
    "scale_by_sigma", "dropout"}, ...}``; a file wrapped as ``{"config": {...}}`` (newer
    hub-mixin versions) is unwrapped.

    RADD's upstream config has no ``graph`` key and ``model.type = "ddit_wot"`` (plus
    ``use_checkpoint`` and ``dtype``, its autocast dtype, which this loader ignores). The
    kind is ``model.kind`` when present, else 'radd' for ``model.type == "ddit_wot"`` and
    'sedd' otherwise; a missing ``graph`` means absorbing. Log-linear noise uses
    ``noise.eps`` when present, else SEDD's fixed 1e-3 (``sigma_min``/``sigma_max`` only
    matter for the geometric schedule). Every other key is kept in ``extra``.
    """
    if not isinstance(config, dict):
        raise ValueError(f"DiT config.json: expected a JSON object, got {type(config).__name__}")
    if "model" not in config and isinstance(config.get("config"), dict):
        config = config["config"]
    model = config.get("model")
    if not isinstance(model, dict):
        raise ValueError("DiT config.json: missing the nested 'model' section (model.hidden_size, ...)")
    if "tokens" not in config:
        raise ValueError("DiT config.json: missing 'tokens' (the number of real tokens V)")
    model_type = model.get("type", "ddit")
    kind = model.get("kind") or ("radd" if model_type == "ddit_wot" else "sedd")
    if model_type not in HUB_MODEL_TYPE.values():
        raise ValueError(f"DiT config.json: model.type {model_type!r} is not a DiT "
                         f"(expected one of {sorted(HUB_MODEL_TYPE.values())})")
    graph_type = (config.get("graph") or {}).get("type", "absorb")
    if graph_type not in GRAPH_FROM_HUB:
        raise ValueError(f"DiT config.json: graph.type {graph_type!r} unknown; expected 'absorb' or 'uniform'")
    graph = GRAPH_FROM_HUB[graph_type]
    noise_in = dict(config.get("noise") or {"type": "loglinear"})
    noise_type = noise_in.get("type", "loglinear")
    if noise_type == "loglinear":
        noise = {"type": "loglinear", "eps": float(noise_in.get("eps", DEFAULT_LOGLINEAR_EPS))}
    elif noise_type == "geometric":
        noise = {"type": "geometric", "sigma_min": float(noise_in.get("sigma_min", 1e-4)),
                 "sigma_max": float(noise_in.get("sigma_max", 20.0))}
    else:
        raise ValueError(f"DiT config.json: noise.type {noise_type!r} unknown; expected 'loglinear' or 'geometric'")
    missing = [k for k in ("hidden_size", "n_heads", "n_blocks") if k not in model]
    if missing:
        raise ValueError(f"DiT config.json: model section lacks {missing}")
    try:
        return DiTConfig(
            tokens=int(config["tokens"]), hidden_size=int(model["hidden_size"]), n_heads=int(model["n_heads"]),
            n_blocks=int(model["n_blocks"]), cond_dim=int(model.get("cond_dim", 128)),
            length=int(model.get("length", 1024)), kind=kind, graph=graph, noise=noise,
            scale_by_sigma=bool(model.get("scale_by_sigma", kind == "sedd" and graph == "absorbing")),
            dropout=float(model.get("dropout", 0.0)), mlp_ratio=int(model.get("mlp_ratio", 4)),
            rotary_base=float(model.get("rotary_base", 10000.0)), conv_kernel=int(model.get("conv_kernel", 0)),
            pos_embed=bool(model.get("pos_embed", False)), rotary_values=bool(model.get("rotary_values", False)),
            extra=copy.deepcopy(config))
    except (TypeError, ValueError) as err:
        raise ValueError(f"DiT config.json: {err}") from None


def to_hub_config(config: DiTConfig) -> dict:
    """The nested config.json layout (inverse of `from_hub_config`, keeping `extra`).

    SEDD: model.type 'ddit' with scale_by_sigma. RADD: model.type 'ddit_wot' (upstream's
    marker), no scale_by_sigma, plus ``graph.type = 'absorb'`` (absent upstream, harmless
    there) and upstream's ``use_checkpoint: false`` / ``dtype: 'bfloat16'`` when absent so
    the RADD code can read the file too. Log-linear ``eps`` is written only when it
    differs from SEDD's fixed 1e-3; the mlp ratio and rotary base only when not default.
    """
    out = copy.deepcopy(config.extra) if config.extra else {}
    out["tokens"] = config.tokens
    graph = dict(out.get("graph") or {})
    graph["type"] = GRAPH_TO_HUB[config.graph]
    out["graph"] = graph
    noise = dict(out.get("noise") or {})
    if noise.get("type") != config.noise["type"]:
        noise = {}
    noise["type"] = config.noise["type"]
    if config.noise["type"] == "loglinear":
        noise.setdefault("sigma_min", 1e-4)
        noise.setdefault("sigma_max", 20)
        eps = float(config.noise.get("eps", DEFAULT_LOGLINEAR_EPS))
        if eps != DEFAULT_LOGLINEAR_EPS:
            noise["eps"] = eps
        else:
            noise.pop("eps", None)
    else:
        noise.update({k: v for k, v in config.noise.items() if k != "type"})
    out["noise"] = noise
    model = dict(out.get("model") or {})
    model.pop("kind", None)
    size = {v: k for k, v in SIZES.items()}.get((config.hidden_size, config.n_heads, config.n_blocks), "custom")
    model.setdefault("name", f"{size}_radd" if config.kind == "radd" else size)
    model["type"] = HUB_MODEL_TYPE[config.kind]
    model.update(hidden_size=config.hidden_size, cond_dim=config.cond_dim, length=config.length,
                 n_blocks=config.n_blocks, n_heads=config.n_heads)
    if config.kind == "sedd":
        model["scale_by_sigma"] = bool(config.scale_by_sigma)
    else:
        model.pop("scale_by_sigma", None)
        model.setdefault("use_checkpoint", False)
        model.setdefault("dtype", "bfloat16")
    model["dropout"] = float(config.dropout)
    for name, default in (("mlp_ratio", 4), ("rotary_base", 10000.0), ("conv_kernel", 0), ("pos_embed", False),
                          ("rotary_values", False)):
        if getattr(config, name) != default:
            model[name] = getattr(config, name)
        else:
            model.pop(name, None)
    out["model"] = model
    return out
