"""GPU benchmark: the paper's sizes on one GPU, timed side by side, and a projection of the
GPU-hours of the full paper grid. One prepared script (< 8 minutes on one H100/H200).

    python benchmarks/gpu.py OUTDIR [--quick] [--device cuda|cpu] [--budget-s 450]

Writes OUTDIR/results.json (every number), OUTDIR/results.md (a markdown fragment) and
OUTDIR/projection.md (the GPU-hours table). `--quick --device cpu` runs the same code at a
tiny size (tiny DiT and GPT-2) in seconds: the test of this script.

Sections (each isolated: a failure, e.g. out of memory, is recorded and the rest goes on):

1. Sampling, SEDD-small (`DiTConfig.sedd('small')`, random weights, length 1024, bf16
   autocast in the network, float64 categorical draws as `lsd.sample` does), NFE 8, 16, 32,
   64 at batch 32 and 128: wall time per NFE and the sampler overhead (time outside the
   network calls / inside, the network timed in the same run with CUDA synchronised around
   each call). The sampler's float64 step tensors are [batch, 1024, 50258] several times
   over, so first one batch of 2 is run to measure the peak bytes per sample and each batch
   is drawn in chunks that fit (`batch_size`; samples do not depend on it); the chunk is
   reported.
2. LSD+ cell (NFE 8, N = 1024 uniform Euler teacher): the teacher record holds
   candidates x trajectories x length x dim float32 twice (paper setting: 128 x 64 x 1024 x
   50258 x 4 x 2 bytes = 3.4 TB), on the host. The bytes are computed and printed first, and
   the cell runs at a setting that fits (default 4 trajectories, 16 candidates). Timed: the
   teacher rollout (library, record on the host); the student as the library runs it
   (`distill(record=...)`: transition costs on the host, in float64 over the full vocabulary)
   when its projected time fits the budget, else only projected; and the student with the
   record moved to the GPU (what a device-resident record would give).
3. GPT-2-large-architecture scoring (random weights, `GPT2Config(n_embd=1280, n_layer=36,
   n_head=20)`, `GPT2LMHeadModel`) through `CausalLMEvaluator`: tokens per second at fp32 and
   bf16, and the share of scoring time outside forward passes.
4. tauLDR image sampling (`tauldr`): the CIFAR-10 UNet (`TauLDRConfig.cifar10()`, 35.7M
   parameters, random weights, bf16 autocast in the network) as `lsd.X0Score` on the 256-level
   Gaussian-rate graph, 3072 values per image, batch 256 (`--tauldr-batch`), uniform tau-leaping
   and Euler schedules at `--tauldr-nfe` (default 8 and 32): wall time per NFE, network time per
   NFE (CUDA synchronised around each call) and the peak CUDA memory. The score conversion, the
   step and the Poisson draws are float64 over [batch, 3072, 256] and count as outside the
   network. `--quick --device cpu`: a width-8 UNet on 8x8x3 images, batch 4.
5. Projection of the paper grid from these per-unit costs (see `projection`), the image cells
   (tauLDR, 50k samples per cell) included.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lsd  # noqa: E402
from benchmarks.common import IntervalTimer, fit_line, gib, machine, sync, table  # noqa: E402
from benchmarks.distill_overhead import record_bytes  # noqa: E402
from lsd.backbones.dit import DiTConfig, build_dit  # noqa: E402
from lsd.io import atomic_write_json, atomic_write_text  # noqa: E402
from lsd.optimize.lsd import distill  # noqa: E402
from lsd.optimize.lsd_grid import transition_costs  # noqa: E402
from lsd.optimize.teacher import TeacherRecord, teacher_rollout  # noqa: E402

# The paper's grid (projection). Samplers: the rows of Table 1 as this harness names them.
PAPER = {
    "backbones": {"sedd-small": "small", "sedd-medium": "medium", "radd": "small"},
    "nfe": [8, 16, 32, 64],
    "samplers": ["euler", "tweedie", "jys-euler", "lsd-euler", "lsd-tweedie", "lsd+-euler", "lsd+-tweedie"],
    "seeds": 3,
    "samples": 1024,
    "length": 1024,
    "teacher_steps": 1024,
    "trajectories": 64,
    "candidates": 128,
    "cost_trajectories": 16,  # transition_costs(max_trajectories=16)
}
GPT2_LARGE = {"n_embd": 1280, "n_layer": 36, "n_head": 20, "n_positions": 1024, "vocab_size": 50257}
# The image row (CIFAR-10 on tauLDR): FID cells of 50k samples; JYS and LSD+ distilled as for text.
IMAGE = {"nfe": [8, 16, 32, 64], "samplers": ["tauleap", "euler", "tweedie", "jys-tauleap", "lsd+-tauleap",
                                              "lsd+-euler"],
         "seeds": 1, "samples": 50000, "teacher_steps": 1024, "trajectories": 64}
PAPER_LSD_PLUS_MINUTES_4090 = 5.0
GOAL_LSD_PLUS_MINUTES_H100 = 2.0


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--quick", action="store_true", help="smaller runs; with --device cpu: tiny models")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall budget; optional parts are skipped past it")
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--lsd-trajectories", type=int, default=4)
    ap.add_argument("--lsd-candidates", type=int, default=16)
    ap.add_argument("--lsd-steps", type=int, default=None, help="teacher N (default 1024; --quick 256; tiny 64)")
    ap.add_argument("--score-samples", type=int, default=None, help="GPT-2 scoring samples (default 128; --quick 32)")
    ap.add_argument("--score-batch", type=int, default=8)
    ap.add_argument("--tauldr-batch", type=int, default=None, help="tauLDR section batch (default 256; tiny 4)")
    ap.add_argument("--tauldr-nfe", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.tiny = torch.device(args.device).type == "cpu"
    if args.tiny and not args.quick:
        print("note: full sizes on the CPU take hours; use --quick for the tiny CPU run")
        args.tiny = False
    if args.batches is None:
        args.batches = [2, 4] if args.tiny else ([32] if args.quick else [32, 128])
    if args.lsd_steps is None:
        args.lsd_steps = 64 if args.tiny else (256 if args.quick else 1024)
    if args.score_samples is None:
        args.score_samples = 4 if args.tiny else (32 if args.quick else 128)
    if args.tauldr_batch is None:
        args.tauldr_batch = 4 if args.tiny else 256
    return args


def dit_config(args, size="small") -> DiTConfig:
    if args.tiny:
        return DiTConfig(tokens=64, hidden_size=32, n_heads=2, n_blocks=1, cond_dim=16, length=32, kind="sedd")
    return DiTConfig.sedd(size)


def gpt2_config(args) -> dict:
    if args.tiny:
        return {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64, "vocab_size": 128, "bos_token_id": 127,
                "eos_token_id": 127}
    return dict(GPT2_LARGE)


def params(cfg: DiTConfig) -> int:
    net = build_dit(cfg, device="meta")
    return sum(p.numel() for p in net.parameters())


def host_available_bytes() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except (OSError, ValueError):
        pass
    return float("inf")


class Run:
    """Budget, results and the sections' error handling."""

    def __init__(self, args):
        self.args, self.t0 = args, time.perf_counter()
        self.results = {"errors": {}, "skipped": {}}

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def section(self, name, fn, *a, **kw):
        print(f"\n== {name} ({time.perf_counter() - self.t0:.0f} s in, {self.left():.0f} s of budget left)")
        try:
            out = fn(*a, **kw)
            if out is not None:
                self.results[name] = out
            return out
        except Exception as err:  # recorded, not hidden: the other sections still run
            traceback.print_exc()
            self.results["errors"][name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            return None
        finally:
            if torch.device(self.args.device).type == "cuda":
                torch.cuda.empty_cache()


# 1. sampling -----------------------------------------------------------------------------
def bytes_per_sample(net, graph, noise, length, device) -> float | None:
    """Peak CUDA bytes per sample of a 2-step sampler at batch 2 (None on CPU)."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    lsd.sample(net, lsd.Schedule.uniform("euler", 2), graph=graph, noise=noise, num_samples=2, length=length,
               batch_size=2, device=device)
    return (torch.cuda.max_memory_allocated() - base) / 2


def sampling(run: Run, net, graph, noise, length, batch, per_sample) -> dict:
    args, device = run.args, run.args.device
    chunk = batch
    if per_sample:
        free = torch.cuda.mem_get_info()[0]
        chunk = max(1, min(batch, int(0.85 * free / per_sample)))
        print(f"peak {gib(per_sample)} per sample in the sampler step; {gib(free)} free -> chunks of {chunk}")
    rows = []
    for nfe in args.nfe:
        schedule = lsd.Schedule.uniform("euler", nfe)
        timer = IntervalTimer(net, device)
        sync(device)
        t0 = time.perf_counter()
        lsd.sample(timer, schedule, graph=graph, noise=noise, num_samples=batch, length=length, batch_size=chunk,
                   device=device)
        sync(device)
        wall = time.perf_counter() - t0
        rows.append({"nfe": nfe, "wall_s": wall, "network_s": timer.seconds, "calls": timer.calls,
                     "outside_over_inside": (wall - timer.seconds) / timer.seconds, "per_nfe_s": wall / nfe,
                     "tokens_per_s": batch * length / wall})
        r = rows[-1]
        print(f"batch {batch} (chunks of {chunk}) NFE {nfe:3d}: {wall:8.2f} s, {wall / nfe * 1e3:8.1f} ms/NFE, "
              f"network {timer.seconds:7.2f} s, outside/inside {100 * r['outside_over_inside']:6.1f}%")
    fit = fit_line([r["nfe"] for r in rows], [r["wall_s"] for r in rows])
    net_per = sum(r["network_s"] for r in rows) / sum(r["nfe"] for r in rows)
    print(f"wall = {fit['intercept']:.3f} s + {fit['slope']:.4f} s x NFE (R^2 {fit['r2']:.4f}); network "
          f"{net_per:.4f} s per NFE")
    return {"batch": batch, "chunk": chunk, "bytes_per_sample": per_sample, "rows": rows, "fit": fit,
            "network_s_per_nfe": net_per}


# 2. LSD+ cell ------------------------------------------------------------------------------
def lsd_cell(run: Run, net, graph, noise, length) -> dict:
    args, device = run.args, run.args.device
    T, C, N, nfe, dim = args.lsd_trajectories, args.lsd_candidates, args.lsd_steps, 8, graph.dim
    sizes = {"paper (128 candidates x 64 trajectories)": record_bytes(128, 64, length, dim),
             "64 candidates x 8 trajectories": record_bytes(64, 8, length, dim),
             f"used ({C} candidates x {T} trajectories)": record_bytes(C, T, length, dim)}
    for k, v in sizes.items():
        print(f"teacher record, {k}: {v / 1e9:.1f} GB ({gib(v)})")
    used = record_bytes(C, T, length, dim)
    avail = host_available_bytes()
    if used > 0.6 * avail:
        raise MemoryError(f"record {gib(used)} exceeds 60% of the host's available {gib(avail)}: "
                          f"lower --lsd-trajectories/--lsd-candidates")
    out = {"setting": {"nfe": nfe, "teacher_steps": N, "trajectories": T, "candidates": C, "length": length,
                       "dim": dim, "record_bytes": used}, "record_bytes": sizes}
    timer = IntervalTimer(net, device)
    sync(device)
    t0 = time.perf_counter()
    record = teacher_rollout(timer, graph, noise, length=length, trajectories=T, steps=N, candidates=C,
                             batch_size=T, device=device)
    sync(device)
    out["teacher_s"] = time.perf_counter() - t0
    out["teacher_network_s"] = timer.seconds
    print(f"teacher N={N}, {T} trajectories: {out['teacher_s']:.1f} s (network {timer.seconds:.1f} s, "
          f"wall/network {out['teacher_s'] / timer.seconds:.3f})")

    # The library as it is: transition costs on the host. Time 3 intervals first, then decide.
    sub = TeacherRecord(record.times[:3], record.steps[:3], record.states[:2], record.log_scores[:2],
                        record.cum_move[:3], record.samples, record.base, record.teacher_steps, record.seed,
                        record.calls)
    t0 = time.perf_counter()
    transition_costs(graph, noise, sub, "euler")
    per_interval_host = (time.perf_counter() - t0) / 3
    intervals = C * (C + 1) // 2
    out["host_costs_projected_s"] = per_interval_host * intervals
    out["host_s_per_interval"] = per_interval_host
    print(f"host transition costs: {per_interval_host:.3f} s per interval x {intervals} intervals = "
          f"{out['host_costs_projected_s']:.0f} s projected")

    # Record moved to the device: what keeping it there would give.
    sync(device)
    t0 = time.perf_counter()
    on_device = dataclasses.replace(record, states=record.states.to(device), log_scores=record.log_scores.to(device),
                                    cum_move=record.cum_move.to(device), samples=record.samples.to(device),
                                    grid_costs={})
    sync(device)
    out["to_device_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    transition_costs(graph, noise, on_device, "euler")
    sync(device)
    out["device_costs_s"] = time.perf_counter() - t0
    timer = IntervalTimer(net, device)
    t0 = time.perf_counter()
    schedule = distill(timer, graph, noise, method="lsd+", nfe=nfe, length=length, record=on_device, batch_size=T,
                       device=device)
    sync(device)
    out["device_student_s"] = time.perf_counter() - t0 + out["device_costs_s"]
    out["device_student_network_s"] = timer.seconds
    out["device_s_per_interval_trajectory"] = out["device_costs_s"] / (intervals * min(T, PAPER["cost_trajectories"]))
    out["end_to_end_device_record_s"] = out["teacher_s"] + out["to_device_s"] + out["device_student_s"]
    out["grid"] = schedule.metadata["kappa"]
    print(f"record to device {out['to_device_s']:.1f} s; transition costs there {out['device_costs_s']:.2f} s; "
          f"student (costs + grid + fit) {out['device_student_s']:.2f} s")
    print(f"LSD+ cell end to end, record on the device: {out['end_to_end_device_record_s']:.1f} s")
    del on_device
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()

    if out["host_costs_projected_s"] < 0.8 * run.left():
        timer = IntervalTimer(net, device)
        t0 = time.perf_counter()
        distill(timer, graph, noise, method="lsd+", nfe=nfe, length=length, record=record, batch_size=T,
                device=device)
        sync(device)
        out["host_student_s"] = time.perf_counter() - t0
        out["end_to_end_as_is_s"] = out["teacher_s"] + out["host_student_s"]
        print(f"LSD+ cell end to end as the library runs it (record on the host): {out['end_to_end_as_is_s']:.1f} s")
    else:
        run.results["skipped"]["lsd_host_student"] = (f"projected {out['host_costs_projected_s']:.0f} s of host "
                                                      f"transition costs > 80% of the {run.left():.0f} s left")
        out["end_to_end_as_is_projected_s"] = out["teacher_s"] + out["host_costs_projected_s"]
        print(f"host student skipped: {run.results['skipped']['lsd_host_student']}; as-is end to end projected "
              f"{out['end_to_end_as_is_projected_s']:.0f} s")
    return out


# 3. scoring -----------------------------------------------------------------------------
def scoring(run: Run) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    from lsd.metrics.perplexity import CausalLMEvaluator

    args, device = run.args, run.args.device
    cfg = gpt2_config(args)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        model = GPT2LMHeadModel(GPT2Config(**cfg))
    n_params = sum(p.numel() for p in model.parameters())
    length = cfg["n_positions"]
    ids = torch.randint(0, cfg["vocab_size"], (args.score_samples, length), generator=torch.Generator().manual_seed(0))
    print(f"GPT-2 {cfg} ({n_params / 1e6:.0f}M parameters), built in {time.perf_counter() - t0:.1f} s; "
          f"{args.score_samples} samples x {length} tokens, batch {args.score_batch}")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        ev = CausalLMEvaluator(model, None, name="gpt2-large-architecture (random)", batch_size=args.score_batch,
                               device=device, dtype=dtype)
        ev.evaluate(ids[: args.score_batch])  # warm-up
        ev.reset_stats()
        sync(device)
        t0 = time.perf_counter()
        ev.evaluate(ids)
        sync(device)
        wall = time.perf_counter() - t0
        tokens = ev.stats["input_tokens"]
        rows.append({"dtype": str(dtype).replace("torch.", ""), "tokens": tokens, "wall_s": wall,
                     "tokens_per_s": tokens / wall, "forward_s": ev.stats["forward_s"],
                     "outside_forward": 1.0 - ev.stats["forward_s"] / wall})
        r = rows[-1]
        print(f"{r['dtype']:>8}: {r['tokens_per_s']:10.0f} tokens/s ({wall:.2f} s), outside forward passes "
              f"{100 * r['outside_forward']:.1f}%")
    tf32 = torch.backends.cuda.matmul.allow_tf32 if torch.device(device).type == "cuda" else None
    return {"config": cfg, "params": n_params, "samples": args.score_samples, "length": length,
            "batch": args.score_batch, "tf32_matmul": tf32, "rows": rows}


# 4. tauLDR image sampling -----------------------------------------------------------------
def tauldr_timing(run: Run) -> dict:
    from lsd.backbones.tauldr import TauLDRConfig, TauLDRNet, count_parameters
    from lsd.diffusion.scores import X0Score

    args, device = run.args, run.args.device
    cfg = TauLDRConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, image_size=8) if args.tiny else TauLDRConfig.cifar10()
    batch = args.tauldr_batch
    tensors, n_params = count_parameters(cfg)
    torch.manual_seed(0)
    net = TauLDRNet(cfg, autocast=True).to(device).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    print(f"tauLDR UNet {'(tiny)' if args.tiny else 'CIFAR-10'}: {n_params / 1e6:.2f}M parameters in {tensors} "
          f"tensors, {cfg.length} values x {cfg.levels} levels, batch {batch}")
    lsd.sample(X0Score(net, graph), lsd.Schedule.uniform("tauleap", 2), graph=graph, noise=noise, num_samples=batch,
               length=cfg.length, batch_size=batch, device=device)  # warm-up
    cuda = torch.device(device).type == "cuda"
    rows = []
    for base in ("tauleap", "euler"):
        for nfe in args.tauldr_nfe:
            timer = IntervalTimer(net, device)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            lsd.sample(X0Score(timer, graph), lsd.Schedule.uniform(base, nfe), graph=graph, noise=noise,
                       num_samples=batch, length=cfg.length, batch_size=batch, device=device)
            sync(device)
            wall = time.perf_counter() - t0
            rows.append({"base": base, "nfe": nfe, "wall_s": wall, "per_nfe_s": wall / nfe, "network_s": timer.seconds,
                         "network_per_nfe_s": timer.seconds / nfe, "calls": timer.calls,
                         "outside_over_inside": (wall - timer.seconds) / timer.seconds,
                         "images_per_s": batch / wall,
                         "peak_bytes": torch.cuda.max_memory_allocated() if cuda else None})
            r = rows[-1]
            print(f"{base:>8} NFE {nfe:3d}: {wall:7.2f} s, {r['per_nfe_s'] * 1e3:8.1f} ms/NFE (network "
                  f"{r['network_per_nfe_s'] * 1e3:7.1f} ms), outside/inside {100 * r['outside_over_inside']:6.1f}%"
                  + (f", peak {gib(r['peak_bytes'])}" if cuda else ""))
    return {"model": "tiny tauLDR UNet" if args.tiny else "tauLDR CIFAR-10 UNet (random weights)",
            "params": n_params, "tensors": tensors, "length": cfg.length, "levels": cfg.levels, "batch": batch,
            "autocast": "bf16" if cuda else None, "rows": rows}


# 5. projection ----------------------------------------------------------------------------
def projection(results: dict, args) -> tuple[str, dict]:
    """GPU-hours of the paper grid from the measured per-unit costs; markdown and numbers."""
    P = PAPER
    lines = [f"### Projection: GPU-hours of the paper grid ({results['machine'].get('cuda') or args.device})", ""]
    if args.tiny:
        lines += ["**Tiny CPU run: this tests the plumbing; the numbers below project nothing.**", ""]
    samp = [results[k] for k in sorted(results) if k.startswith("sampling_b")]
    if not samp:
        return "\n".join(lines + ["No sampling measurement: no projection."]), {}
    big = max(samp, key=lambda s: s["batch"])
    per_sample_nfe = big["fit"]["slope"] / big["batch"]
    per_sample_fixed = max(big["fit"]["intercept"], 0.0) / big["batch"]
    net_share = min(1.0, big["network_s_per_nfe"] / big["fit"]["slope"]) if big["fit"]["slope"] > 0 else 1.0
    ratio = {name: results["params"][size] / results["params"]["small"] for name, size in P["backbones"].items()}

    def step_cost(bb):  # seconds per sample per NFE on backbone bb: network part scaled by parameters
        return per_sample_nfe * (net_share * ratio[bb] + (1.0 - net_share))

    n_cells = len(P["backbones"]) * len(P["nfe"]) * len(P["samplers"]) * P["seeds"]
    sample_s = sum(len(P["samplers"]) * P["seeds"] * P["samples"] * (per_sample_fixed + step_cost(bb) * nfe)
                   for bb in P["backbones"] for nfe in P["nfe"])
    cell = results.get("lsd_cell") or {}
    per_it = cell.get("device_s_per_interval_trajectory")
    G, T = P["candidates"], P["trajectories"]
    grid_s = per_it * G * (G + 1) / 2 * min(T, P["cost_trajectories"]) if per_it is not None else float("nan")
    distilled = [s for s in P["samplers"] if s.split("-")[0] in ("jys", "lsd", "lsd+")]
    distill_s, cell_small_8 = 0.0, None
    for bb in P["backbones"]:
        for nfe in P["nfe"]:
            teacher = P["teacher_steps"] * T * step_cost(bb)
            fit = nfe * T * step_cost(bb)
            for s in distilled:
                c = teacher + fit + (grid_s if s.startswith("lsd+") else 0.0)
                distill_s += c * P["seeds"]
                if bb == "sedd-small" and nfe == 8 and s == "lsd+-euler":
                    cell_small_8 = c
    score_rows = (results.get("scoring") or {}).get("rows") or []
    tps = score_rows[0]["tokens_per_s"] if score_rows else float("nan")
    score_s = n_cells * P["samples"] * P["length"] / tps
    hours = {"sampling": sample_s / 3600, "distillation": distill_s / 3600, "scoring": score_s / 3600}
    image = results.get("tauldr") or {}
    image_rows = [r for r in image.get("rows", []) if r["base"] == "tauleap"]
    if image_rows:  # per image per NFE from the largest tau-leaping run (its fixed cost is small)
        top = max(image_rows, key=lambda r: r["nfe"])
        per_image_nfe = top["per_nfe_s"] / image["batch"]
        I = IMAGE
        image_distilled = [s for s in I["samplers"] if s.split("-")[0] in ("jys", "lsd", "lsd+")]
        hours["image sampling"] = (len(I["samplers"]) * I["seeds"] * I["samples"] * sum(I["nfe"]) * per_image_nfe
                                   / 3600)
        hours["image distillation"] = (len(image_distilled) * I["seeds"] * sum(
            (I["teacher_steps"] + nfe) * I["trajectories"] * per_image_nfe for nfe in I["nfe"]) / 3600)
    hours["total"] = sum(v for v in hours.values() if not math.isnan(v))
    n_distill = len(P["backbones"]) * len(P["nfe"]) * len(distilled) * P["seeds"]
    rows = [
        ["sampling", n_cells, f"{hours['sampling']:.2f}",
         f"{P['samples']} x {P['length']} tokens per cell; {per_sample_nfe * 1e3:.2f} ms per sample per NFE "
         f"(batch {big['batch']}, chunks of {big['chunk']}; network {100 * net_share:.0f}% of it)"],
        ["distillation", n_distill, f"{hours['distillation']:.2f}",
         f"teacher N={P['teacher_steps']} x {T} trajectories + NFE student steps, each a sampler step; LSD+ also "
         f"{G}x{G + 1}/2 transition intervals x {min(T, P['cost_trajectories'])} trajectories at "
         f"{per_it if per_it is not None else float('nan'):.2e} s each (record on the device)"],
        ["scoring (GPT-2 large, fp32)", n_cells, f"{hours['scoring']:.2f}",
         f"{P['samples']} x {P['length']} tokens per cell at {tps:.0f} tokens/s"],
    ]
    if "image sampling" in hours:
        I = IMAGE
        n_image = len(I["nfe"]) * len(I["samplers"]) * I["seeds"]
        rows += [
            ["image sampling (tauLDR CIFAR-10)", n_image, f"{hours['image sampling']:.2f}",
             f"{I['samples']} images per cell ({', '.join(I['samplers'])}; NFE {I['nfe']}; {I['seeds']} seed) at "
             f"{per_image_nfe * 1e3:.2f} ms per image per NFE (tau-leaping, batch {image['batch']}); FID "
             f"(Inception) not timed"],
            ["image distillation", len(I["nfe"]) * len(image_distilled) * I["seeds"],
             f"{hours['image distillation']:.2f}",
             f"teacher N={I['teacher_steps']} + NFE student steps x {I['trajectories']} trajectories per schedule, "
             f"each a sampling step; LSD+'s transition costs not included"]]
    rows.append(["**total**", "", f"**{hours['total']:.2f}**", ""])
    lines += [table(["component", "cells", "GPU-hours", "per-unit cost and assumption"], rows), ""]
    lines += [
        f"Grid: {len(P['backbones'])} backbones ({', '.join(P['backbones'])}) x NFE {P['nfe']} x "
        f"{len(P['samplers'])} samplers ({', '.join(P['samplers'])}) x {P['seeds']} seeds; "
        f"{len(distilled)} of the samplers are distilled per cell ({', '.join(distilled)}).",
        f"- SEDD-medium ({results['params']['medium'] / 1e6:.0f}M parameters vs {results['params']['small'] / 1e6:.0f}M "
        f"for small, x{ratio['sedd-medium']:.2f}): the network share of a step is scaled by the parameter ratio, "
        f"the sampler's share is not. RADD is costed as SEDD-small (same size; its output cache, which "
        f"skips unchanged rows, is ignored: an upper bound).",
        "- A teacher or student step costs what a sampling step costs per sample (same network, same float64 "
        "step); the teacher record's host copies are not included. As the library stores it, the paper "
        f"setting's record is {record_bytes(G, T, P['length'], 50258) / 1e12:.1f} TB: it does not fit, so this "
        "line assumes a restructured, device-resident record.",
        "- JYS is costed as an LSD cell (teacher + fit), its own procedure not measured here.",
        "- Scoring at fp32 as the evaluator runs by default; bf16 would cut it (see the scoring table).",
    ]
    if cell_small_8 is not None:
        lines.append(f"- One LSD+ cell at the paper setting (SEDD-small, NFE 8, N=1024, 64 trajectories, 128 "
                     f"candidates), projected: {cell_small_8 / 60:.1f} min (paper: ~{PAPER_LSD_PLUS_MINUTES_4090:.0f} "
                     f"min on an RTX 4090; goal here < {GOAL_LSD_PLUS_MINUTES_H100:.0f} min on one H100).")
    return "\n".join(lines) + "\n", {"hours": hours, "lsd_plus_cell_paper_setting_s": cell_small_8,
                                      "per_sample_per_nfe_s": per_sample_nfe, "network_share": net_share}


def markdown(results: dict, args) -> str:
    m = results["machine"]
    lines = [f"### GPU benchmark ({m.get('cuda') or 'CPU: ' + m['cpu']}; {'quick' if args.quick else 'full'}"
             f"{', tiny models' if args.tiny else ''}; {m['date']})", ""]
    samp = [results[k] for k in sorted(results) if k.startswith("sampling_b")]
    if samp:
        lines += [f"Sampling, {results['model']} (length {results['length']}), uniform Euler; network in bf16 "
                  "autocast on CUDA, step and draws in float64.", ""]
        rows = []
        for s in samp:
            for r in s["rows"]:
                rows.append([s["batch"], s["chunk"], r["nfe"], f"{r['wall_s']:.2f}", f"{r['per_nfe_s'] * 1e3:.1f}",
                             f"{r['network_s']:.2f}", f"{100 * r['outside_over_inside']:.1f}%",
                             f"{r['tokens_per_s']:.0f}"])
        lines += [table(["batch", "chunk", "NFE", "wall s", "ms / NFE", "network s", "outside / inside network",
                         "tokens/s"], rows), ""]
        for s in samp:
            f = s["fit"]
            per = f" ({gib(s['bytes_per_sample'])} peak per sample)" if s["bytes_per_sample"] else ""
            lines.append(f"- batch {s['batch']}: wall = {f['intercept']:.3f} s + {f['slope']:.4f} s x NFE, "
                         f"R^2 {f['r2']:.4f}{per}")
        lines.append("")
    cell = results.get("lsd_cell")
    if cell:
        st = cell["setting"]
        lines += [f"LSD+ cell: NFE {st['nfe']}, teacher N={st['teacher_steps']}, {st['trajectories']} trajectories, "
                  f"{st['candidates']} candidates, length {st['length']}, dim {st['dim']} (record "
                  f"{gib(st['record_bytes'])}; paper setting's record "
                  f"{list(cell['record_bytes'].values())[0] / 1e12:.2f} TB).", ""]
        rows = [["teacher rollout (record on the host)", f"{cell['teacher_s']:.1f}",
                 f"wall/network {cell['teacher_s'] / cell['teacher_network_s']:.3f}"],
                ["transition costs on the host (library as is)", f"{cell['host_costs_projected_s']:.1f}",
                 f"projected: {cell['host_s_per_interval']:.3f} s x {st['candidates'] * (st['candidates'] + 1) // 2} "
                 "intervals"],
                ["record moved to the device", f"{cell['to_device_s']:.1f}", ""],
                ["student with the record on the device", f"{cell['device_student_s']:.2f}",
                 f"of which transition costs {cell['device_costs_s']:.2f}"],
                ["**end to end, record on the device**", f"**{cell['end_to_end_device_record_s']:.1f}**", ""]]
        if "end_to_end_as_is_s" in cell:
            rows.append(["**end to end as the library runs it**", f"**{cell['end_to_end_as_is_s']:.1f}**", "measured"])
        else:
            rows.append(["end to end as the library runs it", f"{cell['end_to_end_as_is_projected_s']:.0f}",
                         "projected (skipped: budget)"])
        lines += [table(["part", "seconds", "note"], rows), ""]
    im = results.get("tauldr")
    if im:
        lines += [f"tauLDR image sampling: {im['model']} ({im['params'] / 1e6:.2f}M parameters), {im['length']} values "
                  f"x {im['levels']} levels per image, batch {im['batch']}, network in "
                  f"{im['autocast'] or 'float32'}; X0Score, step and draws float64.", ""]
        lines += [table(["rule", "NFE", "wall s", "ms / NFE", "network ms / NFE", "outside / inside network",
                         "images/s", "peak memory"],
                        [[r["base"], r["nfe"], f"{r['wall_s']:.2f}", f"{r['per_nfe_s'] * 1e3:.1f}",
                          f"{r['network_per_nfe_s'] * 1e3:.1f}", f"{100 * r['outside_over_inside']:.1f}%",
                          f"{r['images_per_s']:.1f}", gib(r["peak_bytes"]) if r["peak_bytes"] else "-"]
                         for r in im["rows"]]), ""]
    sc = results.get("scoring")
    if sc:
        tf32 = "" if sc["tf32_matmul"] is None else f", TF32 matmul {sc['tf32_matmul']}"
        lines += [f"Scoring, GPT-2 architecture {sc['config']} ({sc['params'] / 1e6:.0f}M parameters, random "
                  f"weights), {sc['samples']} x {sc['length']} tokens, batch {sc['batch']}{tf32}.", ""]
        lines += [table(["dtype", "tokens/s", "wall s", "outside forward passes"],
                        [[r["dtype"], f"{r['tokens_per_s']:.0f}", f"{r['wall_s']:.2f}",
                          f"{100 * r['outside_forward']:.1f}%"] for r in sc["rows"]]), ""]
    for name, err in results["errors"].items():
        lines.append(f"- **{name} failed**: {err}")
    for name, why in results["skipped"].items():
        lines.append(f"- {name} skipped: {why}")
    lines.append(f"- wall time of the whole script: {results['script_wall_s']:.0f} s")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.outdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(args)
    res = run.results
    res["machine"] = machine()
    res["args"] = {k: v for k, v in vars(args).items()}
    device = args.device
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 numbers are fp32
    cfg = dit_config(args)
    res["params"] = {"small": params(cfg), "medium": params(cfg if args.tiny else DiTConfig.sedd("medium"))}
    res["model"] = "tiny DiT" if args.tiny else "SEDD-small (random weights)"
    res["length"] = cfg.length
    print(f"device {device}; {res['model']}: {res['params']['small'] / 1e6:.1f}M parameters; "
          f"SEDD-medium {res['params']['medium'] / 1e6:.1f}M")
    torch.manual_seed(0)
    net = build_dit(cfg, device=device, autocast=True).eval()
    graph, noise = cfg.make_graph(), cfg.make_noise()
    lsd.sample(net, lsd.Schedule.uniform("euler", 2), graph=graph, noise=noise, num_samples=2, length=cfg.length,
               batch_size=2, device=device)  # warm-up
    per_sample = run.section("bytes_per_sample", bytes_per_sample, net, graph, noise, cfg.length, device)
    for i, batch in enumerate(sorted(args.batches)):
        if i > 0 and run.left() < 0.5 * args.budget_s:
            res["skipped"][f"sampling_b{batch}"] = f"{run.left():.0f} s of budget left"
            continue
        run.section(f"sampling_b{batch:04d}", sampling, run, net, graph, noise, cfg.length, batch, per_sample)
    run.section("scoring", scoring, run)
    run.section("tauldr", tauldr_timing, run)
    run.section("lsd_cell", lsd_cell, run, net, graph, noise, cfg.length)
    res["script_wall_s"] = time.perf_counter() - run.t0
    proj_md, proj = projection(res, args)
    res["projection"] = proj
    md = markdown(res, args)
    atomic_write_json(out_dir / "results.json", res)
    atomic_write_text(out_dir / "results.md", md)
    atomic_write_text(out_dir / "projection.md", proj_md)
    print("\n" + md + "\n" + proj_md)
    print(f"wrote {out_dir}/results.json, results.md, projection.md")
    return res


if __name__ == "__main__":
    main()
