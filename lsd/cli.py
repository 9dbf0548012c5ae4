"""`lsd`: the command line, a thin layer over the library (the workflow's only seam into it)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def set_threads(threads: int | None) -> int:
    """Use exactly the cores this job was given: two torch jobs each using every core of a
    small machine slow each other down by orders of magnitude."""
    import torch

    n = threads or int(os.environ.get("LSD_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def cmd_demo(args) -> None:
    """Exact toy: TV distance to the data of uniform Euler and Tweedie at several step counts."""
    import lsd
    from lsd.backbones.registry import load_backbone
    from lsd.tasks.toy import sampler_law, total_variation

    print(f"Exact-score toy: vocabulary 3, length 4, {args.samples} samples per cell, seed {args.seed}.")
    print("TV = total-variation distance to the data distribution; 'exact' is the sampler's own law,")
    print("computed by enumeration, 'sampled' is measured on the drawn samples.\n")
    for name in ("toy-absorbing", "toy-uniform"):
        bb = load_backbone(name)
        print(f"{name} ({bb.graph.name} graph, {bb.noise.name} noise)")
        print(f"  {'steps':>5}  {'Euler exact':>11}  {'Euler sampled':>13}  {'Tweedie exact':>13}  {'Tweedie sampled':>15}")
        for steps in args.steps:
            row = []
            for base in ("euler", "tweedie"):
                schedule = lsd.Schedule.uniform(base, steps)
                law = sampler_law(bb.model, schedule, bb.graph, bb.noise, bb.length)
                x = lsd.sample(bb.model, schedule, graph=bb.graph, noise=bb.noise, num_samples=args.samples,
                               length=bb.length, seed=args.seed, batch_size=args.samples)
                dist = bb.model.dist
                row += [total_variation(law, dist.probs), total_variation(dist.empirical(x), dist.probs)]
            print(f"  {steps:>5}  {row[0]:>11.4f}  {row[1]:>13.4f}  {row[2]:>13.4f}  {row[3]:>15.4f}")
        print()


def cmd_schedule(args) -> None:
    """Write a uniform schedule JSON."""
    import lsd

    s = lsd.Schedule.uniform(args.base, args.nfe, t_max=args.t_max, t_min=args.t_min,
                             backbone=args.backbone, made_by="lsd schedule")
    s.save(args.out)
    print(f"wrote {args.out}: {s.base}, NFE {s.nfe}")


def cmd_sample(args) -> None:
    """Sample from a backbone with a schedule; writes tokens (safetensors) and a JSON record."""
    import torch
    from safetensors.torch import save_file

    import lsd
    from lsd.backbones.registry import load_backbone
    from lsd.io import atomic_write_json, provenance

    schedule = lsd.Schedule.load(args.schedule)
    bb = load_backbone(args.backbone, device=args.device)
    counter = lsd.CallCounter(bb.model)
    length = args.length or bb.length
    start = time.perf_counter()
    x = lsd.sample(counter, schedule, graph=bb.graph, noise=bb.noise, num_samples=args.num_samples, length=length,
                   seed=args.seed, batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    wall = time.perf_counter() - start
    batches = -(-args.num_samples // args.batch_size)
    meta = {"backbone": args.backbone, "backbone_info": bb.info, "schedule": schedule.to_dict(), "seed": args.seed,
            "num_samples": args.num_samples, "length": length, "batch_size": args.batch_size,
            "nfe": counter.calls / max(batches, 1), "network_calls": counter.calls, "wall_time_s": wall,
            "device": args.device, "provenance": provenance()}
    tmp = args.out + ".tmp"
    save_file({"tokens": x.contiguous()}, tmp, metadata={"lsd": json.dumps(meta)})
    os.replace(tmp, args.out)
    atomic_write_json(args.out + ".json", meta)
    print(f"wrote {args.out}: {tuple(x.shape)} tokens, NFE {meta['nfe']:g}, {wall:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsd", description=__doc__)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: $LSD_THREADS or all cores); set it to the job's cores")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help=cmd_demo.__doc__, description=cmd_demo.__doc__)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64, 256])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("schedule", help=cmd_schedule.__doc__, description=cmd_schedule.__doc__)
    p.add_argument("--base", choices=["euler", "tweedie"], required=True)
    p.add_argument("--nfe", type=int, required=True, help="number of steps = network calls")
    p.add_argument("--t-max", type=float, default=1.0)
    p.add_argument("--t-min", type=float, default=1e-5)
    p.add_argument("--backbone", default=None, help="recorded in the metadata")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("sample", help=cmd_sample.__doc__, description=cmd_sample.__doc__)
    p.add_argument("--backbone", required=True, help="registered name, Hub id or checkpoint directory")
    p.add_argument("--schedule", required=True, help="schedule JSON")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--length", type=int, default=None, help="default: the backbone's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output .safetensors (a .json record is written beside it)")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    try:
        args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        # One line naming the culprit; tracebacks only on request.
        if os.environ.get("LSD_DEBUG"):
            raise
        print(f"lsd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
