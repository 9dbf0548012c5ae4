"""What it takes for the countdown backbone to meet its goal: a sweep of training recipes.

Goal (issue #3): with a 1024-step sampler, at most 5% of samples break the countdown rule.
Uniform Euler cannot reach it even with exact scores (positions revealed in the same step are
drawn independently; benchmarks/BACKBONES.md), so each variant is measured with the two
one-token-per-step rules at 1024 steps (`left_to_right`, the goal's sampler, and `spread` at
strength inf; exact scores: 0% violations with either) and with uniform Euler.

Each variant of the `tiny-sedd-countdown` recipe trains in its own process (one torch
thread), then samples; all variants run side by side. On one H100, twelve variants at once
trained at about 50 ms/step each (CPU-bound processes sharing the GPU), but sampling 256
sequences x 1024 steps x 3 samplers did not finish in the 7 minutes left: run a few at a
time (--only) or with fewer --samples. Findings: benchmarks/results/countdown_recipe.md.

    python benchmarks/countdown_recipe.py OUT [--device cuda] [--samples 256] [--only NAME ...]
        [--samplers left-to-right ...] [--jobs N] [--reuse] [--deadline-s 480] [--quick]

`--reuse` measures variants already trained in OUT (e.g. on a GPU) without training them again.

Writes OUT/<variant>/ (the checkpoint, eval.json) and OUT/summary.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.backbones import countdown_exact, countdown_samplers  # noqa: E402
from benchmarks.common import masked_at_levels  # noqa: E402

BASE = "tiny-sedd-countdown"
# name: (model overrides, train overrides); steps are chosen around what 15 min on 2 CPU
# cores allows (measured here: hidden 64 about 0.21 s/step, 96 0.32, 128 0.49 at batch 32).
VARIANTS = {
    "h64-s1500": ({}, {"steps": 1500}),
    "h64-s4000": ({}, {"steps": 4000}),
    "h64-s8000": ({}, {"steps": 8000}),
    "h64-s12000": ({}, {"steps": 12000}),
    "h64-s4000-lr3e-3": ({}, {"steps": 4000, "lr": 3e-3}),
    "h64-s4000-k33": ({"conv_kernel": 33}, {"steps": 4000}),
    "h64-s3000-b6": ({"n_blocks": 6}, {"steps": 3000}),
    "h64-b64-s2200": ({}, {"steps": 2200, "batch_size": 64}),
    "h96-s2800": ({"hidden_size": 96}, {"steps": 2800}),
    "h128-s1800": ({"hidden_size": 128}, {"steps": 1800}),
    "h128-s4000": ({"hidden_size": 128}, {"steps": 4000}),
    "h128-s8000": ({"hidden_size": 128}, {"steps": 8000}),
}
SAMPLER_STEPS = 1024


def recipe_of(name: str, quick: bool) -> dict:
    from lsd.training import get_recipe

    model, train = VARIANTS[name]
    recipe = get_recipe(BASE)
    recipe["model"].update(model)
    recipe["train"].update(train)
    if quick:
        recipe["train"].update(steps=3, checkpoint_every=10**9, eval_every=10**9)
    return recipe


@torch.no_grad()
def stray_mass(net, task, levels=(0.05, 0.6, 0.9), n: int = 64, seed: int = 5, device="cpu") -> dict:
    """Mean probability the model puts on values the exact posterior rules out (< 1e-6), over masked
    positions the exact posterior fixes (its top value > 0.999), per masked fraction: the error
    the rule check counts, measured without sampling."""
    exact = countdown_exact(task)
    out = {}
    for level, masked, x_t, sigma_bar in masked_at_levels(task.sample_corpus(n, seed=seed), task.vocab, levels, seed):
        p_exact = exact.log_denoiser(x_t, sigma_bar).exp()
        p_model = torch.softmax(net(x_t.to(device), sigma_bar.to(device))[..., :task.vocab].double(), -1).cpu()
        fixed = masked & (p_exact.max(-1).values > 0.999)
        out[str(level)] = float((p_model * (p_exact < 1e-6)).sum(-1)[fixed].mean())
    return out


def worker(name: str, out: Path, device: str, samples: int, samplers, quick: bool, reuse: bool) -> dict:
    """Train one variant into out/name (or reuse a finished one), then measure it; returns (and
    writes) its record."""
    import lsd
    from lsd.backbones.dit import as_score_model
    from lsd.backbones.hub import load_dit
    from lsd.io import atomic_write_json
    from lsd.tasks.countdown import Countdown
    from lsd.training import train

    torch.set_num_threads(1)
    folder = out / name
    recipe = recipe_of(name, quick)
    if not (reuse and (folder / "training.json").is_file()):
        train(recipe, folder, device=device, progress=False)
    trained = json.loads((folder / "training.json").read_text())
    net = load_dit(folder, device=device)
    cfg, task = net.config, Countdown()
    record = {"variant": name, "model": VARIANTS[name][0], "train": trained["recipe"]["train"],
              "trained_on": trained.get("device", device), "params": sum(p.numel() for p in net.parameters()),
              "train_wall_s": round(trained["train_time_s"], 1), "eval_loss": trained["last"].get("eval_loss"),
              "samples": samples, "stray_mass": stray_mass(net, task, device=device)}
    for label, schedule in countdown_samplers(16 if quick else SAMPLER_STEPS).items():
        if label not in samplers:
            continue
        t0 = time.perf_counter()
        x = lsd.sample(as_score_model(net), schedule, graph=cfg.make_graph(), noise=cfg.make_noise(),
                       num_samples=samples, length=cfg.length, seed=0, batch_size=samples, device=device)
        record[label] = {"violating_samples": float(task.violates(x).double().mean()),
                         "violating_transitions": float(task.violation_share(x).mean()),
                         "wall_s": round(time.perf_counter() - t0, 1)}
    atomic_write_json(folder / "eval.json", record)
    return record


def summary(out: Path, names) -> str:
    labels = list(countdown_samplers(2))
    lines = ["| variant | params | steps x batch | lr | train wall | eval loss | stray mass at 0.05 / 0.6 / 0.9 masked | "
             "samples | " + " | ".join(f"{label} 1024: samples violating (transitions)" for label in labels) + " |",
             "|" + "---|" * (8 + len(labels))]
    for name in names:
        path = out / name / "eval.json"
        if not path.is_file():
            lines.append(f"| {name} | not finished |" + " |" * (6 + len(labels)))
            continue
        r = json.loads(path.read_text())
        cells = " | ".join(f"{100 * r[k]['violating_samples']:.1f}% ({100 * r[k]['violating_transitions']:.3f}%)"
                           if k in r else "-" for k in labels)
        stray = " / ".join(f"{v:.1e}" for v in r["stray_mass"].values())
        lines.append(f"| {name} | {r['params']:,} | {r['train']['steps']} x {r['train']['batch_size']} | "
                     f"{r['train']['lr']:g} | {r['train_wall_s']:.0f} s ({r['trained_on']}) | {r['eval_loss']:.4f} | "
                     f"{stray} | {r['samples']} | {cells} |")
    return "\n".join(lines)


def main(argv=None):
    labels = list(countdown_samplers(2))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--samplers", nargs="+", default=labels, choices=labels, help="which 1024-step samplers to run")
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(VARIANTS))
    ap.add_argument("--jobs", type=int, default=None, help="variants run at once (default: all; one thread each)")
    ap.add_argument("--reuse", action="store_true", help="measure variants already trained in OUT again, no training")
    ap.add_argument("--deadline-s", type=float, default=None, help="stop waiting (and kill the rest) after this")
    ap.add_argument("--quick", action="store_true", help="3 training steps, 16 sampler steps: a smoke test")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.out, args.device, args.samples, args.samplers, args.quick, args.reuse)
        return
    names = args.only or list(VARIANTS)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    waiting, running = list(names), {}
    start = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < (args.jobs or len(names)):
            name = waiting.pop(0)
            cmd = [sys.executable, __file__, str(args.out), "--worker", name, "--device", args.device,
                   "--samples", str(args.samples), "--samplers", *args.samplers]
            cmd += (["--quick"] if args.quick else []) + (["--reuse"] if args.reuse else [])
            with open(args.out / f"{name}.log", "w") as log:
                running[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        for name, p in list(running.items()):
            if p.poll() is not None:
                del running[name]
                if p.returncode:
                    print(f"{name}: failed ({p.returncode}); see {args.out / (name + '.log')}", flush=True)
        if args.deadline_s is not None and time.perf_counter() - start > args.deadline_s:
            for name, p in running.items():
                p.kill()
                print(f"{name}: killed at the deadline", flush=True)
            break
        time.sleep(1)
    table = summary(args.out, names)
    (args.out / "summary.md").write_text(table + "\n")
    print(table)
    print(f"sweep wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
