"""The paper's two LSD ablations on a trained text backbone: the Hamming radius zeta of the
relaxed objective, and strict (zeta = 0) against relaxed matching.

The paper (SEDD-small, Euler, NFE 32, GPT-2-large gen PPL): zeta 0% 35.98, 1% 32.15,
5% 31.24, 10% 39.97, 20% 51.52; LSD+ without / with the relaxed objective 34.98 / 33.23.
Here: oracle NLL (nats/token, exact, lower is better) and unigram entropy of LSD and LSD+
(Euler base, paper convention Phi * s, coupled teacher and student) at NFE 32, for zeta in
{0, 1, 5, 10, 20}% of the length and `--zeta auto` (chosen on held-out teacher
trajectories), against uniform Euler at the same NFE and the teacher. One teacher rollout
per seed is shared by every student of that seed; each student is distilled once per seed,
so the intervals cover distillation and sampling.

    python -m benchmarks.ablations --backbone tiny-radd-text --seeds 0 1 2

`--study readings` sweeps instead the readings of the paper's training procedure
(docs/lsd-training.md): fit (Adam from Phi = 1 with the harness's trajectories, Adam with 16
updates per coefficient, the exact minimiser) x convention (scale: Phi * s fitted on s; power:
Phi * log s fitted on log s) x relaxed start (zeta 0; zeta 5% with marginal or teacher tokens),
for LSD and LSD+, beside uniform Euler at T = 1, 0.9, 0.8, 0.7, uniform Euler with Phi = 0.84 at
every step, LSD+'s grid alone (Phi = 1) and the harness's earlier power reading (s^Phi fitted on
s). Every row: NLL and entropy with 95% intervals and the paired difference to uniform Euler
(same sampling streams), pooled over seeds.

    python -m benchmarks.ablations --study readings --backbone oracle-exact --nfe 8 \
        --samples 256 --teacher-steps 1024 --trajectories 64 --candidates 128 --seeds 0 1 2
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd

import lsd
from lsd.io import atomic_write_text
from lsd.metrics import bootstrap_interval
from lsd.optimize.lsd import distill
from lsd.optimize.lsd_objective import Training

from .distill_quality import load_study, sample_rows, seed_teacher, study_parser

ZETAS = ("0", "0.01", "0.05", "0.1", "0.2", "auto")
METHODS = ("lsd", "lsd+")


def main(argv=None):
    ap = study_parser(__doc__, backbone="tiny-radd-text", samples=128, teacher_steps=256, trajectories=32,
                      candidates=64, out="benchmarks/results/ablations")
    ap.add_argument("--study", choices=["zeta", "readings"], default="zeta")
    ap.add_argument("--nfe", type=int, nargs="+", default=[32])
    ap.add_argument("--zetas", nargs="+", default=list(ZETAS))
    ap.add_argument("--summary", help="readings: also write the summary table here")
    args = ap.parse_args(argv)
    if args.study == "readings":
        return readings(args)
    if len(args.nfe) != 1:
        ap.error("--study zeta takes one --nfe")
    args.nfe = args.nfe[0]
    bb, task = load_study(args)
    rows, schedules = [], []
    started = time.perf_counter()
    for seed in args.seeds:
        record, teacher_rows = seed_teacher(bb, task, args, seed, zeta="-")
        rows += teacher_rows
        rows += sample_rows(bb, task, lsd.Schedule.uniform("euler", args.nfe), args.samples, seed,
                            sampler="euler", zeta="-")
        for method in METHODS:
            for zeta in args.zetas:
                s = distill(bb.model, bb.graph, bb.noise, method=method, nfe=args.nfe, length=bb.length,
                            base="euler", convention="scale", coupling="coupled", zeta=zeta, record=record)
                chosen = f"auto ({s.metadata['zeta']:g})" if zeta == "auto" else zeta
                rows += sample_rows(bb, task, s, args.samples, seed, sampler=method, zeta=chosen)
                schedules.append({"method": method, "zeta": zeta, "chosen": s.metadata["zeta"], "seed": seed,
                                  "coefficients": list(s.coefficients), "times": list(s.times),
                                  "loss": s.metadata["loss"], "zeta_search": s.metadata["zeta_search"]})
    frame = pd.DataFrame(rows)
    out = Path(args.out) / args.backbone
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "samples.csv", frame.to_csv(index=False))
    atomic_write_text(out / "schedules.json", pd.DataFrame(schedules).to_json(orient="records", indent=1))
    summary = summarise(frame, args, time.perf_counter() - started)
    atomic_write_text(out / "summary.md", summary)
    print(summary)


def summarise(frame: pd.DataFrame, args, wall: float) -> str:
    def cell(values) -> str:
        iv = bootstrap_interval(values)
        return f"{iv.estimate:.4f} [{iv.low:.4f}, {iv.high:.4f}]"

    frame = frame.copy()
    # "auto (0.05)" differs from seed to seed: one row for auto, the chosen values listed
    frame["row"] = frame.zeta.where(~frame.zeta.str.startswith("auto"), "auto")
    chosen = frame[frame.row == "auto"].groupby(["sampler", "seed"]).zeta.first()
    lines = [f"# LSD ablations on `{args.backbone}` at NFE {args.nfe}", "",
             f"Oracle NLL (nats/token, lower is better) and unigram entropy; {args.samples} samples x "
             f"{len(args.seeds)} seeds per row (seeds {', '.join(map(str, args.seeds))}), 95% bootstrap intervals "
             f"over the pooled samples; seed sd: standard deviation of the per-seed means. Teacher: "
             f"{args.teacher_steps}-step uniform Euler, {args.trajectories} trajectories, {args.candidates} "
             f"candidate times; Euler base, paper convention (Phi * s), coupled. zeta is the Hamming radius of "
             f"the relaxed start as a share of the length ({frame.shape[0]} samples in all, {wall / 60:.1f} min).",
             "", "| sampler | zeta | NLL [95% CI] | seed sd | entropy [95% CI] |", "|---|---|---|---|---|"]
    order = {z: i for i, z in enumerate(["-", *ZETAS])}
    keyed = frame.groupby(["sampler", "row"], sort=False)
    for (sampler, row), g in sorted(keyed, key=lambda kv: (kv[0][0] not in ("teacher", "euler"), kv[0][0],
                                                           order.get(kv[0][1], 99))):
        sd = g.groupby("seed").nll.mean().std(ddof=1) if g.seed.nunique() > 1 else float("nan")
        label = row if row != "auto" else "auto: " + ", ".join(
            chosen[sampler].str.extract(r"\((.*)\)")[0].tolist())
        lines.append(f"| {sampler} | {label} | {cell(g.nll.values)} | {sd:.4f} | {cell(g.entropy.values)} |")
    for method in METHODS:
        sub = frame[(frame.sampler == method) & (frame.row.isin(ZETAS[:-1]))]
        if sub.empty:
            continue
        means = sub.groupby("row").nll.mean()
        best = means.idxmin()
        lines += ["", f"{method}: lowest NLL at zeta {best} ({means[best]:.4f}); strict (zeta 0) "
                  f"{means.get('0', float('nan')):.4f} vs relaxed 5% {means.get('0.05', float('nan')):.4f}."]
    return "\n".join(lines) + "\n"


# The readings of the paper's training (docs/lsd-training.md). Fits: (label, Training keys,
# trajectories the fit uses: None = all of the seed's teacher rollout).
READING_FITS = (("sgd", {"fit": "sgd"}, None),
                ("sgd-16", {"fit": "sgd", "epochs": 1}, 16),
                ("exact", {"fit": "exact"}, None))
READING_STARTS = (("0", "-"), ("0.05", "marginal"), ("0.05", "teacher"))
SHARPENING = (0.9, 0.8, 0.7)
# Uniform Euler with one hand-set coefficient at every step: where each Adam update pushes Phi the
# same way, 16 updates of lr 1e-2 end at 1 - 16 x 0.01 = 0.84 whatever the loss says.
CONSTANT_PHI = (0.84,)


def head(record, n: int):
    """The record of the first `n` trajectories (each trajectory has its own random streams, so
    it is the record a rollout of `n` trajectories would have made)."""
    if n >= record.states.shape[1]:
        return record
    return dataclasses.replace(record, states=record.states[:, :n], log_scores=record.log_scores[:, :n],
                               cum_move=record.cum_move[:, :n], samples=record.samples[:n], grid_costs={})


def reading_samplers(methods=METHODS):
    """[(labels, method, convention, zeta, Training, fit trajectories)] of the readings sweep."""
    out = []
    for method in methods:
        for fit, keys, n in READING_FITS:
            for convention in ("scale", "power"):
                for zeta, start in READING_STARTS:
                    training = Training(**keys, start="teacher" if start == "-" else start)
                    labels = {"method": method, "fit": fit, "convention": convention,
                              "space": training.loss_space(convention), "start": start, "zeta": zeta}
                    out.append((labels, method, convention, zeta, training, n))
        if method == "lsd+":  # its grid alone, Phi = 1 (for lsd that is uniform Euler)
            out.append(({"method": method, "fit": "none", "convention": "scale", "space": "score", "start": "-",
                         "zeta": "0"}, method, "scale", "0", Training(epochs=0), None))
        # the harness's earlier power reading: s^Phi fitted on s, exact, marginal start
        training = Training(fit="exact", space="score", start="marginal")
        out.append(({"method": method, "fit": "exact", "convention": "power", "space": "score",
                     "start": "marginal", "zeta": "0.05"}, method, "power", "0.05", training, None))
    return out


def readings(args) -> None:
    bb, task = load_study(args)
    rows, schedules = [], []
    started = time.perf_counter()
    plain = {"method": "-", "fit": "-", "convention": "-", "space": "-", "start": "-", "zeta": "-"}
    for seed in args.seeds:
        record, teacher_rows = seed_teacher(bb, task, args, seed, nfe=args.teacher_steps,
                                            **{**plain, "method": "teacher"})
        rows += teacher_rows
        for nfe in args.nfe:
            for temperature in (1.0, *SHARPENING):
                s = lsd.Schedule.uniform("euler", nfe)
                s = lsd.Schedule(s.base, s.times, temperature=temperature)
                rows += sample_rows(bb, task, s, args.samples, seed, nfe=nfe,
                                    **{**plain, "method": f"euler T={temperature:g}"})
            for phi in CONSTANT_PHI:
                s = lsd.Schedule.uniform("euler", nfe)
                s = lsd.Schedule(s.base, s.times, [phi] * nfe)
                rows += sample_rows(bb, task, s, args.samples, seed, nfe=nfe,
                                    **{**plain, "method": f"euler Phi={phi:g}"})
            for labels, method, convention, zeta, training, n in reading_samplers():
                rec = head(record, n) if n else record
                t0 = time.perf_counter()
                s = distill(bb.model, bb.graph, bb.noise, method=method, nfe=nfe, length=bb.length, base="euler",
                            convention=convention, coupling="coupled", zeta=zeta, record=rec, training=training)
                fit_s = time.perf_counter() - t0
                rows += sample_rows(bb, task, s, args.samples, seed, nfe=nfe, **labels)
                schedules.append({**labels, "nfe": nfe, "seed": seed, "coefficients": list(s.coefficients),
                                  "times": list(s.times), "adam_updates": s.metadata["adam_updates"],
                                  "trajectories": s.metadata["trajectories"], "fit_s": fit_s})
    frame = pd.DataFrame(rows)
    out = Path(args.out) / args.backbone
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "samples.csv", frame.to_csv(index=False))
    atomic_write_text(out / "schedules.json", pd.DataFrame(schedules).to_json(orient="records", indent=1))
    summary = summarise_readings(frame, pd.DataFrame(schedules), args, time.perf_counter() - started)
    atomic_write_text(out / "summary.md", summary)
    if args.summary:
        atomic_write_text(Path(args.summary), summary)
    print(summary)


def summarise_readings(frame: pd.DataFrame, schedules: pd.DataFrame, args, wall: float) -> str:
    def cell(values, digits=4) -> str:
        iv = bootstrap_interval(values)
        return f"{iv.estimate:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"

    keys = ["method", "fit", "convention", "space", "start", "zeta"]
    teacher = frame[frame.method == "teacher"]
    lines = [f"# LSD training readings on `{args.backbone}`", "",
             f"Oracle NLL (nats/token, lower is better) and unigram entropy; {args.samples} samples x "
             f"{len(args.seeds)} seeds per row (seeds {', '.join(map(str, args.seeds))}), 95% bootstrap intervals "
             f"over the pooled samples. Δ Euler: paired difference to uniform Euler (T = 1) at the same NFE, "
             f"sample by sample (same sampling streams); negative = better. seed sd: standard deviation of the "
             f"per-seed mean NLLs. Teacher: {args.teacher_steps}-step uniform Euler ({args.trajectories} "
             f"trajectories, {args.candidates} candidate times), NLL {cell(teacher.nll.values)}, entropy "
             f"{cell(teacher.entropy.values)}. Coupled teacher/student, Euler base. Fits: sgd = Adam (lr 1e-2, "
             f"batch 1) from Phi = 1, 16 epochs over all {args.trajectories} trajectories "
             f"({16 * args.trajectories} updates per coefficient); sgd-16 = the same with 16 updates per "
             f"coefficient (1 epoch over 16 trajectories); exact = the loss's minimiser; none = Phi = 1 (LSD+'s grid "
             f"alone). "
             f"{len(frame)} samples in all, {wall / 60:.1f} min."]
    for nfe in args.nfe:
        g_nfe = frame[frame.nfe == nfe]
        euler = g_nfe[g_nfe.method == "euler T=1"].sort_values(["seed"])
        lines += ["", f"## NFE {nfe}", "",
                  "| method | fit | convention (loss space) | start | zeta | NLL [95% CI] | Δ Euler [95% CI] | "
                  "seed sd | entropy [95% CI] | mean Phi |", "|---|---|---|---|---|---|---|---|---|---|"]
        cells = []
        for key, g in g_nfe.groupby(keys, sort=False):
            labels = dict(zip(keys, key))
            diff = []
            for seed, gs in g.groupby("seed"):
                e = euler[euler.seed == seed]
                diff.append(gs.nll.values - e.nll.values)
            diff = pd.Series([v for d in diff for v in d])
            phi = labels["method"].split("Phi=")[1] if "Phi=" in labels["method"] else "1"
            if labels["fit"] != "-":  # mean coefficient over steps and seeds
                sub = schedules[(schedules.nfe == nfe) & (schedules[keys] == pd.Series(labels)).all(axis=1)]
                phi = f"{sum(sum(c) / len(c) for c in sub.coefficients) / len(sub):.3f}"
            sd = g.groupby("seed").nll.mean().std(ddof=1) if g.seed.nunique() > 1 else float("nan")
            convention = "-" if labels["convention"] == "-" else f"{labels['convention']} ({labels['space']})"
            cells.append((g.nll.mean(), f"| {labels['method']} | {labels['fit']} | {convention} | {labels['start']} | "
                          f"{labels['zeta']} | {cell(g.nll.values)} | {cell(diff.values)} | {sd:.4f} | "
                          f"{cell(g.entropy.values)} | {phi} |"))
        lines += [c for _, c in sorted(cells, key=lambda c: c[0])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
