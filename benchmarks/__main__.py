"""The performance suite: `python -m benchmarks [--quick] [--threads 1]`.

Runs, in one process and one after another, every script below through its
`main(argv) -> dict`, prints what each prints, and writes benchmarks/RESULTS.md (atomically)
with the numbers, the machine and the date. Every number is a ratio or a fit measured side
by side within one run; absolute seconds are context.

    sampler_overhead   time outside network calls / inside at 50,258 classes, dense vs sparse (goal <= 10%)
    distill_overhead   LSD+ cell wall / its network time (goal <= 1.2); peak memory N=256 vs N=1024
    eval_throughput    share of perplexity scoring outside forward passes (goal < 10%)
    workflow_timing    smoke workflow from clean, no-op rerun, Snakemake overhead per job
    scaling            time vs NFE (slope, R^2), length and batch; benchmarks/scaling.png

`--quick` shrinks everything (about 2-3 minutes on one thread); without it, about 15 minutes.
A folder benchmarks/gpu_results/ (the OUTDIR of `benchmarks/gpu.py`) is included when present.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent
SCRIPTS = ("sampler_overhead", "distill_overhead", "eval_throughput", "workflow_timing", "scaling")


def argv_for(name: str, quick: bool, threads: int) -> list[str]:
    t = ["--threads", str(threads)] + (["--quick"] if quick else [])
    if name == "eval_throughput" and not quick:
        return t + ["--samples", "32", "--length", "256"]
    if name == "workflow_timing":
        return t + ["--cores", "2"]
    return t


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def verdict(ok: bool) -> str:
    return "meets" if ok else "**misses**"


def summary_rows(r: dict) -> list[list[str]]:
    rows = []
    so = r.get("sampler_overhead")
    if so:
        rows.append(["sampler overhead at 50,258 classes (time outside network calls / inside, same runs)",
                     f"{pct(so['in_run_overhead'])} (dense path: {pct(so.get('before_in_run_overhead', float('nan')))})",
                     "<= 10%", verdict(so["in_run_overhead"] <= 0.10)])
        rows.append(["sampling / (NFE x a forward pass timed apart; noisier on shared cores)", f"{so['ratio']:.3f}",
                     "~1", "-"])
    do = r.get("distill_overhead")
    if do:
        rows.append(["LSD+ cell wall / network time (teacher + student)", f"{do['ratio']:.3f}", "<= 1.2",
                     verdict(do["ratio"] <= 1.2)])
        mem = do.get("memory")
        if mem and len(mem["probes"]) >= 2:
            a, b = mem["probes"][0], mem["probes"][-1]
            rows.append([f"peak memory growth N={b['teacher_steps']} / N={a['teacher_steps']} (same batch, length, "
                         "vocabulary, candidates)", f"{b['peak_delta_mib']:.1f} / {a['peak_delta_mib']:.1f} MiB = "
                         f"{mem['ratio_last_first']:.2f}", "~1 (no growth with N)",
                         verdict(mem["ratio_last_first"] < 1.25)])
    ev = r.get("eval_throughput")
    if ev:
        rows.append(["perplexity scoring outside forward passes", pct(ev["outside_forward_max"]), "< 10%",
                     verdict(ev["outside_forward_max"] < 0.10)])
    wf = r.get("workflow_timing")
    if wf:
        if "first_wall_s" in wf and wf.get("first_rc") == 0:
            rows.append(["smoke workflow, no-op rerun / first run", f"{wf['noop_wall_s']:.1f} / {wf['first_wall_s']:.1f}"
                         f" s = {wf['noop_over_first']:.3f}", "-", "-"])
            rows.append(["Snakemake overhead per job: (wall - sum of job walls) / jobs",
                         f"{wf['overhead_per_job_s']:+.2f} s ({wf['jobs_benchmarked']} jobs)", "-", "-"])
        else:
            rows.append(["smoke workflow", f"**FAILED**: {wf.get('error', 'unknown')}", "runs", "**misses**"])
    sc = r.get("scaling")
    if sc:
        for key, label in (("sampling_vs_nfe", "sampling time vs NFE"), ("student_vs_nfe", "LSD+ student vs NFE"),
                           ("teacher_vs_steps", "teacher rollout vs its steps N")):
            s = sc[key]
            rows.append([f"{label}: linear fit", f"slope {s['slope'] * 1e3:.2f} ms/{s['unit']}, R^2 {s['r2']:.4f}",
                         "linear (R^2 ~ 1)", verdict(s["r2"] >= 0.98)])
        for key, label in (("sampling_vs_length", "sampling vs length"), ("sampling_vs_batch", "sampling vs batch")):
            s = sc[key]
            rows.append([f"{label}: log-log exponent", f"{s['loglog_exponent']:.2f} (R^2 {s['loglog_r2']:.3f})",
                         "~1", "-"])
    return rows


def details(r: dict) -> list[str]:
    from benchmarks.common import table

    out = []
    so = r.get("sampler_overhead")
    if so:
        st = so["setting"]
        out += ["### Sampler overhead (benchmarks/sampler_overhead.py)", "",
                f"DiT hidden {st['hidden']}, {st['blocks']} blocks, vocabulary {st['vocab']}+1, batch {st['batch']}, "
                f"length {st['length']}, {st['base']}, {st['threads']} thread(s). One forward pass "
                f"{so['forward_s'] * 1e3:.1f} ms; sampling at NFE {so['nfe']} {so['sampling_s'] * 1e3:.1f} ms "
                f"(medians); sampling / (NFE x forward) = {so['ratio']:.4f}; time outside network calls / inside, "
                f"within the same runs: {pct(so['in_run_overhead'])}.", ""]
    do = r.get("distill_overhead")
    if do:
        st = do["setting"]
        out += ["### Distillation overhead (benchmarks/distill_overhead.py)", "",
                f"{st['model']}, length {st['length']}, NFE {st['nfe']}, teacher N={st['teacher_steps']}, "
                f"{st['trajectories']} trajectories, {st['candidates']} candidates, {st['threads']} thread(s).", ""]
        rows = [[k, f"{p['wall_s']:.2f}", f"{p['network_s']:.2f}",
                 f"{p['wall_s'] / p['network_s']:.3f}" if p["network_s"] > 0 else "-"] for k, p in do["phases"].items()]
        rows.append(["**total**", f"{do['wall_s']:.2f}", f"{do['network_s']:.2f}", f"**{do['ratio']:.3f}**"])
        out += [table(["phase", "wall s", "network s", "wall / network"], rows), ""]
        mem = do.get("memory")
        if mem:
            out += [f"Peak memory ({mem['method']}), DiT {mem['model']}, {mem['trajectories']} trajectories; the "
                    f"teacher record is {mem['record_bytes'] / 2 ** 20:.1f} MiB by count at any N:", ""]
            out += [table(["teacher steps N", "peak growth MiB", "cell s"],
                          [[p["teacher_steps"], f"{p['peak_delta_mib']:.1f}", f"{p['wall_s']:.1f}"]
                           for p in mem["probes"]]), ""]
    ev = r.get("eval_throughput")
    if ev:
        out += ["### Evaluator overhead (benchmarks/eval_throughput.py)", "",
                f"{ev['evaluator']}; {ev['samples']} samples x {ev['length']} tokens, batch {ev['batch_size']}, "
                f"{ev['threads']} thread(s), load {ev['load_s']:.1f} s.", ""]
        out += [table(["input", "tokens", "total s", "forward s (hooks)", "tokens/s", "outside forward"],
                      [[x["input"], x["tokens"], f"{x['total_s']:.2f}", f"{x['forward_s_hook']:.2f}",
                        f"{x['tokens_per_s']:.0f}", pct(x["outside_forward"])] for x in ev["rows"]]), ""]
    wf = r.get("workflow_timing")
    if wf:
        out += ["### Workflow timing (benchmarks/workflow_timing.py)", "", f"`{wf['command']}` in a temporary copy "
                "of the working tree (clean results/).", ""]
        if wf.get("first_rc") == 0 and "noop_wall_s" in wf:
            out += [table(["what", "seconds"], [
                ["first run (from clean)", f"{wf['first_wall_s']:.1f}"],
                ["no-op rerun" + ("" if wf["noop_nothing_to_do"] else " (it ran jobs!)"), f"{wf['noop_wall_s']:.1f}"],
                [f"sum of the {wf['jobs_benchmarked']} jobs' benchmark walls", f"{wf['job_wall_sum_s']:.1f}"],
                ["(wall - sum of job walls) / jobs", f"{wf['overhead_per_job_s']:+.2f}"],
                [f"({wf['cores']} x wall - sum of job walls) / jobs: idle core-seconds per job",
                 f"{wf['idle_core_s_per_job']:.2f}"]]), "",
                "With 2 cores two jobs run side by side, so the sum of job walls can exceed the run's wall and the "
                "first overhead figure can be negative; the idle core-seconds per job bound it from above.", ""]
            out += [table(["rule", "jobs", "sum of walls s"], [[k, v["jobs"], f"{v['wall_sum_s']:.1f}"]
                                                             for k, v in sorted(wf["per_rule"].items())]), ""]
        else:
            out += [f"**The smoke run failed** after {wf.get('first_wall_s', float('nan')):.1f} s "
                    f"({wf.get('steps_done', 0)} of {wf.get('steps_total')} steps done): {wf.get('error')}. "
                    "No workflow timing is reported for it.", ""]
    sc = r.get("scaling")
    if sc:
        out += ["### Scaling (benchmarks/scaling.py)", "", sc["setting"] + ".", ""]
        rows = []
        for key, s in sc.items():
            if isinstance(s, dict) and "seconds" in s:
                rows.append([key.replace("_", " "), ", ".join(str(x) for x in s["x"]),
                             ", ".join(f"{y * 1e3:.0f}" for y in s["seconds"]),
                             f"{s['slope'] * 1e3:.2f} ms/{s['unit']}", f"{s['r2']:.4f}", f"{s['loglog_exponent']:.2f}"])
        out += [table(["series", "x", "ms", "slope", "R^2", "log-log exponent"], rows), ""]
        if "transition_costs_s" in sc.get("student_vs_nfe", {}):
            out += [f"The LSD+ student series excludes the record's transition costs, computed once "
                    f"({sc['student_vs_nfe']['transition_costs_s'] * 1e3:.0f} ms) and memoised.", ""]
        if sc.get("plot"):
            out += [f"![scaling]({Path(sc['plot']).name})", ""]
    return out


def gpu_section() -> list[str]:
    folder = HERE / "gpu_results"
    out = ["## GPU", ""]
    full = [folder / name for name in ("results.md", "projection.md")]
    partial = sorted(folder.glob("partial-*.md"))  # runs cut short by their budget, kept as printed
    if not any(path.exists() for path in full):
        out += ["The full GPU run is pending: `python benchmarks/gpu.py benchmarks/gpu_results` on one H100 or H200 "
                "(under 8 minutes) writes the results here.", ""]
    else:
        for path in full:
            out += [path.read_text().strip() if path.exists() else f"(benchmarks/gpu_results/{path.name} missing)", ""]
    for path in partial:
        out += [path.read_text().strip(), ""]
    return out


def render(results: dict, machine: dict, quick: bool, threads: int, wall: float, load_end) -> str:
    from benchmarks.common import table

    lines = ["# Performance results", ""]
    kind = "**Quick run** (`python -m benchmarks --quick`)" if quick else "Full run (`python -m benchmarks`)"
    lines += [f"{kind}, {threads} torch thread(s), {wall / 60:.1f} minutes in all, {machine['date']}.", ""]
    if (machine.get("cores") or 0) <= 2:
        lines += [f"Machine: **{machine['cores']} cores shared with other workers** (load average "
                  f"{', '.join(f'{x:.1f}' for x in machine.get('load_avg', ()))} at the start, "
                  f"{', '.join(f'{x:.1f}' for x in load_end or ())} at the end): absolute times are noisy and slow; "
                  "the ratios are measured side by side within each run.", ""]
    prov = machine["provenance"]
    lines += [table(["machine", ""], [["CPU", machine["cpu"]], ["cores", machine["cores"]],
                                      ["torch", machine["torch"]], ["GPU", machine["cuda"] or "none"],
                                      ["python", prov["python"]], ["platform", prov["platform"]],
                                      ["lsd", f"{prov['lsd']} (git {prov['git'] or 'unknown'})"],
                                      ["numpy", prov["numpy"]]]), ""]
    lines += ["## Summary", "", table(["measure", "measured", "goal", "verdict"], summary_rows(results)), ""]
    for name, err in results.get("_errors", {}).items():
        lines += [f"- **{name} failed**: {err}"]
    if results.get("_errors"):
        lines.append("")
    lines += ["## Details", ""] + details(results) + gpu_section()
    lines += ["## Reproduce", "", "```bash", "python -m benchmarks --quick --threads 1   # this file, ~3 minutes",
              "python -m benchmarks --threads 1           # full sizes, ~15 minutes",
              "python benchmarks/gpu.py benchmarks/gpu_results   # on one GPU, < 8 minutes", "```",
              "", "Seconds per script: " + ", ".join(f"{k} {v:.0f}" for k, v in results["_seconds"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: about 2-3 minutes on one thread")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", choices=SCRIPTS, default=None, help="run only these scripts")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args(argv)

    from benchmarks.common import machine as describe
    from benchmarks.common import set_threads
    from lsd.io import atomic_write_text

    set_threads(args.threads)
    info = describe(args.threads)
    results, seconds, errors, argvs = {}, {}, {}, {}
    t_all = time.perf_counter()
    for name in args.only or SCRIPTS:
        module = __import__(f"benchmarks.{name}", fromlist=["main"])
        argvs[name] = argv_for(name, args.quick, args.threads)
        print(f"\n===== {name} {' '.join(argvs[name])}", flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = module.main(argvs[name])
        except Exception as err:  # a failing script is reported, the others still run
            traceback.print_exc()
            errors[name] = f"{type(err).__name__}: {err}"
        seconds[name] = time.perf_counter() - t0
        set_threads(args.threads)
    wall = time.perf_counter() - t_all
    results.update(_seconds=seconds, _errors=errors, _argv=argvs)
    try:
        load_end = os.getloadavg()
    except OSError:
        load_end = None
    text = render(results, info, args.quick, args.threads, wall, load_end)
    atomic_write_text(args.out, text)
    print(f"\nwrote {args.out} ({wall / 60:.1f} minutes)")
    return results


if __name__ == "__main__":
    main()
