"""What coupled evaluation sampling buys: per-sample correlation with uniform Euler, the
within-seed standard error of the paired difference, and the spread of that difference between
seeds, for records of the same grid sampled independently and coupled.

    git archive 708de2e results/default/records | tar -x -C /tmp/independent   # independent draws
    python -m benchmarks.coupling_gain --independent /tmp/independent/results/default/records \
        --coupled results/default/records --out benchmarks/results/coupling_gain.md

A paired interval over seeds (lsd.metrics.intervals.paired_interval, a t interval on the seeds'
mean differences) is about t_{n-1} / sqrt(n) times the between-seed spread: coupling can only
narrow it where the within-seed noise, not the seed-to-seed change of a distilled schedule,
makes that spread.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lsd.io import atomic_write_text

BACKBONES = ("oracle-exact", "tiny-sedd-text", "tiny-radd-text")
SAMPLERS = ("euler-T0.9", "jys-euler", "lsd-euler", "lsd+-euler")


def per_sample(root: Path, backbone: str, sampler: str, nfe: int, seed: int, metric: str) -> np.ndarray:
    record = json.loads((root / backbone / sampler / f"nfe{nfe}" / f"seed{seed}.json").read_text())
    return np.asarray(record["extra"]["per_sample"][metric], float)


def cell(root: Path, backbone: str, sampler: str, nfe: int, seeds, metric: str) -> dict:
    se, means, corr = [], [], []
    for seed in seeds:
        a, b = per_sample(root, backbone, sampler, nfe, seed, metric), per_sample(root, backbone, "euler", nfe, seed,
                                                                                    metric)
        d = a - b
        se.append(d.std(ddof=1) / np.sqrt(len(d)))
        means.append(d.mean())
        corr.append(np.corrcoef(a, b)[0, 1])
    return {"corr": float(np.mean(corr)), "se": float(np.mean(se)), "between": float(np.std(means, ddof=1))}


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--independent", required=True, type=Path)
    ap.add_argument("--coupled", required=True, type=Path)
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--metric", default="oracle_nll")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    lines = [f"# Coupled against independent evaluation sampling ({args.metric}, seeds "
             f"{', '.join(map(str, args.seeds))})", "",
             "Per cell, for the difference sampler minus uniform Euler at the same NFE and seed: the mean "
             "per-sample correlation of the two rows, the mean within-seed standard error of the mean "
             "difference, and the standard deviation of the seeds' mean differences. Made by "
             "`python -m benchmarks.coupling_gain` (its docstring says how).", "",
             "| backbone | sampler | NFE | corr indep. | corr coupled | within-seed SE indep. | coupled | "
             "between-seed sd indep. | coupled |", "|---|---|---|---|---|---|---|---|---|"]
    for backbone in args.backbones:
        for sampler in args.samplers:
            for nfe in args.nfe:
                i = cell(args.independent, backbone, sampler, nfe, args.seeds, args.metric)
                c = cell(args.coupled, backbone, sampler, nfe, args.seeds, args.metric)
                lines.append(f"| {backbone} | {sampler} | {nfe} | {i['corr']:.2f} | {c['corr']:.2f} | {i['se']:.4f} | "
                             f"{c['se']:.4f} | {i['between']:.4f} | {c['between']:.4f} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
