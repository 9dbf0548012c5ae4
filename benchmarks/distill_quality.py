"""Distillation quality: every sampler of the paper's table on one backbone, against its teacher.

For each seed one N-step uniform Euler teacher rollout is shared by all students of that
seed (distillation is per seed: trajectories, relaxed starts and sampling all change with
it). Every sampler draws `--samples` sequences per seed; oracle NLL (nats/token) and unigram
entropy are pooled over seeds, with 95% bootstrap intervals over samples, and the spread
between seeds is reported beside them. Rows:

  euler, tweedie                uniform grids, Phi = 1
  jys-euler                     Jump Your Steps grid
  lsd-*, lsd+-*                 paper convention (scale: Phi * s), coupled teacher/student,
                                trained as `lsd.optimize.lsd_objective.Training()` says (Adam from Phi = 1,
                                relaxed start with the teacher's tokens; docs/lsd-training.md)
  *-independent                 the same without coupling (ablation)
  *-power                       reference-code convention (s^Phi, fitted on log s)
  temp@X                        uniform sampler at the temperature matching X's entropy
  teacher                       the N-step uniform Euler sampler (reference, N network calls)

Also reported: the share of the NFE-8 gap (uniform Euler minus teacher, in NLL) each row
closes, and whether the paper's ordering LSD+ <= LSD <= JYS <= uniform holds.

    python -m benchmarks.distill_quality --backbone oracle-exact --nfe 8 16 32 64 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import lsd
from lsd.backbones.registry import load_backbone
from lsd.io import atomic_write_text
from lsd.metrics import bootstrap_interval, unigram_entropy_per_sample
from lsd.optimize.lsd import distill
from lsd.optimize.teacher import teacher_rollout
from lsd.tasks import make_task

LEARNED = {  # name: (method, base, convention, coupling)
    "lsd-euler": ("lsd", "euler", "scale", "coupled"),
    "lsd-tweedie": ("lsd", "tweedie", "scale", "coupled"),
    "lsd+-euler": ("lsd+", "euler", "scale", "coupled"),
    "lsd+-tweedie": ("lsd+", "tweedie", "scale", "coupled"),
    "lsd-euler-independent": ("lsd", "euler", "scale", "independent"),
    "lsd+-euler-independent": ("lsd+", "euler", "scale", "independent"),
    "lsd-euler-power": ("lsd", "euler", "power", "coupled"),
    "lsd+-euler-power": ("lsd+", "euler", "power", "coupled"),
}
TEMPERATURE_MATCHED = ("lsd-euler-power", "lsd+-euler-power")


def schedules_for(bb, record, nfe, seed, args, data):
    out = {"euler": lsd.Schedule.uniform("euler", nfe), "tweedie": lsd.Schedule.uniform("tweedie", nfe)}
    if not args.no_jys:
        from lsd.optimize.jys import jys_schedule

        out["jys-euler"] = jys_schedule(bb.model, bb.graph, bb.noise, data, nfe, base="euler", seed=seed,
                                        fine_steps=args.teacher_steps)
    for name, (method, base, convention, coupling) in LEARNED.items():
        out[name] = distill(bb.model, bb.graph, bb.noise, method=method, nfe=nfe, length=bb.length, base=base,
                            convention=convention, coupling=coupling, zeta=args.zeta, record=record)
    return out


def sample_rows(bb, task, schedule, num_samples: int, seed: int, batch_size: int = 256, **labels) -> list[dict]:
    """Draw `num_samples` sequences with `schedule` (sampling seed 1000 + seed, so that sampling
    never reuses the distillation's streams) and return one row per sample: oracle NLL in
    nats/token and unigram entropy, with `labels` and the seed."""
    t0 = time.perf_counter()
    counter = lsd.CallCounter(bb.model)
    x = lsd.sample(counter, schedule, graph=bb.graph, noise=bb.noise, num_samples=num_samples,
                   length=bb.length, seed=1000 + seed, batch_size=batch_size)
    nll = (task.nll(x) / bb.length).numpy()
    ent = unigram_entropy_per_sample(x).numpy()
    label = " ".join(f"{k} {v}" for k, v in labels.items())
    print(f"  {label:<40} seed {seed}: NLL {nll.mean():.4f}  entropy {ent.mean():.4f}  "
          f"({counter.calls // -(-num_samples // batch_size)} calls/sample, {time.perf_counter() - t0:.1f} s)",
          flush=True)
    return [{**labels, "seed": seed, "nll": float(nll[i]), "entropy": float(ent[i])} for i in range(len(x))]


def study_parser(doc: str, *, backbone: str = "oracle-exact", samples: int = 256, teacher_steps: int = 1024,
                 trajectories: int = 64, candidates: int = 128, out: str) -> argparse.ArgumentParser:
    """The arguments every sampler study here shares (distill_quality, ablations, moonshot)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=backbone)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=samples, help="samples per cell and seed")
    ap.add_argument("--teacher-steps", type=int, default=teacher_steps)
    ap.add_argument("--trajectories", type=int, default=trajectories)
    ap.add_argument("--candidates", type=int, default=candidates)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=out)
    return ap


