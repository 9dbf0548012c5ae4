"""The recipes of the small backbones (one dict each: task, network, noise, loss, seed and
optimisation) and the network a recipe builds.

Architectures: a recipe's `architecture` is "dit" (default: `lsd.backbones.dit.DiT`, graph
and noise from the task and `noise`) or "tauldr" (`lsd.backbones.tauldr.TauLDRNet`: `model`
holds `TauLDRConfig` fields, image shape and levels come from the task, and the recipe names
its own `graph` and `noise`).
"""
from __future__ import annotations

import copy
import math

from ..backbones.dit import DiT, DiTConfig
from .losses import LOSSES

# Each backbone's full recipe. `model` holds DiTConfig fields (graph, noise and tokens follow
# from the task); `train` the optimisation. Design notes (each recipe is sized to train in
# minutes on one CPU thread; the measurements behind these choices, and the training times,
# are in benchmarks/results/recipe_choices.md and benchmarks/BACKBONES.md):
# - oracle-text is a first-order Markov chain: p(x0_i | x_t) depends on the nearest revealed
#   token on each side and its distance. A depthwise convolution (conv_kernel) hands every
#   position its neighbours' embeddings in separate channels, so a wide and shallow network
#   can hold both neighbours' identities side by side, and rotary values (rotary_values) tell
#   each attention read its offset.
# - countdown needs the offset exactly (x_j = a - d for the nearest revealed a at distance d):
#   rotary values make a head's read rotate by its offset, which is that arithmetic. The rule
#   is deterministic almost everywhere, so what counts is the model's stray mass on impossible
#   values, which keeps falling with training: the recipe buys steps rather than width or depth.
# - digits: 8x8 images, so a learned absolute position table (pos_embed) and a kernel of 17
#   (the pixels above and below are 8 tokens away).
# - text: a smaller batch for more steps beat a larger one in the same CPU time; the cosine
#   decay to 2% matters (most of the sharpening of p(x0 | x_t) comes late).
_TRAIN = {"steps": 1600, "batch_size": 64, "lr": 2e-3, "warmup": 100, "min_lr_ratio": 0.02,
          "weight_decay": 0.0, "betas": [0.9, 0.98], "grad_clip": 1.0, "ema": 0.99, "t_eps": 1e-3,
          "checkpoint_every": 250, "eval_every": 100, "eval_batch": 64}
_TEXT_MODEL = {"hidden_size": 256, "n_heads": 4, "n_blocks": 2, "mlp_ratio": 2, "cond_dim": 32, "conv_kernel": 5,
               "rotary_values": True, "dropout": 0.0}
