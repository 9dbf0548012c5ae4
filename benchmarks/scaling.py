"""Scaling: how sampling and distillation time grow with NFE, sequence length and batch size.

A small random SEDD-kind DiT, one process, every point timed the same way (best of
--repeats). Series:

- sampling vs NFE (8, 16, 32, 64) at fixed batch and length: should be linear in NFE
  (fitted slope, intercept and R^2 of time against NFE; log-log exponent ~ 1);
- sampling vs sequence length and vs batch size at NFE 8 (log-log exponents);
- LSD+ student vs NFE: `distill(method='lsd+', record=...)` on one shared teacher record, its
  transition costs computed once beforehand (memoised on the record and timed apart), so
  what remains (grid search by dynamic programming + sequential fit, NFE network calls)
  should be linear in NFE;
- teacher rollout vs its step count N, vs length and vs trajectories (the part of an LSD+
  cell that dominates it).

Writes one figure (log-log axes, a slope-1 guide per panel) to benchmarks/scaling.png.

    python benchmarks/scaling.py [--quick] [--threads 1] [--plot benchmarks/scaling.png]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lsd  # noqa: E402
from benchmarks.common import fit_line, set_threads, sync  # noqa: E402
from lsd.backbones.dit import DiTConfig, build_dit  # noqa: E402
from lsd.optimize.lsd import distill  # noqa: E402
from lsd.optimize.lsd_grid import transition_costs  # noqa: E402
from lsd.optimize.teacher import teacher_rollout  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--length", type=int, default=64, help="length of the NFE and batch series")
    ap.add_argument("--batch", type=int, default=None, help="batch of the NFE and length series (default 32; --quick 8)")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--lengths", type=int, nargs="+", default=None)
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--teacher-steps", type=int, nargs="+", default=None, help="teacher N series")
    ap.add_argument("--trajectories", type=int, default=None, help="teacher trajectories (default 16; --quick 4)")
    ap.add_argument("--repeats", type=int, default=None, help="best of (default 3; --quick 2)")
    ap.add_argument("--plot", default=str(HERE / "scaling.png"), help="figure path ('' for none)")
    args = ap.parse_args(argv)
    q = args.quick
    args.batch = args.batch or (8 if q else 32)
    args.lengths = args.lengths or ([32, 64, 128, 256] if q else [32, 64, 128, 256, 512])
    args.batches = args.batches or ([2, 4, 8, 16] if q else [4, 8, 16, 32, 64])
    args.teacher_steps = args.teacher_steps or ([16, 32, 64, 128] if q else [64, 128, 256, 512])
    args.trajectories = args.trajectories or (4 if q else 16)
    args.repeats = args.repeats or (2 if q else 3)
    return args


def best_of(repeats: int, device, fn) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def series(name, xs, fn, unit) -> dict:
    ys = [fn(x) for x in xs]
    fit = fit_line(xs, ys)
    print(f"{name:<34} " + "  ".join(f"{x}:{y * 1e3:.0f}ms" for x, y in zip(xs, ys)))
    print(f"{'':<34} slope {fit['slope'] * 1e3:.2f} ms/{unit}, intercept {fit['intercept'] * 1e3:.1f} ms, "
          f"R^2 {fit['r2']:.4f}; log-log exponent {fit['loglog_exponent']:.3f}")
    return {"x": list(xs), "seconds": ys, "unit": unit, **fit}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("NFE / teacher steps N", ["sampling_vs_nfe", "student_vs_nfe", "teacher_vs_steps"]),
              ("sequence length", ["sampling_vs_length", "teacher_vs_length"]),
              ("batch size / trajectories", ["sampling_vs_batch", "teacher_vs_trajectories"])]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (xlabel, keys) in zip(axes, panels):
        for key in keys:
            s = results[key]
            ax.loglog(s["x"], s["seconds"], "o-", label=f"{key.replace('_', ' ')} (exp {s['loglog_exponent']:.2f})")
        first = results[keys[0]]
        x0, y0 = first["x"][0], first["seconds"][0]
        xs = [first["x"][0], first["x"][-1]]
        ax.loglog(xs, [y0 * x / x0 for x in xs], "k:", lw=1, label="slope 1")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (best of repeats)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(results["setting"], fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse(argv)
    set_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    cfg = DiTConfig(tokens=args.vocab, hidden_size=args.hidden, n_heads=4, n_blocks=args.blocks, cond_dim=64,
                    length=args.length, kind="sedd")
    net = build_dit(cfg, device=dev).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    setting = (f"SEDD-kind DiT hidden {args.hidden}, {args.blocks} blocks, vocab {args.vocab}+1; sampling batch "
               f"{args.batch}, length {args.length}; teacher {args.trajectories} trajectories; {args.threads} "
               f"thread(s), {dev}; best of {args.repeats}")
    print(setting)
    r = args.repeats

    def sampling(nfe, batch, length):
        schedule = lsd.Schedule.uniform("euler", nfe)
        return best_of(r, dev, lambda: lsd.sample(net, schedule, graph=graph, noise=noise, num_samples=batch,
                                                   length=length, batch_size=batch, device=dev))

    sampling(2, args.batch, args.length)  # warm-up
    out = {"setting": setting}
    out["sampling_vs_nfe"] = series("sampling vs NFE", args.nfe, lambda n: sampling(n, args.batch, args.length), "NFE")
    out["sampling_vs_length"] = series("sampling vs length (NFE 8)", args.lengths,
                                       lambda L: sampling(8, args.batch, L), "token")
    out["sampling_vs_batch"] = series("sampling vs batch (NFE 8)", args.batches,
                                      lambda b: sampling(8, b, args.length), "sample")

    def teacher(steps, trajectories, length, candidates=None):
        candidates = candidates or min(steps, 32)
        return best_of(r, dev, lambda: teacher_rollout(net, graph, noise, length=length, trajectories=trajectories,
                                                       steps=steps, candidates=candidates, batch_size=trajectories,
                                                       device=dev))

    t_steps = min(args.teacher_steps)
    out["teacher_vs_steps"] = series("teacher vs steps N", args.teacher_steps,
                                     lambda n: teacher(n, args.trajectories, args.length), "step")
    out["teacher_vs_length"] = series(f"teacher vs length (N={t_steps})", args.lengths,
                                      lambda L: teacher(t_steps, args.trajectories, L), "token")
    out["teacher_vs_trajectories"] = series(f"teacher vs trajectories (N={t_steps})", args.batches,
                                            lambda b: teacher(t_steps, b, args.length), "trajectory")

    # LSD+ students on one shared record; its transition costs are computed (and timed) first.
    candidates = max(args.nfe)
    steps = max(candidates, 2 * candidates if args.quick else 4 * candidates)
    record = teacher_rollout(net, graph, noise, length=args.length, trajectories=args.trajectories, steps=steps,
                             candidates=candidates, batch_size=args.trajectories, device=dev)
    t0 = time.perf_counter()
    transition_costs(graph, noise, record, "euler")
    grid_s = time.perf_counter() - t0
    print(f"LSD+ transition costs of {candidates} candidates (once per record): {grid_s * 1e3:.0f} ms")

    def student(nfe):
        return best_of(r, dev, lambda: distill(net, graph, noise, method="lsd+", nfe=nfe, length=args.length,
                                               record=record, batch_size=args.trajectories, device=dev))

    out["student_vs_nfe"] = series(f"LSD+ student vs NFE (N={steps})", args.nfe, student, "NFE")
    out["student_vs_nfe"]["transition_costs_s"] = grid_s
    if args.plot:
        plot(out, args.plot)
        out["plot"] = args.plot
        print(f"figure: {args.plot}")
    return out


if __name__ == "__main__":
    main()