def load_study(args):
    """(backbone, task) of a study, with torch's threads set from --threads."""
    torch.set_num_threads(args.threads)
    bb = load_backbone(args.backbone)
    return bb, make_task(bb.info["task"], **bb.info.get("task_config", {}))


def seed_teacher(bb, task, args, seed: int, **labels):
    """The seed's N-step uniform Euler teacher rollout (shared by every student of the seed) and
    the rows of the teacher's own samples (labelled `sampler="teacher"` and `labels`)."""
    t0 = time.perf_counter()
    record = teacher_rollout(bb.model, bb.graph, bb.noise, length=bb.length, trajectories=args.trajectories,
                             steps=args.teacher_steps, candidates=args.candidates, seed=seed,
                             batch_size=getattr(args, "batch_size", 64))
    print(f"seed {seed}: teacher {args.teacher_steps} steps x {args.trajectories} trajectories "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    rows = sample_rows(bb, task, lsd.Schedule.uniform("euler", args.teacher_steps), args.samples, seed,
                       sampler="teacher", **labels)
    return record, rows


def main(argv=None):
    ap = study_parser(__doc__, out="benchmarks/results/distill_quality")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--zeta", default="0.05")
    ap.add_argument("--no-jys", action="store_true")
    args = ap.parse_args(argv)
    bb, task = load_study(args)
    rows, learned_meta = [], []

    def measure(name, nfe, seed, schedule):
        rows.extend(sample_rows(bb, task, schedule, args.samples, seed, sampler=name, nfe=nfe))

    started = time.perf_counter()
    for seed in args.seeds:
        record, teacher_rows = seed_teacher(bb, task, args, seed, nfe=args.teacher_steps)
        rows.extend(teacher_rows)
        data = task.sample_corpus(args.trajectories, seed=seed)
        for nfe in args.nfe:
            scheds = schedules_for(bb, record, nfe, seed, args, data)
            for name in TEMPERATURE_MATCHED:
                from lsd.optimize.temperature import match_temperature

                scheds[f"temp@{name}"] = match_temperature(bb.model, bb.graph, bb.noise, scheds[name],
                                                           length=bb.length, num_samples=128, seed=seed)
            for name, s in scheds.items():
                measure(name, nfe, seed, s)
                learned_meta.append({"sampler": name, "nfe": nfe, "seed": seed, "times": list(s.times),
                                     "coefficients": list(s.coefficients), "temperature": s.temperature,
                                     "zeta": s.metadata.get("zeta"), "wall_time_s": s.metadata.get("wall_time_s"),
                                     "network_calls": s.metadata.get("network_calls")})
    frame = pd.DataFrame(rows)
    out = Path(args.out) / args.backbone
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "samples.csv", frame.to_csv(index=False))
    atomic_write_text(out / "schedules.json", pd.DataFrame(learned_meta).to_json(orient="records", indent=1))
    summary = summarise(frame, args)
    atomic_write_text(out / "summary.md", summary)
    print(summary)
    print(f"total {time.perf_counter() - started:.0f} s")