RECIPES = {
    "tiny-sedd-text": {
        "task": {"name": "oracle-text", "config": {}},
        "model": {"kind": "sedd", **_TEXT_MODEL},
        "noise": {"type": "loglinear", "eps": 1e-3},
        "loss": "score_entropy",
        "seed": 0,
        "train": {**_TRAIN, "steps": 5000, "batch_size": 32, "warmup": 200},
    },
    "tiny-radd-text": {
        "task": {"name": "oracle-text", "config": {}},
        "model": {"kind": "radd", **_TEXT_MODEL},
        "noise": {"type": "loglinear", "eps": 1e-3},
        "loss": "masked_ce",
        "seed": 0,
        "train": {**_TRAIN, "steps": 3200, "batch_size": 32, "warmup": 200},
    },
    "tiny-sedd-countdown": {
        "task": {"name": "countdown", "config": {}},
        "model": {"kind": "sedd", "hidden_size": 64, "n_heads": 4, "n_blocks": 4, "cond_dim": 64,
                  "conv_kernel": 9, "dropout": 0.0, "rotary_values": True},
        "noise": {"type": "loglinear", "eps": 1e-3},
        "loss": "score_entropy",
        "seed": 0,
        "train": {**_TRAIN, "steps": 4000, "batch_size": 32, "ema": 0.998},
    },
    "tiny-sedd-digits": {
        "task": {"name": "digits", "config": {}},
        "model": {"kind": "sedd", "hidden_size": 128, "n_heads": 4, "n_blocks": 4, "cond_dim": 64,
                  "conv_kernel": 17, "pos_embed": True, "scale_by_sigma": False, "dropout": 0.0},
        "noise": {"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20.0},
        "loss": "score_entropy",
        "seed": 0,
        "train": dict(_TRAIN),
    },
    # - tauldr-digits: the CIFAR-10 backbone's architecture and diffusion at the digits' scale, so
    #   the whole image path (Gaussian-rate graph, x0 scores, tau-leaping, Frechet) runs offline.
    #   Graph: tauLDR's construction with rate_sigma and q_sigma scaled by 17/256 (6 -> 0.398, 512
    #   -> 34: neighbour jumps, a nearly flat start distribution) and tauLDR's beta(t); at t = 1 the
    #   slowest mode has decayed to e^-10.3 (CIFAR-10's graph: e^-6.2). Network: the UNet at width
    #   32 over 8x8x1 (ch_mult 1, 2, 2: attention at 4x4, middle at 2x2), no dropout; t_eps 1e-3
    #   (tauLDR trains from t = 0.01; the samplers' grids go down to 1e-5).
    "tiny-tauldr-digits": {
        "task": {"name": "digits", "config": {}},
        "architecture": "tauldr",
        "model": {"ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 2, "attn_scale": 1, "dropout": 0.0},
        "graph": {"type": "gaussian", "num_tokens": 17, "rate_sigma": 6.0 * 17 / 256, "q_sigma": 512.0 * 17 / 256},
        "noise": {"type": "exponential", "time_base": 3.0, "time_exponential": 100.0},
        "loss": "x0_ce",
        "seed": 0,
        "train": {**_TRAIN, "steps": 2500, "batch_size": 64, "lr": 1e-3, "warmup": 100, "ema": 0.995},
        # trained in float32, stored in float16: the committed file stays small (under 5 MiB)
        "weights_dtype": "float16",
    },
}
ARCHITECTURES = ("dit", "tauldr")


def get_recipe(name_or_recipe) -> dict:
    """A deep copy of `RECIPES[name]` (with `name` filled in), or of a recipe dict as given."""
    if isinstance(name_or_recipe, dict):
        recipe = copy.deepcopy(name_or_recipe)
        recipe.setdefault("name", "custom")
    elif name_or_recipe in RECIPES:
        recipe = {"name": name_or_recipe, **copy.deepcopy(RECIPES[name_or_recipe])}
    else:
        raise ValueError(f"recipe: unknown {name_or_recipe!r}; choose one of {sorted(RECIPES)}")
    if recipe.get("loss") not in LOSSES:
        raise ValueError(f"recipe.loss: unknown {recipe.get('loss')!r}; choose one of {list(LOSSES)}")
    if recipe.get("architecture", "dit") not in ARCHITECTURES:
        raise ValueError(f"recipe.architecture: unknown {recipe.get('architecture')!r}; choose one of "
                         f"{list(ARCHITECTURES)}")
    train = {**_TRAIN, **recipe.get("train", {})}
    recipe["train"] = train
    return recipe


def make_task(recipe: dict):
    from ..tasks import make_task as _make

    return _make(recipe["task"]["name"], **recipe["task"].get("config", {}))


def model_config(recipe: dict, task):
    """The DiTConfig of a recipe: graph, tokens and length from the task, the rest from `model`
    (a `TauLDRConfig` for architecture "tauldr": image shape and levels from the task, graph and
    noise from the recipe)."""
    if recipe.get("architecture", "dit") == "tauldr":
        from ..backbones.tauldr import TauLDRConfig

        side = int(round(math.sqrt(task.length)))
        if side * side != task.length:
            raise ValueError(f"recipe: the tauldr architecture needs square images, task {task.name} has length "
                             f"{task.length}")
        return TauLDRConfig(**recipe["model"], channels=1, image_size=side, levels=task.vocab,
                            graph=dict(recipe["graph"]), noise=dict(recipe["noise"]))
    model = dict(recipe["model"])
    model.setdefault("scale_by_sigma", model.get("kind", "sedd") == "sedd" and task.graph_type == "absorbing")
    return DiTConfig(tokens=task.vocab, length=task.length, graph=task.graph_type, noise=dict(recipe["noise"]),
                     **model)


def build_network(config):
    """A freshly initialised network for a `model_config` result."""
    if isinstance(config, DiTConfig):
        return DiT(config)
    from ..backbones.tauldr import TauLDRNet

    return TauLDRNet(config)
