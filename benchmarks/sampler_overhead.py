"""Sampler overhead: sampling wall time / (NFE x one forward pass), measured side by side.

The model is a small SEDD-style DiT (random weights). Both timings run in the same process
on the same batch size, so the ratio is what matters, not the absolute seconds. Goal: the
sampler (float64 step probabilities, categorical draws, random streams) adds at most 5%
to the network time.

    python benchmarks/sampler_overhead.py [--quick] [--batch 64 --length 128 --vocab 128 --nfe 16 --threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import lsd
from lsd.backbones.dit import DiTConfig, build_dit


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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 16, length 64, NFE 8, 2 repeats (same network)")
    ap.add_argument("--batch", type=int, default=None, help="default 64 (--quick 16)")
    ap.add_argument("--length", type=int, default=None, help="default 128 (--quick 64)")
    ap.add_argument("--vocab", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--nfe", type=int, default=None, help="default 16 (--quick 8)")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (--quick 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--base", default="euler", choices=["euler", "tweedie"])
    args = ap.parse_args(argv)
    for name, full, quick in (("batch", 64, 16), ("length", 128, 64), ("nfe", 16, 8), ("repeats", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = DiTConfig(tokens=args.vocab, hidden_size=args.hidden, n_heads=4, n_blocks=args.blocks, cond_dim=64,
                    length=args.length)
    net = build_dit(cfg).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    schedule = lsd.Schedule.uniform(args.base, args.nfe)

    # One forward pass on a half-masked batch (the sampler's typical state), timed the same way.
    x = torch.randint(0, args.vocab + 1, (args.batch, args.length))
    sb = noise.total(torch.full((args.batch,), 0.5, dtype=torch.float64))
    with torch.no_grad():
        net(x, sb)  # warm-up
        forward = []
        for _ in range(args.repeats * 3):
            t0 = time.perf_counter()
            net(x, sb)
            forward.append(time.perf_counter() - t0)
    lsd.sample(net, lsd.Schedule.uniform(args.base, 2), graph=graph, noise=noise, num_samples=args.batch,
               length=args.length, batch_size=args.batch)  # warm-up
    sampling, inside = [], []
    for r in range(args.repeats):
        timed = TimedModel(net)
        t0 = time.perf_counter()
        lsd.sample(timed, schedule, graph=graph, noise=noise, num_samples=args.batch, length=args.length,
                   batch_size=args.batch, seed=r)
        sampling.append(time.perf_counter() - t0)
        inside.append(timed.seconds)
        assert timed.calls == schedule.nfe
    f, s = statistics.median(forward), statistics.median(sampling)
    ratio = s / (schedule.nfe * f)
    # The same quantity from inside one run: time outside the network calls / time inside them.
    in_run = statistics.median([(a - b) / b for a, b in zip(sampling, inside)])
    print(f"model: DiT hidden {args.hidden}, {args.blocks} blocks, vocab {args.vocab}+1, batch {args.batch}, "
          f"length {args.length}, {args.threads} thread(s), {args.base}")
    print(f"one forward pass      {f * 1e3:9.2f} ms (median of {len(forward)})")
    print(f"sampling, NFE={schedule.nfe:<3}      {s * 1e3:9.2f} ms (median of {len(sampling)})")
    print(f"sampling / (NFE x forward) = {ratio:.4f}  ->  sampler overhead {100 * (ratio - 1):+.1f}% "
          f"(goal <= +5%)")
    print(f"within the same sampling runs: time outside network calls / inside = {100 * in_run:.2f}%")
    return {"forward_s": f, "sampling_s": s, "nfe": schedule.nfe, "ratio": ratio, "in_run_overhead": in_run,
            "setting": {"batch": args.batch, "length": args.length, "vocab": args.vocab, "hidden": args.hidden,
                        "blocks": args.blocks, "threads": args.threads, "base": args.base, "repeats": args.repeats}}


if __name__ == "__main__":
    main()