def cell_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (sampler, NFE): mean NLL and entropy with 95% bootstrap intervals over the pooled
    samples, and seed_sd, the standard deviation of the per-seed mean NLLs."""
    stats = []
    for (name, nfe), g in frame.groupby(["sampler", "nfe"]):
        nll, ent = bootstrap_interval(g.nll.values), bootstrap_interval(g.entropy.values)
        per_seed = g.groupby("seed").nll.mean()
        stats.append({"sampler": name, "nfe": nfe, "nll": nll.estimate, "nll_lo": nll.low, "nll_hi": nll.high,
                      "seed_sd": per_seed.std(ddof=1) if len(per_seed) > 1 else float("nan"),
                      "entropy": ent.estimate, "entropy_lo": ent.low, "entropy_hi": ent.high, "n": len(g)})
    return pd.DataFrame(stats)


def summarise(frame: pd.DataFrame, args) -> str:
    s = cell_stats(frame)
    teacher = s[s.sampler == "teacher"].iloc[0]
    gap = float(s[(s.sampler == "euler") & (s.nfe == min(args.nfe))].nll.iloc[0] - teacher.nll)
    lines = [f"# Distillation quality on `{args.backbone}`", "",
             f"Oracle NLL (nats/token, lower is better) and unigram entropy, {args.samples} samples x "
             f"{len(args.seeds)} seeds per cell, 95% bootstrap intervals over samples; seed_sd is the standard "
             f"deviation of the per-seed means. Teacher: {args.teacher_steps}-step uniform Euler, "
             f"NLL {teacher.nll:.4f} [{teacher.nll_lo:.4f}, {teacher.nll_hi:.4f}], entropy {teacher.entropy:.4f}. "
             f"Gap at NFE {min(args.nfe)} (uniform Euler - teacher): {gap:.4f} nats/token; a tenth of it is "
             f"{gap / 10:.4f}; widest interval below: "
             f"{float((s.nll_hi - s.nll_lo).max()):.4f}.", ""]
    s = s[s.sampler != "teacher"]
    for nfe, g in s.groupby("nfe"):
        lines += [f"## NFE {nfe}", "", "| sampler | NLL [95% CI] | seed sd | gap closed | entropy [95% CI] | "
                  "entropy vs teacher |", "|---|---|---|---|---|---|"]
        euler = float(g[g.sampler == "euler"].nll.iloc[0])
        for _, r in g.sort_values("nll").iterrows():
            closed = (euler - r.nll) / (euler - teacher.nll) if euler != teacher.nll else float("nan")
            lines.append(f"| {r.sampler} | {r.nll:.4f} [{r.nll_lo:.4f}, {r.nll_hi:.4f}] | {r.seed_sd:.4f} | "
                         f"{100 * closed:+.1f}% | {r.entropy:.4f} [{r.entropy_lo:.4f}, {r.entropy_hi:.4f}] | "
                         f"{100 * (r.entropy / teacher.entropy - 1):+.2f}% |")
        order = [n for n in ("lsd+-euler", "lsd-euler", "jys-euler", "euler") if n in set(g.sampler)]
        vals = [float(g[g.sampler == n].nll.iloc[0]) for n in order]
        holds = all(a <= b for a, b in zip(vals, vals[1:]))
        lines += ["", f"Paper ordering {' <= '.join(order)}: {'holds' if holds else 'does NOT hold'} "
                  f"({', '.join(f'{n} {v:.4f}' for n, v in zip(order, vals))}).", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
