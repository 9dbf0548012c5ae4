"""Distillation overhead: LSD+ cell wall time / the network time it needs, in the same run.

One `lsd.optimize.lsd.distill(method='lsd+')` cell (N-step teacher rollout, transition-cost
grid search, sequential coefficient fit) on a small random SEDD-kind DiT. The network is
wrapped in a timer (`benchmarks.common.IntervalTimer`, the `TimedModel` of
sampler_overhead.py plus per-call intervals), so the time inside the teacher's and the
student's network calls is measured inside the very run whose wall time it divides.
Goal: wall / network <= 1.2. The call intervals also split the wall time into phases:
teacher rollout, grid search (between the last teacher call and the first student call)
and coefficient fit.

Peak memory: the teacher record holds G candidate times x trajectories x length x dim
float32 twice (scores and summed moves), whatever the teacher's step count N. Each probe
runs one cell in a fresh process and reports the growth of its peak resident set size
(VmHWM, the kernel's peak RSS that getrusage reports as ru_maxrss, reset through
/proc/self/clear_refs once the model is built and warmed up, minus the RSS then) and, on
CUDA, torch.cuda.max_memory_allocated; N=256 and N=1024 run at the same model, batch,
length, vocabulary and candidates. The probes use a smaller network (hidden 64, 1 block by
default) so that the 1024-step teacher stays cheap: the record does not depend on it.

    python benchmarks/distill_overhead.py [--quick] [--threads 1] [--teacher-steps 1024]
        [--trajectories 64] [--no-memory]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import (IntervalTimer, maxrss_mib, peak_rss_mib, reset_peak_rss, rss_mib,  # noqa: E402
                               set_threads, sync)  # noqa: E402
from lsd.backbones.dit import DiTConfig, build_dit  # noqa: E402
from lsd.optimize.lsd import distill  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=256, 16 trajectories, 64 candidates; memory probes at 8 trajectories")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--nfe", type=int, default=8)
    ap.add_argument("--teacher-steps", type=int, default=None, help="default 1024 (--quick: 256)")
    ap.add_argument("--trajectories", type=int, default=None, help="default 64 (--quick: 16)")
    ap.add_argument("--candidates", type=int, default=None, help="default 128 (--quick: 64)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: all trajectories in one batch")
    ap.add_argument("--no-memory", action="store_true", help="skip the N=256 vs N=1024 peak-memory probes")
    ap.add_argument("--memory-steps", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--memory-trajectories", type=int, default=None,
                    help="trajectories of the memory probes (default: --trajectories; --quick: 8)")
    ap.add_argument("--memory-hidden", type=int, default=None, help="probe network width (default 64)")
    ap.add_argument("--memory-blocks", type=int, default=None, help="probe network blocks (default 1)")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # internal: one memory probe
    args = ap.parse_args(argv)
    args.teacher_steps = args.teacher_steps or (256 if args.quick else 1024)
    args.trajectories = args.trajectories or (16 if args.quick else 64)
    args.candidates = args.candidates or (64 if args.quick else 128)
    args.batch_size = args.batch_size or args.trajectories
    args.memory_trajectories = args.memory_trajectories or (8 if args.quick else args.trajectories)
    args.memory_hidden = args.memory_hidden or 64
    args.memory_blocks = args.memory_blocks or 1
    return args


def build(args):
    torch.manual_seed(0)
    cfg = DiTConfig(tokens=args.vocab, hidden_size=args.hidden, n_heads=4, n_blocks=args.blocks, cond_dim=64,
                    length=args.length, kind="sedd")
    net = build_dit(cfg, device=args.device).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    x = torch.full((args.batch_size, args.length), graph.mask_id, device=args.device)
    with torch.no_grad():  # warm-up at the batch the cell uses
        net(x, noise.total(torch.full((args.batch_size,), 0.5, dtype=torch.float64, device=args.device)))
    return cfg, net, graph, noise


def record_bytes(candidates: int, trajectories: int, length: int, dim: int) -> int:
    """Bytes of a TeacherRecord: states (int64) + log_scores and cum_move (float32)."""
    return candidates * trajectories * length * 8 + (2 * candidates + 1) * trajectories * length * dim * 4


def run_cell(args, net, graph, noise) -> dict:
    timer = IntervalTimer(net, args.device)
    sync(args.device)
    t0 = time.perf_counter()
    schedule = distill(timer, graph, noise, method="lsd+", nfe=args.nfe, length=args.length,
                       teacher_steps=args.teacher_steps, trajectories=args.trajectories,
                       candidates=args.candidates, batch_size=args.batch_size, device=args.device)
    sync(args.device)
    wall = time.perf_counter() - t0
    meta = schedule.metadata
    if meta["network_calls"] != timer.calls:
        raise RuntimeError(f"distill counted {meta['network_calls']} calls, the timer {timer.calls}")
    n_teacher = meta["teacher_calls"]
    last_teacher_end = timer.intervals[n_teacher - 1][1]
    first_student_start = timer.intervals[n_teacher][0]
    return {
        "wall_s": wall,
        "network_s": timer.seconds,
        "ratio": wall / timer.seconds,
        "calls": timer.calls,
        "teacher_calls": n_teacher,
        "student_calls": timer.calls - n_teacher,
        "phases": {
            "teacher": {"wall_s": last_teacher_end - t0, "network_s": timer.seconds_between(0, n_teacher)},
            "grid": {"wall_s": first_student_start - last_teacher_end, "network_s": 0.0},
            "fit": {"wall_s": t0 + wall - first_student_start,
                    "network_s": timer.seconds_between(n_teacher, timer.calls)},
        },
        "grid": meta["kappa"],
    }


def probe(args) -> dict:
    """Run in a fresh process: peak-RSS growth (and CUDA peak) of one cell."""
    cfg, net, graph, noise = build(args)
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    gc.collect()
    reset = reset_peak_rss()
    before = rss_mib() if reset else maxrss_mib()
    cell = run_cell(args, net, graph, noise)
    after = peak_rss_mib() if reset else maxrss_mib()
    out = {"teacher_steps": args.teacher_steps, "rss_before_mib": before, "peak_rss_mib": after,
           "peak_delta_mib": after - before, "wall_s": cell["wall_s"],
           "method": "VmHWM after reset (clear_refs) - RSS before" if reset else "ru_maxrss after - before"}
    if torch.device(args.device).type == "cuda":
        out["cuda_peak_mib"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2 ** 20
    return out


def memory_probes(args) -> list[dict]:
    rows = []
    for steps in args.memory_steps:
        cmd = [sys.executable, "-m", "benchmarks.distill_overhead", "--probe", "--threads", str(args.threads),
               "--device", args.device, "--hidden", str(args.memory_hidden), "--blocks", str(args.memory_blocks),
               "--vocab", str(args.vocab), "--length", str(args.length), "--nfe", str(args.nfe),
               "--teacher-steps", str(steps), "--trajectories", str(args.memory_trajectories),
               "--batch-size", str(args.memory_trajectories), "--candidates", str(args.candidates)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe N={steps} failed: {proc.stderr.strip().splitlines()[-1:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def main(argv=None) -> dict:
    args = parse(argv)
    set_threads(args.threads)
    if args.probe:
        print(json.dumps(probe(args)))
        return {}
    cfg, net, graph, noise = build(args)
    cell = run_cell(args, net, graph, noise)
    dim = graph.dim
    out = {"setting": {"model": f"SEDD-kind DiT hidden {args.hidden}, {args.blocks} blocks, vocab {args.vocab}+1",
                       "length": args.length, "nfe": args.nfe, "teacher_steps": args.teacher_steps,
                       "trajectories": args.trajectories, "candidates": args.candidates,
                       "batch_size": args.batch_size, "threads": args.threads, "device": args.device},
           **cell}
    print(f"LSD+ cell: {out['setting']['model']}, length {args.length}, NFE {args.nfe}, N={args.teacher_steps}, "
          f"{args.trajectories} trajectories, {args.candidates} candidates, {args.threads} thread(s), {args.device}")
    print(f"{'phase':<8} {'wall s':>9} {'network s':>10} {'wall/network':>13}")
    for name, p in cell["phases"].items():
        r = p["wall_s"] / p["network_s"] if p["network_s"] > 0 else float("inf")
        print(f"{name:<8} {p['wall_s']:9.3f} {p['network_s']:10.3f} {r:13.3f}")
    print(f"{'total':<8} {cell['wall_s']:9.3f} {cell['network_s']:10.3f} {cell['ratio']:13.3f}   "
          f"({cell['teacher_calls']} teacher + {cell['student_calls']} student calls)")
    print(f"distillation overhead: wall / network = {cell['ratio']:.3f} "
          f"({'meets' if cell['ratio'] <= 1.2 else 'misses'} the 1.2 goal)")
    if not args.no_memory:
        rows = memory_probes(args)
        expected = record_bytes(args.candidates, args.memory_trajectories, args.length, dim)
        out["memory"] = {"method": "peak RSS growth in a fresh process, from model built and warmed up to cell "
                                   f"done ({rows[0]['method']}; VmHWM is getrusage's maxrss)"
                                   + ("; torch.cuda.max_memory_allocated" if args.device != "cpu" else ""),
                         "trajectories": args.memory_trajectories, "record_bytes": expected, "probes": rows,
                         "model": f"hidden {args.memory_hidden}, {args.memory_blocks} block(s)"}
        print(f"peak memory, DiT hidden {args.memory_hidden} x {args.memory_blocks} block(s), "
              f"{args.memory_trajectories} trajectories x length {args.length} x dim {dim}, "
              f"{args.candidates} candidates (teacher record {expected / 2 ** 20:.1f} MiB by count), "
              f"{out['memory']['method']}:")
        for r in rows:
            extra = f", CUDA peak {r['cuda_peak_mib']:.1f} MiB" if "cuda_peak_mib" in r else ""
            print(f"  N={r['teacher_steps']:<5} +{r['peak_delta_mib']:8.1f} MiB (cell {r['wall_s']:.1f} s){extra}")
        if len(rows) >= 2:
            ratio = rows[-1]["peak_delta_mib"] / max(rows[0]["peak_delta_mib"], 1e-9)
            out["memory"]["ratio_last_first"] = ratio
            print(f"  peak growth N={rows[-1]['teacher_steps']} / N={rows[0]['teacher_steps']} = {ratio:.3f} "
                  f"(the teacher steps grew x{rows[-1]['teacher_steps'] / rows[0]['teacher_steps']:.0f})")
    return out


if __name__ == "__main__":
    main()
