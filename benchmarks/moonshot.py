"""The moonshot of issue 5: does lsd-spread close half of the NFE-8 gap to the teacher?

For each seed: one N-step uniform Euler teacher rollout (`--trajectories` sequences, the
distillation seed) is shared by the lsd-spread fits of every NFE; lsd-spread chooses its
grid and strength theta on held-out rollouts of that seed (`lsd.optimize.spread`). Every
sampler then draws `--samples` sequences with `lsd.sample` at seed 1000 + seed (never the
distillation's streams; `benchmarks.distill_quality.sample_rows`). Rows:

  euler            uniform grid, the base rule's own choice of positions
  spread-theta0    uniform grid, spread rule with theta = 0: a rounded count at random positions
  spread-thetainf  uniform grid, spread rule with theta = inf: pure farthest point (selection alone)
  euler@grid       lsd-spread's grid without the selection rule (the grid alone)
  lsd-spread       the distilled schedule (grid and theta chosen by the objective)
  teacher          the N-step uniform Euler sampler (N network calls)

Oracle NLL (nats/token) and unigram entropy are pooled over seeds with 95% bootstrap
intervals over samples; the share of the gap closed is (euler - row) / (euler - teacher) at
the same NFE, and the headline is the NFE-8 one. Written to OUT/<backbone>/summary.md (with
samples.csv and schedules.json); OUT/summary.md collects every backbone's summary.

    python -m benchmarks.moonshot --backbone oracle-exact
    python -m benchmarks.moonshot --backbone tiny-radd-text --samples 64 --trajectories 16 \
        --strengths 0 1 4 inf --grids uniform lsd+ geometric:16
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import torch

import lsd
from benchmarks.distill_quality import cell_stats, load_study, sample_rows, study_parser
from lsd.io import atomic_write_text
from lsd.optimize.spread import GRIDS, STRENGTHS, distill_spread, spread_schedule
from lsd.optimize.teacher import teacher_rollout

ORDER = ("teacher", "lsd-spread", "spread-thetainf", "euler@grid", "spread-theta0", "euler")


def main(argv=None):
    ap = study_parser(__doc__, out="benchmarks/results/moonshot")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--batch-size", type=int, default=64, help="distillation batch size")
    ap.add_argument("--strengths", nargs="+", default=None, help="theta candidates (default: lsd.optimize.spread's)")
    ap.add_argument("--grids", nargs="+", default=None, help="grid candidates (default: lsd.optimize.spread's)")
    args = ap.parse_args(argv)
    bb, task = load_study(args)
    args.strengths = [float(s) for s in args.strengths] if args.strengths else list(STRENGTHS)
    args.grids = list(args.grids or GRIDS)
    rows, fitted = [], []
    started = time.perf_counter()
    for seed in args.seeds:
        t0 = time.perf_counter()
        record = teacher_rollout(bb.model, bb.graph, bb.noise, length=bb.length, trajectories=args.trajectories,
                                 steps=args.teacher_steps, candidates=args.candidates, seed=seed,
                                 batch_size=args.batch_size)
        teacher_wall = time.perf_counter() - t0
        print(f"seed {seed}: teacher {args.teacher_steps} steps x {args.trajectories} trajectories "
              f"({teacher_wall:.1f} s)", flush=True)
        rows += sample_rows(bb, task, lsd.Schedule.uniform("euler", args.teacher_steps), args.samples, seed,
                            sampler="teacher", nfe=args.teacher_steps)
        for nfe in args.nfe:
            t1 = time.perf_counter()
            learned = distill_spread(bb.model, bb.graph, bb.noise, nfe=nfe, length=bb.length, record=record,
                                     strengths=args.strengths, grids=args.grids, batch_size=args.batch_size,
                                     backbone=args.backbone)
            m = learned.metadata
            print(f"  lsd-spread NFE {nfe} seed {seed}: grid {m['grid']}, theta {m['strength']}, objective "
                  f"{m['objective']:.3f} nats/seq, {m['objective_calls']} calls, {time.perf_counter() - t1:.1f} s",
                  flush=True)
            fitted.append({"nfe": nfe, "seed": seed, "teacher_calls": record.calls,
                           "teacher_wall_time_s": teacher_wall, "schedule": learned.to_dict()})
            uniform = lsd.Schedule.uniform("euler", nfe)
            scheds = {"euler": uniform,
                      "spread-theta0": spread_schedule("euler", uniform.times, 0.0),
                      "spread-thetainf": spread_schedule("euler", uniform.times, math.inf),
                      "euler@grid": lsd.Schedule("euler", learned.times),
                      "lsd-spread": learned}
            for name, s in scheds.items():
                rows += sample_rows(bb, task, s, args.samples, seed, sampler=name, nfe=nfe)
    frame = pd.DataFrame(rows)
    out = Path(args.out) / args.backbone
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "samples.csv", frame.to_csv(index=False))
    atomic_write_text(out / "schedules.json", json.dumps(fitted, indent=1) + "\n")
    total = time.perf_counter() - started
    summary = summarise(frame, fitted, args, total)
    atomic_write_text(out / "summary.md", summary)
    collect(Path(args.out))
    print(summary)


def summarise(frame: pd.DataFrame, fitted: list, args, total_s: float) -> str:
    s = cell_stats(frame)
    teacher = s[s.sampler == "teacher"].iloc[0]
    first = min(args.nfe)
    lines = [f"# Moonshot on `{args.backbone}`: lsd-spread", "",
             f"Oracle NLL (nats/token, lower is better) and unigram entropy, {args.samples} samples x "
             f"{len(args.seeds)} seeds (sampling seeds 1000 + {args.seeds}) per cell, 95% bootstrap intervals over "
             f"samples; seed sd: standard deviation of the per-seed means. Teacher: {args.teacher_steps}-step uniform "
             f"Euler, NLL {teacher.nll:.4f} [{teacher.nll_lo:.4f}, {teacher.nll_hi:.4f}], entropy "
             f"{teacher.entropy:.4f} [{teacher.entropy_lo:.4f}, {teacher.entropy_hi:.4f}]. Gap closed: "
             f"(euler - row) / (euler - teacher) at the row's NFE. lsd-spread was fitted per seed and NFE on "
             f"{args.trajectories} held-out rollouts of the distillation seed (grids {args.grids}, theta in "
             f"{['inf' if math.isinf(t) else t for t in args.strengths]}).", ""]
    verdict = []
    for nfe, g in s[s.sampler != "teacher"].groupby("nfe"):
        euler = float(g[g.sampler == "euler"].nll.iloc[0])
        gap = euler - teacher.nll
        lines += [f"## NFE {nfe}", "", f"Gap (euler - teacher): {gap:.4f} nats/token.", "",
                  "| sampler | NLL [95% CI] | seed sd | gap closed | entropy [95% CI] | entropy vs teacher |",
                  "|---|---|---|---|---|---|"]
        g = g.assign(rank=g.sampler.map({n: i for i, n in enumerate(ORDER)}).fillna(99)).sort_values("rank")
        for _, r in g.iterrows():
            closed = (euler - r.nll) / gap if gap != 0 else float("nan")
            lines.append(f"| {r.sampler} | {r.nll:.4f} [{r.nll_lo:.4f}, {r.nll_hi:.4f}] | {r.seed_sd:.4f} | "
                         f"{100 * closed:+.1f}% | {r.entropy:.4f} [{r.entropy_lo:.4f}, {r.entropy_hi:.4f}] | "
                         f"{100 * (r.entropy / teacher.entropy - 1):+.2f}% |")
        fits = [f for f in fitted if f["nfe"] == nfe]
        chosen = ", ".join(f"seed {f['seed']}: {f['schedule']['metadata']['grid']} / theta "
                           f"{f['schedule']['metadata']['strength']}" for f in fits)
        wall = sum(f["schedule"]["metadata"]["wall_time_s"] for f in fits) / len(fits)
        calls = sum(f["schedule"]["metadata"]["objective_calls"] for f in fits) / len(fits)
        lines += ["", f"Chosen (grid / theta): {chosen}. Fit cost per seed at this NFE, mean over seeds (the "
                  f"seed's teacher rollout is shared and not counted): {wall:.1f} s, {calls:.0f} batched network "
                  f"calls on {args.trajectories} held-out rollouts "
                  f"({len(fits[0]['schedule']['metadata']['search'])} candidates).", ""]
        if nfe == first:
            row = g[g.sampler == "lsd-spread"].iloc[0]
            closed = (euler - row.nll) / gap
            ent = row.entropy / teacher.entropy - 1
            verdict = [f"**Goal (NFE {first}: close >= 50% of the gap, entropy within 2% of the teacher's): "
                       f"{'MET' if closed >= 0.5 and abs(ent) <= 0.02 else 'NOT MET'}.** lsd-spread NLL "
                       f"{row.nll:.4f} [{row.nll_lo:.4f}, {row.nll_hi:.4f}] vs euler {euler:.4f} and teacher "
                       f"{teacher.nll:.4f}: {100 * closed:.1f}% of the gap closed; entropy {row.entropy:.4f} vs "
                       f"{teacher.entropy:.4f} ({100 * ent:+.2f}%).", ""]
    teacher_wall = sum(f["teacher_wall_time_s"] for f in fitted if f["nfe"] == first) / len(args.seeds)
    lines = lines[:2] + verdict + lines[2:]
    lines += [f"Teacher rollout per seed: {teacher_wall:.1f} s, {fitted[0]['teacher_calls']} network calls "
              f"({args.trajectories} trajectories). Whole benchmark: {total_s:.0f} s on "
              f"{torch.get_num_threads()} CPU thread(s). Sampling with lsd-spread costs exactly NFE network calls "
              f"per sample, like every other row.", ""]
    return "\n".join(lines)


def collect(out: Path) -> None:
    """OUT/summary.md: every backbone's summary, one after the other."""
    parts = [p.read_text() for p in sorted(out.glob("*/summary.md"))]
    header = ("# Moonshot results (issue 5): lsd-spread\n\nGenerated by `python -m benchmarks.moonshot`; one section "
              "per backbone (each also in `<backbone>/summary.md`). Method: docs/moonshot.md.\n\n")
    atomic_write_text(out / "summary.md", header + "\n".join(_demote(p) for p in parts))


def _demote(text: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines()) + "\n"


if __name__ == "__main__":
    main()
