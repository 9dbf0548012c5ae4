"""Workflow timing: the smoke run of the Snakemake workflow from a clean results folder, a
no-op rerun, and Snakemake's scheduling overhead per job.

The working tree is copied to a temporary folder (without .venv, .git, .snakemake,
results/ and work/), so the run starts clean and never touches this checkout. Then:

1. `snakemake --cores 2 --configfile workflow/configs/smoke.yaml`, wall time;
2. the same command again: nothing to do, wall time (DAG building and file checks only);
3. the jobs' own wall times from the files their rules' `benchmark:` directives write
   (column `s`); overhead per job = (run wall - sum of job walls) / jobs with a benchmark
   file. With --cores 2 up to two jobs run side by side, so the sum of job walls can exceed
   the run's wall: the script also reports (cores x wall - sum of job walls) / jobs, the
   idle core-seconds per job, an upper bound of the overhead.

A failed run is reported as a failure (with the failing rule and its log's last line):
no number stands in for it.

    python benchmarks/workflow_timing.py [--cores 2] [--configfile workflow/configs/smoke.yaml] [--keep]
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SKIP_TOP = {".venv", ".git", ".snakemake", ".pytest_cache", "results", "work", ".gl", "build"}


def copy_tree(dest: Path) -> None:
    def ignore(folder, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if Path(folder).resolve() == REPO:
            skip |= SKIP_TOP & set(names)
        return skip

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


def snakemake_command() -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def run(cmd, cwd: Path, log: Path, timeout: float) -> tuple[int, float, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc = 124
        text = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        text += f"\n(timed out after {timeout:.0f} s)"
    wall = time.perf_counter() - t0
    log.write_text(text)
    return rc, wall, text


def benchmark_walls(root: Path) -> dict:
    """Job wall times (column `s`) of every benchmark file under results/<config name>/benchmarks, by rule."""
    out = {}
    for path in sorted((root / "results").glob("*/benchmarks/**/*.tsv")):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        rule = path.relative_to(root / "results").parts[2]
        rule = rule[:-4] if rule.endswith(".tsv") else rule
        out.setdefault(rule, []).extend(float(r["s"]) for r in rows)
    return out


def failure(text: str, root: Path) -> str:
    """One line: the failing rule and the last line of its log, or the last error line."""
    rule = re.search(r"Error in rule (\S+?):", text)
    logline = re.search(r"log: (\S+) \(check log", text)
    detail = ""
    if logline and (root / logline.group(1)).exists():
        lines = [ln for ln in (root / logline.group(1)).read_text().splitlines() if ln.strip()]
        detail = lines[-1] if lines else ""
    if rule:
        return f"rule {rule.group(1)} failed" + (f": {detail}" if detail else "")
    errors = [ln for ln in text.splitlines() if "rror" in ln]
    return errors[-1].strip() if errors else (text.strip().splitlines() or ["no output"])[-1]


def steps_done(text: str):
    found = re.findall(r"(\d+) of (\d+) steps", text)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, None)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", default="workflow/configs/smoke.yaml")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed for the first run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    ap.add_argument("--quick", action="store_true", help="accepted for the suite; the smoke run is already small")
    ap.add_argument("--threads", type=int, default=1, help="OMP threads of the jobs (each rule gets its own --threads)")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="lsd-workflow-timing."))
    root = tmp / "tree"
    out = {"command": f"snakemake --cores {args.cores} --configfile {args.configfile}", "cores": args.cores,
           "configfile": args.configfile}
    try:
        copy_tree(root)
        if not (root / "Snakefile").exists():
            out.update(ok=False, error="no Snakefile in the working tree")
            print(f"workflow timing: {out['error']}")
            return out
        if not (root / args.configfile).exists():
            out.update(ok=False, error=f"{args.configfile} not found")
            print(f"workflow timing: {out['error']}")
            return out
        cmd = snakemake_command() + ["--cores", str(args.cores), "--configfile", args.configfile]
        rc, wall, text = run(cmd, root, tmp / "first.log", args.timeout)
        done, total = steps_done(text)
        walls = benchmark_walls(root)
        out.update(first_wall_s=wall, first_rc=rc, steps_done=done, steps_total=total,
                   jobs_benchmarked=sum(len(v) for v in walls.values()),
                   job_wall_sum_s=sum(sum(v) for v in walls.values()),
                   per_rule={k: {"jobs": len(v), "wall_sum_s": sum(v)} for k, v in walls.items()})
        if rc != 0:
            out.update(ok=False, error=failure(text, root))
            print(f"smoke run FAILED after {wall:.1f} s ({done} of {total} steps done): {out['error']}")
            print("no workflow timing reported for a failed run")
            return out
        rc2, wall2, text2 = run(cmd, root, tmp / "rerun.log", 600)
        nothing = "Nothing to be done" in text2
        n = out["jobs_benchmarked"]
        overhead = (wall - out["job_wall_sum_s"]) / n if n else float("nan")
        idle = (args.cores * wall - out["job_wall_sum_s"]) / n if n else float("nan")
        out.update(ok=rc2 == 0, noop_wall_s=wall2, noop_rc=rc2, noop_nothing_to_do=nothing,
                   overhead_per_job_s=overhead, idle_core_s_per_job=idle,
                   noop_over_first=wall2 / wall, job_sum_over_wall=out["job_wall_sum_s"] / wall)
        if rc2 != 0:
            out["error"] = f"no-op rerun failed: {failure(text2, root)}"
        print(f"workflow: {out['command']} (temporary copy of the working tree, clean results/)")
        print(f"first run         {wall:8.1f} s   {done} of {total} steps, {n} jobs with a benchmark file")
        print(f"no-op rerun       {wall2:8.1f} s   = {wall2 / wall:.3f} x the first run"
              f"{'' if nothing else '  (NOT a no-op: it ran jobs)'}")
        print(f"sum of job walls  {out['job_wall_sum_s']:8.1f} s   = {out['job_wall_sum_s'] / wall:.3f} x the run's wall "
              f"({args.cores} cores: up to {args.cores} jobs side by side)")
        for rule, v in sorted(out["per_rule"].items()):
            print(f"  {rule:<12} {v['jobs']:3d} jobs {v['wall_sum_s']:8.1f} s")
        print(f"scheduling overhead per job: (wall - sum of job walls) / jobs = {overhead:+.2f} s; "
              f"idle core-seconds per job ({args.cores} x wall - sum) / jobs = {idle:.2f} s")
        return out
    finally:
        if args.keep:
            print(f"kept {tmp}")
            out["kept"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
