"""`lsd`: the command line, a thin layer over the library (the workflow's only seam into it)."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

from lsd.argtypes import MAX_STEPS, non_negative_int, positive_int, step_count
from lsd.workflow_facts import DISTILL_DEFAULTS


class UsageError(ValueError):
    """A bad command line; `prog` is the (sub)command whose arguments are wrong."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: its own (unknown option, bad value, missing argument) come out like
    every other error of `lsd`, through `main`."""

    def error(self, message):
        raise UsageError(self.prog, f"{message} (see `{self.prog} --help`)")


def _help(text: str | None) -> str | None:
    """A docstring as an argparse help string: argparse %-formats help ("95% interval" broke `lsd --help`)."""
    return None if text is None else text.replace("%", "%%")


def set_threads(threads: int | None) -> int:
    """Use exactly the cores this job was given: two torch jobs each using every core of a
    small machine slow each other down by orders of magnitude."""
    import torch

    if threads is None:
        env = os.environ.get("LSD_THREADS", "").strip()
        if env:
            try:
                threads = positive_int(env)
            except argparse.ArgumentTypeError as err:
                raise ValueError(f"LSD_THREADS: {err}") from None
    n = threads if threads is not None else (os.cpu_count() or 1)
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
    from lsd.io import check_output

    check_output(args.out)
    s = lsd.Schedule.uniform(args.base, args.nfe, t_max=args.t_max, t_min=args.t_min,
                             backbone=args.backbone, made_by="lsd schedule")
    s.save(args.out)
    print(f"wrote {args.out}: {s.base}, NFE {s.nfe}")


def cmd_sample(args) -> None:
    """Sample from a backbone with one or more schedules; writes tokens (safetensors) and a JSON record each."""
    import lsd
    from lsd.backbones.registry import load_backbone
    from lsd.io import atomic_write_json, provenance, save_samples
    from lsd.reproduce import samples_sha256

    if len(args.schedule) != len(args.out):
        raise ValueError(f"--out: {len(args.schedule)} --schedule files but {len(args.out)} --out files")
    # everything checked before any work: the schedules, then every output and its JSON record
    schedules = [lsd.Schedule.load(path) for path in args.schedule]
    _check_outputs([path for out in args.out for path in (out, out + ".json")], inputs=args.schedule)
    bb = load_backbone(args.backbone, device=args.device)
    length = args.length if args.length is not None else bb.length
    for schedule, out in zip(schedules, args.out):
        counter = lsd.CallCounter(bb.model)
        before = getattr(bb.model, "network_calls", None)
        start = time.perf_counter()
        x = lsd.sample(counter, schedule, graph=bb.graph, noise=bb.noise, num_samples=args.num_samples,
                       length=length, seed=args.seed, batch_size=args.batch_size, device=args.device,
                       progress=not args.quiet, coupling=args.coupling)
        wall = time.perf_counter() - start
        batches = max(-(-args.num_samples // args.batch_size), 1)
        meta = {"backbone": args.backbone, "backbone_info": bb.info, "schedule": schedule.to_dict(),
                "sampler": schedule.metadata.get("sampler"), "seed": args.seed, "num_samples": args.num_samples,
                "length": length, "batch_size": args.batch_size, "nfe": counter.calls / batches,
                "score_calls": counter.calls, "coupling": args.coupling,
                # forward passes actually run: fewer than score calls when a time-independent
                # denoiser (RADD, oracle) reuses unchanged rows (E-NFE)
                "network_calls": counter.calls if before is None else bb.model.network_calls - before,
                "wall_time_s": wall, "device": args.device, "provenance": provenance(),
                "samples_sha256": samples_sha256(x)}  # what `lsd reproduce` compares
        save_samples(out, x, meta)
        atomic_write_json(out + ".json", meta)
        print(f"wrote {out}: {tuple(x.shape)} tokens, NFE {meta['nfe']:g}, {meta['network_calls']} network calls, "
              f"{wall:.1f} s")


def _check_outputs(outputs, inputs=(), option: str = "--out") -> None:
    """Every output writable, none an input, none given twice: checked before any work."""
    from pathlib import Path

    from lsd.io import OutputError, check_output

    seen = set()
    for out in outputs:
        key = Path(out).absolute()
        if key in seen:
            raise OutputError(f"{option} {out}: given twice; each output needs its own path")
        seen.add(key)
        check_output(out, option, inputs=inputs)


def _task_data(bb, n: int, seed: int):
    """Data for JYS's noising: the task's corpus for embedded backbones, else teacher samples."""
    if bb.info.get("task"):
        from lsd.tasks import make_task

        return make_task(bb.info["task"], **bb.info.get("task_config", {})).sample_corpus(n, seed=seed)[:, : bb.length]
    from lsd.optimize.jys import teacher_data

    return teacher_data(bb.model, bb.graph, bb.noise, n, bb.length, seed=seed)


def _json_option(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: must be a JSON object, got {type(value).__name__}")
    return value


def _training_options(args) -> dict:
    """--training-json with --fit and --start on top."""
    training = _json_option(args.training_json or "{}", "--training-json")
    for key in ("fit", "start"):
        if getattr(args, key) is not None:
            training[key] = getattr(args, key)
    return training


def cmd_distill(args) -> None:
    """Distil a few-step schedule (JYS, LSD, LSD+ or lsd-spread) from a backbone; writes the schedule JSON."""
    from lsd.backbones.registry import load_backbone
    from lsd.io import check_output
    from lsd.optimize.plan import make_schedules

    check_output(args.out)
    training = _training_options(args)
    bb = load_backbone(args.backbone, device=args.device)
    # one sampler definition through the one dispatch the workflow uses (lsd schedules)
    definition = {"method": args.method, "base": args.base, "convention": args.convention, **training}
    settings = {"teacher_steps": args.teacher_steps, "zeta": args.zeta, "trajectories": args.trajectories,
                "coupling": args.coupling, "candidates": args.candidates, "batch_size": args.batch_size}
    made = make_schedules(bb, {args.method: definition}, [args.nfe], args.seed, settings,
                          data_fn=lambda n, seed: _task_data(bb, n, seed), device=args.device,
                          progress=not args.quiet, log=lambda line: None)
    schedule = made[(args.method, args.nfe)]
    schedule.metadata["backbone"] = args.backbone
    schedule.save(args.out)
    m = schedule.metadata
    teacher = f" + {m['teacher_calls']} of the teacher" if m.get("teacher_calls") else ""
    print(f"wrote {args.out}: {args.method} {schedule.base} NFE {schedule.nfe}, "
          f"{m.get('network_calls', '?')} network calls{teacher}, {m.get('plan_wall_time_s', float('nan')):.1f} s")


def cmd_schedules(args) -> None:
    """Every schedule of one backbone and seed (all samplers x NFE), sharing one teacher rollout."""
    from pathlib import Path

    from lsd.backbones.registry import load_backbone
    from lsd.io import check_output
    from lsd.optimize.plan import make_schedules

    samplers = _json_option(args.samplers_json, "--samplers-json")
    settings = _json_option(args.distill_json, "--distill-json")
    check_output(args.out_dir, "--out-dir", folder=True)
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
    from lsd.io import check_output
    from lsd.optimize.temperature import match_temperature

    learned = lsd.Schedule.load(args.schedule)
    check_output(args.out, inputs=[args.schedule])
    bb = load_backbone(args.backbone, device=args.device)
    out = match_temperature(bb.model, bb.graph, bb.noise, learned, length=bb.length, num_samples=args.num_samples,
                            seed=args.seed, batch_size=args.batch_size, device=args.device)
    out.metadata["backbone"] = args.backbone
    out.save(args.out)
    print(f"wrote {args.out}: temperature {out.temperature:.4f} (target entropy {out.metadata['target_entropy']:.4f})")


def cmd_evaluate(args) -> None:
    """Evaluate samples and write one result record each (value, 95% interval, provenance)."""
    from pathlib import Path

    import lsd.evaluate
    from lsd.io import check_output, load_samples
    from lsd.metrics.records import make_record, write_record

    if len(args.samples) != len(args.out):
        raise ValueError(f"--out: {len(args.samples)} --samples files but {len(args.out)} --out files")
    # every samples file read and checked, and every output checked, before any metric is computed
    inputs = [p for path in args.samples for p in (path, path + ".json")] + [args.fid_stats]
    _check_outputs([out for out in args.out if not Path(out).is_dir()], inputs=inputs)
    if args.cache is not None:  # the digits classifier is trained once and cached there
        check_output(args.cache, "--cache", inputs=inputs)
    jobs = []
    for path, out in zip(args.samples, args.out):
        x, meta = load_samples(path)
        schedule = meta.get("schedule") or {}
        sampler = args.sampler or meta.get("sampler") or (schedule.get("metadata") or {}).get("sampler")
        nfe = args.nfe if args.nfe is not None else schedule.get("nfe")
        if not sampler or nfe is None:
            raise ValueError(f"{path}: no sampler label or NFE recorded; pass --sampler and --nfe")
        if meta.get("backbone") not in (None, args.backbone):
            raise ValueError(f"{path}: samples of backbone {meta.get('backbone')!r}, not {args.backbone!r}")
        info = meta.get("backbone_info") or {}
        lsd.evaluate.check_metric_sets(args.metrics, info, args.fid_stats, source=f"samples {path}")
        jobs.append((path, out, x, meta, schedule, sampler, nfe, info))
    for path, out, x, meta, schedule, sampler, nfe, info in jobs:
        start = time.perf_counter()
        metrics = lsd.evaluate.evaluate_samples(x, args.metrics, info, evaluator=args.evaluator, seed=args.seed,
                                                cache_dir=args.cache, device=args.device, fid_stats=args.fid_stats)
        extra = {"schedule": schedule, "samples": str(path), "network_calls": meta.get("network_calls"),
                 "evaluation_wall_time_s": time.perf_counter() - start, "evaluator": metrics.pop("_evaluator", None),
                 "samples_sha256": meta.get("samples_sha256"),
                 "frechet_digits_fit": metrics.pop("_frechet_digits", None),
                 "per_sample": metrics.pop("_per_sample", None)}
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
    from lsd.evaluate import METRIC_SETS
    from lsd.schedule import BASES

    parser = Parser(prog="lsd", description=__doc__)
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads (default: $LSD_THREADS or all cores); set it to the job's cores")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func):
        return sub.add_parser(name, help=_help(func.__doc__), description=func.__doc__)

    p = command("demo", cmd_demo)
    p.add_argument("--steps", type=step_count, nargs="+", default=[1, 2, 4, 8, 16, 64, 256])
    p.add_argument("--samples", type=positive_int, default=20000)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=cmd_demo)

    p = command("schedule", cmd_schedule)
    p.add_argument("--base", choices=list(BASES), required=True,
                   help="step rule (tauleap: Poisson jumps, ordinal graphs such as the images' gaussian graph)")
    p.add_argument("--nfe", type=step_count, required=True, help=f"number of steps = network calls (1 to {MAX_STEPS})")
    p.add_argument("--t-max", type=float, default=1.0)
    p.add_argument("--t-min", type=float, default=1e-5)
    p.add_argument("--backbone", default=None, help="recorded in the metadata")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_schedule)

    p = command("sample", cmd_sample)
    p.add_argument("--backbone", required=True, help="registered name, Hub id or checkpoint directory")
    p.add_argument("--schedule", required=True, nargs="+", help="schedule JSON(s)")
    p.add_argument("--num-samples", type=positive_int, default=64)
    p.add_argument("--length", type=positive_int, default=None, help="default: the backbone's")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--coupling", choices=["independent", "coupled"], default="independent",
                   help="coupled: every sampler of a seed shares each sample's clock and token draws (absorbing "
                        "graph), so sample i of two samplers can be compared pair by pair")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, nargs="+",
                   help="output .safetensors, one per schedule (a .json record is written beside each)")
    p.set_defaults(func=cmd_sample)

    p = command("schedules", cmd_schedules)
    p.add_argument("--backbone", required=True)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--nfe", type=step_count, nargs="+", required=True)
    p.add_argument("--samplers-json", required=True,
                   help='{"name": {"method": "lsd+", "base": "euler", "convention": "scale", ...}, ...}')
    p.add_argument("--distill-json", default="{}",
                   help='{"teacher_steps": 1024, "zeta": 0.05, "trajectories": 64, "coupling": "coupled", ...}')
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out-dir", required=True, help="writes OUT_DIR/<sampler>/nfe<N>/seed<S>.json")
    p.set_defaults(func=cmd_schedules)

    p = command("distill", cmd_distill)
    p.add_argument("--backbone", required=True)
    p.add_argument("--method", choices=["jys", "lsd", "lsd+", "spread"], required=True,
                   help="spread: lsd-spread, a spread selection rule and grid fitted by the model (absorbing graphs)")
    p.add_argument("--base", choices=list(BASES), default="euler")
    p.add_argument("--nfe", type=step_count, required=True)
    p.add_argument("--convention", choices=["scale", "power"], default="scale",
                   help="scale: Phi * s (the paper's equations); power: s^Phi (the reference code)")
    p.add_argument("--coupling", choices=["coupled", "independent"], default=DISTILL_DEFAULTS["coupling"])
    p.add_argument("--zeta", default=str(DISTILL_DEFAULTS["zeta"]),
                   help="relaxed start: share of positions perturbed, or 'auto'")
    p.add_argument("--fit", choices=["sgd", "exact"], default=None,
                   help="lsd/lsd+: Adam from Phi = 1 (sgd, the paper's; default) or the exact L2 minimiser")
    p.add_argument("--start", choices=["teacher", "marginal", "best"], default=None,
                   help="lsd/lsd+: tokens of the relaxed start (default teacher; docs/lsd-training.md)")
    p.add_argument("--training-json", default=None,
                   help="lsd/lsd+: other training options as JSON, e.g. '{\"lr\": 0.01, \"epochs\": 16}'")
    p.add_argument("--teacher-steps", type=step_count, default=DISTILL_DEFAULTS["teacher_steps"])
    p.add_argument("--trajectories", type=positive_int, default=DISTILL_DEFAULTS["trajectories"],
                   help="teacher trajectories (JYS: data sequences)")
    p.add_argument("--candidates", type=positive_int, default=DISTILL_DEFAULTS["candidates"],
                   help="teacher times recorded for the student grid")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=DISTILL_DEFAULTS["batch_size"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_distill)

    p = command("temperature", cmd_temperature)
    p.add_argument("--backbone", required=True)
    p.add_argument("--schedule", required=True, help="the learned schedule to match")
    p.add_argument("--num-samples", type=positive_int, default=64)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_temperature)

    p = command("evaluate", cmd_evaluate)
    p.add_argument("--backbone", required=True)
    p.add_argument("--samples", required=True, nargs="+", help=".safetensors written by `lsd sample`")
    p.add_argument("--metrics", nargs="+", required=True, choices=list(METRIC_SETS), metavar="METRIC_SET",
                   help=f"metric sets: {' '.join(METRIC_SETS)} (each must suit the backbone's task)")
    p.add_argument("--evaluator", default="gpt2-large", help="causal LM for gen_ppl")
    p.add_argument("--sampler", default=None, help="row label in the tables (default: from the schedule)")
    p.add_argument("--nfe", type=positive_int, default=None, help="default: the schedule's")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--cache", default=None, help="where to cache the digits classifier (safetensors)")
    p.add_argument("--device", default="cpu", help="device of the evaluator (gen_ppl, fid)")
    p.add_argument("--fid-stats", default=None, help="reference statistics for fid (.npz from `lsd fid-stats`)")
    p.add_argument("--out", required=True, nargs="+", help="record JSON, one per samples file")
    p.set_defaults(func=cmd_evaluate)

    for name, module in EXTERNAL.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=_help(mod.__doc__.strip().splitlines()[0]), description=mod.__doc__)
        mod.configure_parser(p)
        p.set_defaults(func=mod.run)
    return parser


# Subcommands that live with their library module: `configure_parser(parser)` and `run(args)`.
EXTERNAL = {"train": "lsd.training.command", "report": "lsd.report", "fid-stats": "lsd.fid", "reproduce": "lsd.reproduce"}

# Errors that come from what the user gave (arguments, files, missing downloads): exit code 2. Anything
# else is a fault of this program: exit code 1, still one line.
USER_ERRORS = (ValueError, OSError, RuntimeError, LookupError)


def _one_line(err: BaseException) -> str:
    from lsd.io import one_line

    return one_line(err) or type(err).__name__


def main(argv=None) -> int:
    """Run one command. Every failure is one line on stderr, `lsd <command>: <what and which input>`,
    with exit code 2 (bad input), 1 (a fault of this program) or 130 (Ctrl-C); `LSD_DEBUG=1` re-raises
    instead, with the traceback. Outputs are written atomically, so an interrupted command leaves no
    half-written file."""
    prog = "lsd"
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help
            return done.code if isinstance(done.code, int) else 0
        prog = f"lsd {args.command}"
        set_threads(args.threads)
        args.func(args)
    except KeyboardInterrupt:
        if os.environ.get("LSD_DEBUG"):
            raise
        print(f"{prog}: interrupted (Ctrl-C); finished outputs are complete, unfinished ones were not written",
              file=sys.stderr)
        return 130
    except UsageError as e:
        if os.environ.get("LSD_DEBUG"):
            raise
        print(f"{e.prog}: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        if os.environ.get("LSD_DEBUG"):
            raise
        print(f"{prog}: out of memory (use smaller sizes)", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the one place that turns any error into one line
        if os.environ.get("LSD_DEBUG"):
            raise
        if isinstance(e, USER_ERRORS):
            print(f"{prog}: {_one_line(e)}", file=sys.stderr)
            return 2
        print(f"{prog}: internal error {type(e).__name__}: {_one_line(e)} (LSD_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
