"""Sampler overhead: time outside network calls / time inside them, before and after, side by side.

The model is a small SEDD-style DiT (random weights) at 50,258 classes (GPT-2's 50,257 tokens
and a mask), where the sampler's float64 work is largest next to the network. In one process,
on the same batches, alternating:
- before: `lsd.sample(..., dense=True)`, every step's float64 [B, L, dim] probabilities (the
  specification, kept as `lsd.step.dense_step`);
- after: the default sparse steps (`lsd.sparse_step.sparse_step`): a float32 bound on each
  position's move mass, float64 rows only for the positions that may move.
Both runs must give the same samples bit for bit (checked). Goal: at most 10% after.
Also: sampling / (NFE x one forward pass timed apart), noisier on shared cores; and the same
before/after ratio for an LSD teacher rollout (`lsd.optimize.teacher.teacher_rollout`, dense=True
or not; same record bit for bit), whose record copies stay dense.

    python benchmarks/sampler_overhead.py [--quick] [--batch 4 --length 256 --vocab 50257 --nfe 8 --threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import lsd
from lsd.backbones.dit import DiTConfig, build_dit
from lsd.optimize.teacher import teacher_rollout


class TimedModel:
    """Counts calls and the wall time spent inside the network."""

    def __init__(self, model):
        self.model, self.calls, self.seconds = model, 0, 0.0

    def __call__(self, x, sigma_bar):
        t0 = time.perf_counter()
        out = self.model(x, sigma_bar)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def timed_sampling(net, schedule, graph, noise, batch, length, seed, dense):
    """(samples, wall s, seconds inside the network) of one sampling run."""
    timed = TimedModel(net)
    t0 = time.perf_counter()
    x = lsd.sample(timed, schedule, graph=graph, noise=noise, num_samples=batch, length=length, batch_size=batch,
                   seed=seed, dense=dense)
    wall = time.perf_counter() - t0
    assert timed.calls == schedule.nfe
    return x, wall, timed.seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 2, length 128, 1 repeat (same network)")
    ap.add_argument("--batch", type=int, default=None, help="default 4 (--quick 2)")
    ap.add_argument("--length", type=int, default=None, help="default 256 (--quick 128)")
    ap.add_argument("--vocab", type=int, default=50257, help="real tokens (the DiT scores vocab + 1 classes)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--nfe", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=None, help="default 2 (--quick 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bases", default="euler,tweedie", help="comma-separated base rules")
    ap.add_argument("--teacher-steps", type=int, default=None, help="teacher rollout steps N (default 64, "
                    "--quick 16; 0 skips the teacher); its length is --teacher-length, its trajectories --batch")
    ap.add_argument("--teacher-length", type=int, default=64)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    for name, full, quick in (("batch", 4, 2), ("length", 256, 128), ("repeats", 2, 1), ("teacher_steps", 64, 16)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = DiTConfig(tokens=args.vocab, hidden_size=args.hidden, n_heads=4, n_blocks=args.blocks, cond_dim=64,
                    length=args.length)
    net = build_dit(cfg).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    x = torch.randint(0, args.vocab + 1, (args.batch, args.length))
    sb = noise.total(torch.full((args.batch,), 0.5, dtype=torch.float64))
    with torch.no_grad():
        net(x, sb)  # warm-up
        forward = []
        for _ in range(3):
            t0 = time.perf_counter()
            net(x, sb)
            forward.append(time.perf_counter() - t0)
    f = statistics.median(forward)
    print(f"model: DiT hidden {args.hidden}, {args.blocks} blocks, {graph.dim} classes, batch {args.batch}, "
          f"length {args.length}, NFE {args.nfe}, {args.threads} thread(s); one forward pass {f * 1e3:.1f} ms")
    results = []
    for base in args.bases.split(","):
        schedule = lsd.Schedule.uniform(base, args.nfe)
        runs = {"before": [], "after": []}
        for r in range(args.repeats):
            samples = {}
            for label, dense in (("before", True), ("after", False)):  # alternate: shared cores drift
                samples[label], wall, inside = timed_sampling(net, schedule, graph, noise, args.batch, args.length,
                                                              seed=r, dense=dense)
                runs[label].append((wall, inside))
            if not torch.equal(samples["before"], samples["after"]):
                raise AssertionError(f"{base}: the sparse sampler's samples differ from the dense ones (seed {r})")
        row = {"base": base, "identical_samples": True}
        for label, pairs in runs.items():
            row[label] = {"wall_s": statistics.median(w for w, _ in pairs),
                          "network_s": statistics.median(i for _, i in pairs),
                          "outside_over_inside": statistics.median((w - i) / i for w, i in pairs),
                          "sampling_over_nfe_forward": statistics.median(w for w, _ in pairs) / (args.nfe * f)}
        results.append(row)
        b, a = row["before"], row["after"]
        print(f"{base:8s} outside network calls / inside: before {100 * b['outside_over_inside']:7.1f}%   "
              f"after {100 * a['outside_over_inside']:6.1f}%   (goal <= 10%)   samples identical: yes")
        print(f"{'':8s} wall before {b['wall_s']:.2f} s, after {a['wall_s']:.2f} s; sampling / (NFE x forward): "
              f"before {b['sampling_over_nfe_forward']:.3f}, after {a['sampling_over_nfe_forward']:.3f}")
    teacher = None
    if args.teacher_steps:
        teacher = {"steps": args.teacher_steps, "length": args.teacher_length, "trajectories": args.batch}
        records = {}
        for label, dense in (("before", True), ("after", False)):
            timed = TimedModel(net)
            t0 = time.perf_counter()
            records[label] = teacher_rollout(timed, graph, noise, length=args.teacher_length,
                                             trajectories=args.batch, steps=args.teacher_steps, candidates=8,
                                             batch_size=args.batch, dense=dense)
            wall = time.perf_counter() - t0
            teacher[label] = {"wall_s": wall, "network_s": timed.seconds,
                              "outside_over_inside": (wall - timed.seconds) / timed.seconds}
        for name in ("states", "log_scores", "cum_move", "samples"):
            if not torch.equal(getattr(records["before"], name), getattr(records["after"], name)):
                raise AssertionError(f"teacher: the sparse rollout's {name} differ from the dense ones")
        del records
        print(f"teacher  outside network calls / inside: before {100 * teacher['before']['outside_over_inside']:7.1f}%"
              f"   after {100 * teacher['after']['outside_over_inside']:6.1f}%   (N={args.teacher_steps}, length "
              f"{args.teacher_length}, {args.batch} trajectories, 8 candidates; record identical: yes)")
    worst = max(results, key=lambda r: r["after"]["outside_over_inside"])
    out = {"forward_s": f, "nfe": args.nfe, "results": results, "teacher": teacher,
           # the summary (benchmarks/__main__.py): the worst base rule, after
           "in_run_overhead": worst["after"]["outside_over_inside"], "sampling_s": worst["after"]["wall_s"],
           "ratio": worst["after"]["sampling_over_nfe_forward"],
           "before_in_run_overhead": worst["before"]["outside_over_inside"],
           "setting": {"batch": args.batch, "length": args.length, "vocab": args.vocab, "classes": graph.dim,
                       "hidden": args.hidden, "blocks": args.blocks, "threads": args.threads,
                       "repeats": args.repeats, "bases": args.bases.split(","), "base": worst["base"]}}
    if args.json:
        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(out, fh, indent=1)
        os.replace(tmp, args.json)
    return out


if __name__ == "__main__":
    main()
