"""The training loop: one recipe trained into an output directory, resumable bit for bit.

Artifacts in the output directory:
- `state.pt`: model, EMA, optimizer and step, written every `checkpoint_every` steps and
  when interrupted (Ctrl-C); `--resume` continues from it; deleted once training is done.
- `config.json` + `model.safetensors` (`lsd.backbones.hub.save_dit`, or
  `lsd.backbones.tauldr_io.save_tauldr`; the EMA weights when the recipe keeps an EMA) and `training.json`: the full recipe, seed, task fingerprint,
  library versions and git hash (`lsd.io.provenance()`), wall time and the last losses.
- `log.jsonl`: one line per evaluation (step, train loss, fixed-batch eval loss, lr).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..backbones.dit import DiTConfig
from ..io import progress
from .losses import diffusion_loss, sample_times
from .recipes import build_network, get_recipe, make_task, model_config

STATE_FILE = "state.pt"
TRAINING_FILE = "training.json"
LOG_FILE = "log.jsonl"
FORMAT = "lsd.train/1"


def _step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    from ..random import splitmix64

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
    done = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = float(train["min_lr_ratio"])
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * done)))


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
        from ..io import atomic_write_file

        state = self._state()
        atomic_write_file(self.out / STATE_FILE, lambda tmp: torch.save(state, tmp))

    def load_state(self) -> bool:
        path = self.out / STATE_FILE
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch's refusal (UnpicklingError) or a corrupt file
            from ..io import one_line

            reason = one_line(f"{type(err).__name__}: {err}")  # torch's whole message, its warning included
            raise ValueError(f"{path}: refused, not a training state of plain tensors and numbers (read with "
                             f"torch.load(weights_only=True): {reason})") from None
        keys = ("format", "recipe", "step", "elapsed", "model", "ema", "optimizer", "last")
        if not isinstance(state, dict) or state.get("format") != FORMAT or any(k not in state for k in keys):
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
        bar = progress(total, f"train {self.recipe['name']}", self.progress, initial=self.step, unit="step")
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
            bar.close()
        self.finish()
        return self.out

    def final_network(self):
        net = build_network(self.config)
        net.load_state_dict(self.ema if self.ema is not None else self.net.state_dict())
        return net.eval()

    def record(self) -> dict:
        from ..io import provenance

        return {"format": FORMAT, "recipe": self.recipe, "seed": self.seed, "steps": self.step,
                "task": {"name": self.task.name, "config": self.task.config(), "fingerprint": self.task.fingerprint()},
                "model": self.config.to_dict(), "parameters": sum(p.numel() for p in self.net.parameters()),
                "weights": "ema" if self.ema is not None else "final", "device": str(self.device),
                "threads": torch.get_num_threads(), "train_time_s": round(self.elapsed, 1),
                "train_cpu_s": round(self.cpu, 1),
                "last": self.last, "provenance": provenance()}

    def finish(self) -> None:
        from ..backbones.hub import save_dit
        from ..io import atomic_write_json

        record = self.record()
        summary = {k: record[k] for k in ("seed", "steps")}
        summary.update(recipe=self.recipe["name"], task=record["task"], format=FORMAT)
        if isinstance(self.config, DiTConfig):
            save_dit(self.final_network(), self.out, extra_config={"lsd_training": summary})
        else:
            from ..backbones.tauldr_io import save_tauldr

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
