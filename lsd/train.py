"""Train the small backbones of this harness (`lsd train --recipe NAME`).

Losses (both are evidence lower bounds, reported in nats per token):

- **Score entropy** (SEDD, Lou et al. 2024), for SEDD-style score networks on either graph.
  At a noisy sequence x_t ~ q(. | x0) with total noise sigma_bar = sigma_bar(t), per position

      l = sum_{y != x_t} w(x_t, y) [ s_y - r_y log s_y + K(r_y) ],  K(r) = r (log r - 1),

  where s_y is the network's score (exp of its output), w(x_t, y) = Q(y, x_t) the forward
  rate into x_t (`Graph.reverse_weights`) and r_y = q(y | x0) / q(x_t | x0) the ratio of
  the one-position transition probabilities. K makes l >= 0 (l = 0 iff s = r). The
  sequence loss is sigma(t) * sum_i l_i with t ~ U[t_eps, 1] (SEDD's diffusion-weighted
  DSE, an upper bound on -log p(x0) up to the t_eps and t = 1 edge terms).
  Absorbing graph: only masked positions contribute, w = 1 for every real y, and
  r_y = [y == x0] / expm1(sigma_bar). Uniform graph (Q = 11^T/N - I): w = 1/N for every
  y != x_t; with e = exp(-sigma_bar), p_diff = (1 - e)/N, p_same = e + p_diff:
  if x_t == x0 every r_y = p_diff / p_same; otherwise r_{x0} = p_same / p_diff and
  r_y = 1 for the other N - 2 tokens.
- **Masked cross-entropy** (RADD / MDLM), for x0-predicting networks on the absorbing graph:
  sequence loss = w(t) * sum_{masked i} -log p(x0_i | x_t) with the ELBO weight
  w(t) = sigma(t) / expm1(sigma_bar(t)), which is exactly 1/t for log-linear noise (MDLM's
  weight; RADD's lambda-DCE is the same bound). This harness uses the weighted (ELBO) form.
- **x0 cross-entropy** (`x0_ce`), for x0-predicting networks on any graph (the tauLDR UNet on
  the Gaussian-rate graph): sequence loss = sum_i -log p(x0_i | x_t) over every position, with
  weight 1 at every t. Not an ELBO: a proper scoring rule whose minimiser is the true
  posterior p(x0 | x_t), from which `lsd.X0Score` gives the exact concrete score. tauLDR trains
  the same network on its continuous-time ELBO plus 0.001 times this term; on one CPU thread
  the plain cross-entropy is the cheaper signal for a tiny model (no [B, L, S, S] ratios).

Time sampling is stratified (antithetic): t_b = t_eps + (1 - t_eps) * ((u + b/B) mod 1)
with one uniform u per batch. Every random draw of step k (data, times, noise) comes from
a torch.Generator seeded by (seed, k), so training is a pure function of the seed and
resuming from a checkpoint continues exactly (CPU: bit for bit at a fixed thread count).

Architectures: a recipe's `architecture` is "dit" (default: `lsd.backbones.dit.DiT`, graph
and noise from the task and `noise`) or "tauldr" (`lsd.backbones.tauldr.TauLDRNet`: `model`
holds `TauLDRConfig` fields, image shape and levels come from the task, and the recipe names
its own `graph` and `noise`).

Artifacts in the output directory:
- `state.pt`: model, EMA, optimizer and step, written every `checkpoint_every` steps and
  when interrupted (Ctrl-C); `--resume` continues from it; deleted once training is done.
- `config.json` + `model.safetensors` (`lsd.backbones.hub.save_dit`, or `save_tauldr`; the
  EMA weights when the recipe keeps an EMA) and `training.json`: the full recipe, seed, task fingerprint,
  library versions and git hash (`lsd.io.provenance()`), wall time and the last losses.
- `log.jsonl`: one line per evaluation (step, train loss, fixed-batch eval loss, lr).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import torch

from .backbones.dit import DiT, DiTConfig
from .diffusion.graph import AbsorbingGraph, Graph, UniformGraph
from .diffusion.noise import Noise

STATE_FILE = "state.pt"
TRAINING_FILE = "training.json"
LOG_FILE = "log.jsonl"
FORMAT = "lsd.train/1"

# Each backbone's full recipe. `model` holds DiTConfig fields (graph, noise and tokens follow
# from the task); `train` the optimisation. Design notes (CPU, one thread, ~15 min each):
# - oracle-text is a first-order Markov chain: p(x0_i | x_t) depends on the nearest revealed
#   token on each side and its distance. A depthwise convolution (conv_kernel) hands every
#   position its neighbours' embeddings in separate channels, so a wide (256) and shallow (2
#   blocks) network can hold both neighbours' identities side by side, and rotary values
#   (rotary_values) tell each attention read its offset.
# - countdown needs the offset exactly (x_j = a - d for the nearest revealed a at distance d):
#   rotary values make a head's read rotate by its offset, which is that arithmetic. 4000
#   steps (~14 min on 2 cores): the rule is deterministic almost everywhere, so what counts
#   is the model's stray mass on impossible values, which keeps falling with training (1500
#   steps: 10.9% of 64 left-to-right samples break the rule, 4000: 3.5% of 256; a wider or
#   deeper network at the same CPU time did no better: benchmarks/results/countdown_recipe.md).
# - digits: 8x8 images, so a learned absolute position table (pos_embed) and a kernel of 17
#   (the pixels above and below are 8 tokens away).
# - text: batch 32 for twice the steps beat batch 64 in the same CPU time (SEDD, 1024-step
#   Euler: 1.54 vs 1.65 nats/token); the cosine decay to 2% matters (most of the sharpening
#   of p(x0 | x_t) comes late). Measured numbers: benchmarks/BACKBONES.md.
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
        # trained in float32, stored in float16: the committed file stays under 5 MiB (2.29 M weights)
        "weights_dtype": "float16",
    },
}
LOSSES = ("score_entropy", "masked_ce", "x0_ce")
ARCHITECTURES = ("dit", "tauldr")


# losses ------------------------------------------------------------------------------------

def _k(r: torch.Tensor) -> torch.Tensor:
    """K(r) = r (log r - 1), with K(0) = 0."""
    safe = torch.where(r > 0, r, torch.ones_like(r))
    return torch.where(r > 0, r * (torch.log(safe) - 1.0), torch.zeros_like(r))


def score_entropy(log_score: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, sigma_bar: torch.Tensor,
                  graph: Graph) -> torch.Tensor:
    """Denoising score entropy per position [B, L] (float64, >= 0), not yet weighted by sigma(t).

    log_score [B, L, graph.dim] (current token's entry ignored), x0 [B, L] real tokens,
    x_t [B, L] the noisy tokens, sigma_bar [B]. Closed forms of the module docstring."""
    s = log_score.to(torch.float64)
    sb = sigma_bar.to(torch.float64)[:, None]
    if isinstance(graph, AbsorbingGraph):
        V = graph.num_tokens
        masked = x_t == graph.mask_id
        ratio = 1.0 / torch.expm1(sb)  # [B, 1]
        pos = torch.exp(s[..., :V]).sum(-1)
        neg = ratio * s.gather(-1, x0[..., None])[..., 0]
        out = pos - neg + _k(ratio)
        return torch.where(masked, out, torch.zeros_like(out))
    if isinstance(graph, UniformGraph):
        n = graph.dim
        s = s.scatter(-1, x_t[..., None], 0.0)  # the current token's entry: log 1
        p_diff = -torch.expm1(-sb) / n
        p_same = torch.exp(-sb) + p_diff
        sum_exp = torch.exp(s).sum(-1) - 1.0  # over y != x_t
        sum_log = s.sum(-1)
        same = x_t == x0
        r1 = p_diff / p_same
        loss_same = sum_exp - r1 * sum_log + (n - 1) * _k(r1)
        r2 = p_same / p_diff
        s_x0 = s.gather(-1, x0[..., None])[..., 0]
        loss_diff = sum_exp - r2 * s_x0 - (sum_log - s_x0) + _k(r2) - (n - 2)
        return torch.where(same, loss_same, loss_diff) / n
    raise ValueError(f"score_entropy: unsupported graph {type(graph).__name__}")


def masked_cross_entropy(log_p: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """-log p(x0_i | x_t) at masked positions, 0 elsewhere: [B, L] float64."""
    nll = -log_p.to(torch.float64).gather(-1, x0[..., None])[..., 0]
    return torch.where(x_t == mask_id, nll, torch.zeros_like(nll))


def sample_times(batch: int, t_eps: float, generator: torch.Generator) -> torch.Tensor:
    """Stratified times in [t_eps, 1]: one uniform shifted over B evenly spaced strata, float64 [B]."""
    u = torch.rand((), generator=generator, dtype=torch.float64)
    grid = (u + torch.arange(batch, dtype=torch.float64) / batch) % 1.0
    return t_eps + (1.0 - t_eps) * grid


def diffusion_loss(net, x0: torch.Tensor, t: torch.Tensor, u: torch.Tensor, graph: Graph, noise: Noise,
                   loss: str) -> torch.Tensor:
    """Per-sequence ELBO-weighted loss [B] (nats) at times t [B] with corruption uniforms u [B, L, 2]."""
    sigma_bar = noise.total(t)
    rate = noise.rate(t)
    x_t = graph.corrupt(x0, sigma_bar, u)
    out = net(x_t, sigma_bar)
    if loss == "score_entropy":
        per_pos = score_entropy(out, x0, x_t, sigma_bar, graph)
        return rate * per_pos.sum(-1)
    if loss == "masked_ce":
        per_pos = masked_cross_entropy(out, x0, x_t, graph.mask_id)
        return rate / torch.expm1(sigma_bar) * per_pos.sum(-1)
    if loss == "x0_ce":
        return -out.to(torch.float64).gather(-1, x0[..., None])[..., 0].sum(-1)
    raise ValueError(f"loss: unknown {loss!r}; choose one of {list(LOSSES)}")


# recipes -----------------------------------------------------------------------------------

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
    from .tasks import make_task as _make

    return _make(recipe["task"]["name"], **recipe["task"].get("config", {}))


def model_config(recipe: dict, task):
    """The DiTConfig of a recipe: graph, tokens and length from the task, the rest from `model`
    (a `TauLDRConfig` for architecture "tauldr": image shape and levels from the task, graph and
    noise from the recipe)."""
    if recipe.get("architecture", "dit") == "tauldr":
        from .backbones.tauldr import TauLDRConfig

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
    from .backbones.tauldr import TauLDRNet

    return TauLDRNet(config)


def _step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    from .random import splitmix64

    key = splitmix64(torch.tensor([int(seed), int(step), int(stream)], dtype=torch.long))
    mixed = int(splitmix64(key[0] ^ splitmix64(key[1] ^ splitmix64(key[2]))))
    return torch.Generator().manual_seed(mixed & ((1 << 63) - 1))


def draw_batch(task, batch: int, seed: int, step: int) -> torch.Tensor:
    """Training data of step `step`: fresh sequences (generative tasks) or a resample of the
    digits training split, both a pure function of (seed, step)."""
    g = _step_generator(seed, step, 1)
    if hasattr(task, "train"):  # a fixed data set (digits): draw with replacement
        idx = torch.randint(0, len(task.train), (batch,), generator=g)
        return task.train[idx]
    data_seed = int(torch.randint(0, 2**62, (), generator=g))
    return task.sample_corpus(batch, seed=data_seed)


def lr_at(step: int, train: dict) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to min_lr_ratio * lr at `steps`."""
    lr, warmup, total = float(train["lr"]), int(train["warmup"]), int(train["steps"])
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = float(train["min_lr_ratio"])
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


# the loop ----------------------------------------------------------------------------------

class Trainer:
    """One training run of a recipe into `out`; `run()` trains (resuming when asked)."""

    def __init__(self, recipe, out, steps: int | None = None, device: str = "cpu", resume: bool = False,
                 progress: bool = True, keep_state: bool = False):
        self.recipe = get_recipe(recipe)
        if steps is not None:
            if int(steps) < 1:
                raise ValueError(f"train: --steps must be >= 1, got {steps}")
            self.recipe["train"]["steps"] = int(steps)
        self.train_cfg = self.recipe["train"]
        self.out = Path(out)
        self.device = torch.device(device)
        self.resume = resume
        self.progress = progress
        self.keep_state = keep_state
        self.seed = int(self.recipe.get("seed", 0))
        self.task = make_task(self.recipe)
        self.config = model_config(self.recipe, self.task)
        self.graph, self.noise = self.config.make_graph(), self.config.make_noise()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = build_network(self.config).to(self.device)
        self.ema = None
        if float(self.train_cfg["ema"]) > 0:
            self.ema = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=float(self.train_cfg["lr"]),
                                     betas=tuple(self.train_cfg["betas"]),
                                     weight_decay=float(self.train_cfg["weight_decay"]))
        self.step = 0
        self.elapsed = 0.0  # wall seconds inside training steps
        self.cpu = 0.0  # CPU seconds of this process inside training steps (the fair measure on a shared machine)
        self.last = {}

    # state -----------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"format": FORMAT, "recipe": self.recipe, "step": self.step, "elapsed": self.elapsed, "cpu": self.cpu,
                "model": self.net.state_dict(), "ema": self.ema, "optimizer": self.opt.state_dict(),
                "last": self.last}

    def save_state(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / STATE_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self._state(), tmp)
        os.replace(tmp, path)

    def load_state(self) -> bool:
        path = self.out / STATE_FILE
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} training state")
        if _recipe_key(state["recipe"]) != _recipe_key(self.recipe):
            raise ValueError(f"{path}: the checkpoint was written by a different recipe; "
                             f"use another --out or drop --resume")
        self.net.load_state_dict(state["model"])
        self.ema = state["ema"]
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.elapsed, self.last = int(state["step"]), float(state["elapsed"]), dict(state["last"])
        self.cpu = float(state.get("cpu", 0.0))
        return True

    # pieces ----------------------------------------------------------------------------------
    def batch_loss(self, step: int, batch: int, seed: int) -> torch.Tensor:
        """Per-token loss [B] of the batch of `step` under `seed` (data, times and noise)."""
        x0 = draw_batch(self.task, batch, seed, step).to(self.device)
        g = _step_generator(seed, step, 2)
        t = sample_times(batch, float(self.train_cfg["t_eps"]), g)
        u = torch.rand(batch, self.task.length, 2, generator=g, dtype=torch.float64)
        return diffusion_loss(self.net, x0, t.to(self.device), u.to(self.device), self.graph, self.noise,
                              self.recipe["loss"]) / self.task.length

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean per-token loss on a fixed held-out batch (its own seed stream), EMA weights if any."""
        live = None
        if self.ema is not None:
            live = {k: v.clone() for k, v in self.net.state_dict().items()}
            self.net.load_state_dict(self.ema)
        self.net.eval()
        try:
            value = float(self.batch_loss(0, int(self.train_cfg["eval_batch"]), self.seed + 7919).mean())
        finally:
            if live is not None:
                self.net.load_state_dict(live)
            self.net.train()
        return value

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # warm-up of the average (decay (1 + k) / (10 + k) until it reaches `ema`): early weights fade fast
        decay = min(float(self.train_cfg["ema"]), (1.0 + self.step) / (10.0 + self.step))
        with torch.no_grad():
            for k, v in self.net.state_dict().items():
                if v.is_floating_point():
                    self.ema[k].mul_(decay).add_(v.detach(), alpha=1.0 - decay)
                else:
                    self.ema[k].copy_(v)

    def _log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    # run -------------------------------------------------------------------------------------
    def run(self, callback=None) -> Path:
        """Train to `steps`; returns the output directory. `callback(step, loss)` runs after each
        step (tests use it to interrupt). Ctrl-C saves `state.pt` before stopping."""
        cfg = self.train_cfg
        total = int(cfg["steps"])
        if self.resume:
            if not self.load_state():
                raise FileNotFoundError(f"{self.out / STATE_FILE}: nothing to resume (train without --resume)")
        elif (self.out / STATE_FILE).exists():
            raise ValueError(f"{self.out / STATE_FILE} exists: pass --resume to continue it, or another --out")
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc=f"train {self.recipe['name']}", unit="step")
        self.net.train()
        try:
            while self.step < total:
                start, cpu_start = time.perf_counter(), time.process_time()
                lr = lr_at(self.step, cfg)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                loss = self.batch_loss(self.step, int(cfg["batch_size"]), self.seed).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(cfg["grad_clip"]))
                self.opt.step()
                self._update_ema()
                self.step += 1
                self.elapsed += time.perf_counter() - start
                self.cpu += time.process_time() - cpu_start
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise RuntimeError(f"train: the loss became {value} at step {self.step}")
                self.last["train_loss"] = value
                if self.step % int(cfg["eval_every"]) == 0 or self.step == total:
                    self.last["eval_loss"] = self.evaluate()
                    self._log({"step": self.step, "train_loss": value, "eval_loss": self.last["eval_loss"],
                               "lr": lr, "elapsed_s": round(self.elapsed, 2), "cpu_s": round(self.cpu, 2)})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.3f}", eval=f"{self.last.get('eval_loss', float('nan')):.3f}")
                if self.step % int(cfg["checkpoint_every"]) == 0 and self.step < total:
                    self.save_state()
                if callback is not None:
                    callback(self.step, value)
        except KeyboardInterrupt:
            self.save_state()
            raise
        finally:
            if bar is not None:
                bar.close()
        self.finish()
        return self.out

    def final_network(self):
        net = build_network(self.config)
        net.load_state_dict(self.ema if self.ema is not None else self.net.state_dict())
        return net.eval()

    def record(self) -> dict:
        from .io import provenance

        return {"format": FORMAT, "recipe": self.recipe, "seed": self.seed, "steps": self.step,
                "task": {"name": self.task.name, "config": self.task.config(), "fingerprint": self.task.fingerprint()},
                "model": self.config.to_dict(), "parameters": sum(p.numel() for p in self.net.parameters()),
                "weights": "ema" if self.ema is not None else "final", "device": str(self.device),
                "threads": torch.get_num_threads(), "train_time_s": round(self.elapsed, 1),
                "train_cpu_s": round(self.cpu, 1),
                "last": self.last, "provenance": provenance()}

    def finish(self) -> None:
        from .backbones.hub import save_dit
        from .io import atomic_write_json

        record = self.record()
        summary = {k: record[k] for k in ("seed", "steps")}
        summary.update(recipe=self.recipe["name"], task=record["task"], format=FORMAT)
        if isinstance(self.config, DiTConfig):
            save_dit(self.final_network(), self.out, extra_config={"lsd_training": summary})
        else:
            from .backbones.tauldr import save_tauldr

            save_tauldr(self.final_network(), self.out, extra_config={"lsd_training": summary},
                        dtype=getattr(torch, self.recipe.get("weights_dtype", "float32")))
        atomic_write_json(self.out / TRAINING_FILE, record)
        if not self.keep_state:
            (self.out / STATE_FILE).unlink(missing_ok=True)


def _recipe_key(recipe: dict) -> str:
    return json.dumps(recipe, sort_keys=True)


def train(recipe, out, steps: int | None = None, device: str = "cpu", resume: bool = False,
          progress: bool = True, keep_state: bool = False, callback=None) -> Path:
    """Train `recipe` (a name of `RECIPES` or a recipe dict) into `out`; returns `out`."""
    return Trainer(recipe, out, steps=steps, device=device, resume=resume, progress=progress,
                   keep_state=keep_state).run(callback)


# command line ------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `lsd train`."""
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES), help="backbone to train")
    parser.add_argument("--out", default=None, help="output directory (default: checkpoints/<recipe> in the repo)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    parser.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                        help="torch threads for this run (default: the global --threads or $LSD_THREADS)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    parser.add_argument("--keep-state", action="store_true", help="keep state.pt after the last step")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args) -> Path:
    """`lsd train`: train one recipe (see `configure_parser`)."""
    threads = getattr(args, "threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    from .backbones.trained import checkpoint_dir

    out = Path(args.out) if args.out else checkpoint_dir(args.recipe)
    start = time.perf_counter()
    path = train(args.recipe, out, steps=args.steps, device=args.device, resume=args.resume,
                 progress=not args.quiet, keep_state=args.keep_state)
    record = json.loads((path / TRAINING_FILE).read_text())
    print(f"wrote {path}: {args.recipe}, {record['steps']} steps, eval loss "
          f"{record['last'].get('eval_loss', float('nan')):.4f} nats/token, {time.perf_counter() - start:.0f} s")
    return path
