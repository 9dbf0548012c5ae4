"""`lsd`: the command line, a thin layer over the library (the workflow's only seam into it)."""
from __future__ import annotations

import argparse
import importlib
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
    """Sample from a backbone with one or more schedules; writes tokens (safetensors) and a JSON record each."""
    import torch  # noqa: F401
    from safetensors.torch import save_file

    import lsd
    from lsd.backbones.registry import load_backbone
    from lsd.io import atomic_write_json, provenance

    if len(args.schedule) != len(args.out):
        raise ValueError(f"sample: {len(args.schedule)} --schedule files but {len(args.out)} --out files")
    schedules = [lsd.Schedule.load(path) for path in args.schedule]  # all valid before any work
    bb = load_backbone(args.backbone, device=args.device)
    length = args.length or bb.length
    for schedule, out in zip(schedules, args.out):
        counter = lsd.CallCounter(bb.model)
        before = getattr(bb.model, "network_calls", None)
        start = time.perf_counter()
        x = lsd.sample(counter, schedule, graph=bb.graph, noise=bb.noise, num_samples=args.num_samples,
                       length=length, seed=args.seed, batch_size=args.batch_size, device=args.device,
                       progress=not args.quiet)
        wall = time.perf_counter() - start
        batches = max(-(-args.num_samples // args.batch_size), 1)
        meta = {"backbone": args.backbone, "backbone_info": bb.info, "schedule": schedule.to_dict(),
                "sampler": schedule.metadata.get("sampler"), "seed": args.seed, "num_samples": args.num_samples,
                "length": length, "batch_size": args.batch_size, "nfe": counter.calls / batches,
                "score_calls": counter.calls,
                # forward passes actually run: fewer than score calls when a time-independent
                # denoiser (RADD, oracle) reuses unchanged rows (E-NFE)
                "network_calls": counter.calls if before is None else bb.model.network_calls - before,
                "wall_time_s": wall, "device": args.device, "provenance": provenance()}
        tmp = out + ".tmp"
        save_file({"tokens": x.contiguous()}, tmp, metadata={"lsd": json.dumps(meta)})
        os.replace(tmp, out)
        atomic_write_json(out + ".json", meta)
        print(f"wrote {out}: {tuple(x.shape)} tokens, NFE {meta['nfe']:g}, {meta['network_calls']} network calls, "
              f"{wall:.1f} s")


def _task_data(bb, n: int, seed: int):
    """Data for JYS's noising: the task's corpus for embedded backbones, else teacher samples."""
    if bb.info.get("task"):
        from lsd.tasks import make_task

        return make_task(bb.info["task"], **bb.info.get("task_config", {})).sample_corpus(n, seed=seed)[:, : bb.length]
    from lsd.optimize.jys import teacher_data

    return teacher_data(bb.model, bb.graph, bb.noise, n, bb.length, seed=seed)


def cmd_distill(args) -> None:
    """Distil a few-step schedule (JYS, LSD or LSD+) from a backbone; writes the schedule JSON."""
    from lsd.backbones.registry import load_backbone

    bb = load_backbone(args.backbone, device=args.device)
    if args.method == "jys":
        from lsd.optimize.jys import jys_schedule

        schedule = jys_schedule(bb.model, bb.graph, bb.noise, _task_data(bb, args.trajectories, args.seed), args.nfe,
                                base=args.base, seed=args.seed, batch_size=args.batch_size, progress=not args.quiet)
        schedule.metadata["backbone"] = args.backbone
    elif args.method == "spread":  # lsd-spread: selection rule + grid chosen by the model (lsd.optimize.spread)
        from lsd.optimize.spread import distill_spread

        schedule = distill_spread(bb.model, bb.graph, bb.noise, nfe=args.nfe, length=bb.length, base=args.base,
                                  teacher_steps=args.teacher_steps, trajectories=args.trajectories,
                                  candidates=args.candidates, seed=args.seed, batch_size=args.batch_size,
                                  device=args.device, progress=not args.quiet, backbone=args.backbone)
    else:
        from lsd.optimize.lsd import distill

        schedule = distill(bb.model, bb.graph, bb.noise, method=args.method, nfe=args.nfe, length=bb.length,
                           base=args.base, convention=args.convention, coupling=args.coupling, zeta=args.zeta,
                           teacher_steps=args.teacher_steps, trajectories=args.trajectories,
                           candidates=args.candidates, seed=args.seed, batch_size=args.batch_size,
                           device=args.device, progress=not args.quiet, backbone=args.backbone)
    schedule.save(args.out)
    m = schedule.metadata
    print(f"wrote {args.out}: {args.method} {schedule.base} NFE {schedule.nfe}, "
          f"{m.get('network_calls', '?')} network calls, {m.get('wall_time_s', float('nan')):.1f} s")


def cmd_schedules(args) -> None:
    """Every schedule of one backbone and seed (all samplers x NFE), sharing one teacher rollout."""
    from pathlib import Path

    from lsd.backbones.registry import load_backbone
    from lsd.plan import make_schedules

    try:
        samplers = json.loads(args.samplers_json)
        settings = json.loads(args.distill_json)
    except json.JSONDecodeError as e:
        raise ValueError(f"--samplers-json/--distill-json: not valid JSON ({e.msg})") from None
    bb = load_backbone(args.backbone, device=args.device)
    made = make_schedules(bb, samplers, args.nfe, args.seed, settings, data_fn=lambda n, seed: _task_data(bb, n, seed),
                          device=args.device, progress=not args.quiet)
    # write only once everything succeeded: a failed run leaves no partial set behind
    for (name, nfe), schedule in made.items():
        schedule.save(Path(args.out_dir) / name / f"nfe{nfe}" / f"seed{args.seed}.json")
    print(f"wrote {len(made)} schedules under {args.out_dir}")


def cmd_temperature(args) -> None:
    """Uniform schedule whose temperature matches a learned schedule's sample entropy (baseline)."""
    import lsd
    from lsd.backbones.registry import load_backbone
    from lsd.temperature import match_temperature

    bb = load_backbone(args.backbone, device=args.device)
    learned = lsd.Schedule.load(args.schedule)
    out = match_temperature(bb.model, bb.graph, bb.noise, learned, length=bb.length, num_samples=args.num_samples,
                            seed=args.seed, batch_size=args.batch_size, device=args.device)
    out.metadata["backbone"] = args.backbone
    out.save(args.out)
    print(f"wrote {args.out}: temperature {out.temperature:.4f} (target entropy {out.metadata['target_entropy']:.4f})")


def load_samples(path):
    """Tokens and metadata written by `lsd sample`."""
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as f:
            return f.get_tensor("tokens"), json.loads((f.metadata() or {}).get("lsd", "{}"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: samples file not found") from None
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not a samples file written by `lsd sample` ({e})") from None


def cmd_evaluate(args) -> None:
    """Evaluate samples and write one result record each (value, 95% interval, provenance)."""
    from lsd.evaluate import evaluate_samples
    from lsd.metrics.records import make_record, write_record

    if len(args.samples) != len(args.out):
        raise ValueError(f"evaluate: {len(args.samples)} --samples files but {len(args.out)} --out files")
    for path, out in zip(args.samples, args.out):
        x, meta = load_samples(path)
        schedule = meta.get("schedule") or {}
        sampler = args.sampler or meta.get("sampler") or (schedule.get("metadata") or {}).get("sampler")
        nfe = args.nfe or schedule.get("nfe")
        if not sampler or not nfe:
            raise ValueError(f"{path}: no sampler label or NFE recorded; pass --sampler and --nfe")
        if meta.get("backbone") not in (None, args.backbone):
            raise ValueError(f"{path}: samples of backbone {meta.get('backbone')!r}, not {args.backbone!r}")
        info = meta.get("backbone_info") or {}
        start = time.perf_counter()
        metrics = evaluate_samples(x, args.metrics, info, evaluator=args.evaluator, seed=args.seed,
                                   cache_dir=args.cache, device=args.device, fid_stats=args.fid_stats)
        extra = {"schedule": schedule, "samples": str(path), "network_calls": meta.get("network_calls"),
                 "evaluation_wall_time_s": time.perf_counter() - start, "evaluator": metrics.pop("_evaluator", None)}
        record = make_record(backbone=args.backbone, sampler=sampler, nfe=int(nfe), seed=args.seed,
                             metric_set="+".join(args.metrics), metrics=metrics, num_samples=int(x.shape[0]),
                             nfe_spent=int(round(meta["nfe"])) if meta.get("nfe") is not None else None,
                             wall_time_s=meta.get("wall_time_s"),
                             config={"schedule": schedule, "backbone": args.backbone, "metrics": args.metrics},
                             device=meta.get("device"), task=info.get("task"), extra=extra)
        write_record(out, record)
        shown = ", ".join(f"{k} {v['value']:.4g}" for k, v in metrics.items() if v["value"] is not None)
        print(f"wrote {out}: {shown}")


def build_parser() -> argparse.ArgumentParser:
    from lsd.schedule import BASES

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
    p.add_argument("--base", choices=list(BASES), required=True,
                   help="step rule (tauleap: Poisson jumps, ordinal graphs such as the images' gaussian graph)")
    p.add_argument("--nfe", type=int, required=True, help="number of steps = network calls")
    p.add_argument("--t-max", type=float, default=1.0)
    p.add_argument("--t-min", type=float, default=1e-5)
    p.add_argument("--backbone", default=None, help="recorded in the metadata")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("sample", help=cmd_sample.__doc__, description=cmd_sample.__doc__)
    p.add_argument("--backbone", required=True, help="registered name, Hub id or checkpoint directory")
    p.add_argument("--schedule", required=True, nargs="+", help="schedule JSON(s)")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--length", type=int, default=None, help="default: the backbone's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, nargs="+",
                   help="output .safetensors, one per schedule (a .json record is written beside each)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("schedules", help=cmd_schedules.__doc__, description=cmd_schedules.__doc__)
    p.add_argument("--backbone", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nfe", type=int, nargs="+", required=True)
    p.add_argument("--samplers-json", required=True,
                   help='{"name": {"method": "lsd+", "base": "euler", "convention": "scale", ...}, ...}')
    p.add_argument("--distill-json", default="{}",
                   help='{"teacher_steps": 1024, "zeta": 0.05, "trajectories": 64, "coupling": "coupled", ...}')
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out-dir", required=True, help="writes OUT_DIR/<sampler>/nfe<N>/seed<S>.json")
    p.set_defaults(func=cmd_schedules)

    p = sub.add_parser("distill", help=cmd_distill.__doc__, description=cmd_distill.__doc__)
    p.add_argument("--backbone", required=True)
    p.add_argument("--method", choices=["jys", "lsd", "lsd+", "spread"], required=True,
                   help="spread: lsd-spread, a spread selection rule and grid fitted by the model (absorbing graphs)")
    p.add_argument("--base", choices=list(BASES), default="euler")
    p.add_argument("--nfe", type=int, required=True)
    p.add_argument("--convention", choices=["scale", "power"], default="scale",
                   help="scale: Phi * s (the paper's equations); power: s^Phi (the reference code)")
    p.add_argument("--coupling", choices=["coupled", "independent"], default="coupled")
    p.add_argument("--zeta", default="0.05", help="relaxed start: share of positions perturbed, or 'auto'")
    p.add_argument("--teacher-steps", type=int, default=1024)
    p.add_argument("--trajectories", type=int, default=64, help="teacher trajectories (JYS: data sequences)")
    p.add_argument("--candidates", type=int, default=128, help="teacher times recorded for the student grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("temperature", help=cmd_temperature.__doc__, description=cmd_temperature.__doc__)
    p.add_argument("--backbone", required=True)
    p.add_argument("--schedule", required=True, help="the learned schedule to match")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_temperature)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__, description=cmd_evaluate.__doc__)
    p.add_argument("--backbone", required=True)
    p.add_argument("--samples", required=True, nargs="+", help=".safetensors written by `lsd sample`")
    p.add_argument("--metrics", nargs="+", required=True,
                   help="metric sets: oracle_ppl entropy countdown frechet gen_ppl fid")
    p.add_argument("--evaluator", default="gpt2-large", help="causal LM for gen_ppl")
    p.add_argument("--sampler", default=None, help="row label in the tables (default: from the schedule)")
    p.add_argument("--nfe", type=int, default=None, help="default: the schedule's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="where to cache the digits classifier (safetensors)")
    p.add_argument("--device", default="cpu", help="device of the evaluator (gen_ppl, fid)")
    p.add_argument("--fid-stats", default=None, help="reference statistics for fid (.npz from `lsd fid-stats`)")
    p.add_argument("--out", required=True, nargs="+", help="record JSON, one per samples file")
    p.set_defaults(func=cmd_evaluate)

    for name, module in EXTERNAL.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.__doc__.strip().splitlines()[0], description=mod.__doc__)
        mod.configure_parser(p)
        p.set_defaults(func=mod.run)
    return parser


# Subcommands that live with their library module: `configure_parser(parser)` and `run(args)`.
EXTERNAL = {"train": "lsd.train", "report": "lsd.report", "fid-stats": "lsd.fid"}


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
