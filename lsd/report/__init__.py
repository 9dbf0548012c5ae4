"""Write tables, figures and an index from result records (`lsd report`).

`lsd report --records results/default/records --out results/default/` reads every result record (via
`lsd.metrics.records.load_records`) and writes, each file atomically:
- `metrics.csv`: every metric value of every record, one row each (tidy), as loaded;
- `summary.csv`: per backbone, sampler, NFE and metric the mean over seeds and its 95%
  interval over seeds (`lsd.metrics.intervals.seed_interval`; with a single seed, the
  record's own interval over samples, named in the `interval` column); `seeds` lists the
  seeds averaged, `seeds_without_value` those whose record has no finite value (left out, and
  the table cell says over how many seeds it is);
- `tables/<backbone>__<metric>.tex`: the layout of the paper's Table 1, a row per sampler,
  a column per NFE, `mean [low, high]`, the best mean of each column in bold where the
  metric has a direction (perplexities, NLL, Frechet distances and error rates: lower is
  better; entropy has no best, so it is a table of its own without bold);
- `figures/<backbone>__metrics_vs_nfe.png` (log axes), `<backbone>__<metric>_vs_entropy.png`
  (quality against diversity) and, with `--schedules`, `<backbone>__<sampler>__schedule.png`
  (learned coefficients Phi_k and step sizes kappa_k of every NFE);
- `precision.csv`: per backbone and quality metric, the gap between uniform Euler at the
  smallest NFE and the teacher row, the widest 95% interval of the other cells and how many
  are wider than a tenth of that gap (can the table rank the samplers?), side by side with
  the same counts for the paired intervals of the differences to Euler;
- `paired.csv` and `tables/<backbone>__<metric>__vs_euler.tex`: per cell the mean difference
  to uniform Euler at the same NFE and seed (and to the teacher), paired sample by sample when
  the records keep per-sample values (`extra.per_sample`), else seed by seed, with a t interval
  over the seeds' mean differences (`lsd.metrics.intervals.paired_interval`) and a verdict
  (better, worse, not distinguishable);
Intervals over seeds stay inside the metric's domain (`metric_domain`: log scale for positive
metrics; a share of samples pools its seeds' counts into a Clopper-Pearson interval).
Cells whose samples are identical, seed by seed, to an earlier row's (equal
`extra.samples_sha256`) are shown once, with the reason in the caption and the README.
- `README.md` indexing them.
Reference values that do not depend on the sampler (a task's perplexity floor, the data's
entropy: constant and without an interval) get no table of their own; they are listed in
the README, under the tables they belong to, and drawn as dotted lines in the figures.

`--schedules DIR` expects the workflow's layout `DIR/<backbone>/<sampler>/nfe<N>/seed<S>.json`.
`--backbones`, `--samplers`, `--nfe` and `--seeds` keep only those cells (the workflow
passes its grid, so stale records of an older config are left out) and order the rows.
"""
from __future__ import annotations

import math
from pathlib import Path

from .common import ReportError, write_text, direction, format_number, latex_escape, safe_name
from .figures import (figure_metrics_vs_nfe, figure_quality_vs_entropy, figure_schedule, is_learned,
                      load_schedules, main_nfe)
from .latex import best_rows, cell_text, latex_paired_table, latex_table
from .readme import readme
from .summary import (coincidence_reason, duplicates, load, metric_domain, paired, precision, reference_metrics,
                      summarize)

__all__ = ["ReportError", "best_rows", "build_report", "cell_text", "coincidence_reason", "configure_parser",
           "direction", "duplicates", "figure_metrics_vs_nfe", "figure_quality_vs_entropy", "figure_schedule",
           "format_number", "is_learned", "latex_escape", "latex_paired_table", "latex_table", "load",
           "load_schedules", "main_nfe", "metric_domain", "paired", "precision", "readme", "reference_metrics",
           "run", "safe_name", "summarize"]


# the command line ---------------------------------------------------------------------
def _confidence(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text!r}")
    return value


def configure_parser(p) -> None:
    from ..argtypes import non_negative_int, positive_int

    p.add_argument("--records", required=True, help="folder of result records (read recursively)")
    p.add_argument("--out", required=True, help="output folder (metrics.csv, summary.csv, tables/, figures/, README.md)")
    p.add_argument("--schedules", default=None,
                   help="folder of schedules, <backbone>/<sampler>/nfe<N>/seed<S>.json: plots the learned ones")
    p.add_argument("--backbones", nargs="+", default=None, help="keep these backbones, in this order")
    p.add_argument("--samplers", nargs="+", default=None, help="keep these samplers, in this order (table rows)")
    p.add_argument("--nfe", nargs="+", type=positive_int, default=None, help="keep these NFE")
    p.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="keep these seeds")
    p.add_argument("--confidence", type=_confidence, default=0.95, help="level of the intervals over seeds")


def run(args) -> None:
    from ..io import check_output

    check_output(args.out, "--out", inputs=[args.records], folder=True)
    if not Path(args.records).is_dir():
        raise ReportError(f"--records {args.records}: no such folder of result records")
    written = build_report(args.records, args.out, schedules=args.schedules, backbones=args.backbones,
                           samplers=args.samplers, nfe=args.nfe, seeds=args.seeds, confidence=args.confidence)
    n_tables = sum(1 for p in written if p.endswith(".tex"))
    n_figures = sum(1 for p in written if p.endswith(".png"))
    print(f"wrote {args.out}: metrics.csv, summary.csv, {n_tables} tables, {n_figures} figures, README.md")


# the whole report ---------------------------------------------------------------------
def build_report(records, out, schedules=None, backbones=None, samplers=None, nfe=None, seeds=None,
                 confidence: float = 0.95) -> list[str]:
    """Write every output under `out`; returns the written paths."""
    df, bb_order, s_order = load(records, backbones, samplers, nfe, seeds)
    out = Path(out)
    written = [write_text(out / "metrics.csv", df.drop(columns=["per_sample"]).to_csv(index=False))]
    references = reference_metrics(df)
    dups = duplicates(df, s_order)
    summary = summarize(df, confidence)
    summary["same_as"] = [dups.get((r.backbone, r.sampler, int(r.nfe)), "") for r in summary.itertuples()]
    written.append(write_text(out / "summary.csv", summary.to_csv(index=False)))
    pairs = paired(df, references, s_order, confidence=confidence, dups=dups)
    written.append(write_text(out / "paired.csv", pairs.to_csv(index=False)))

    index = {}  # backbone -> {"tables": [...], "figures": [...]}
    for backbone in bb_order:
        refs = references.get(backbone, {})
        metrics = [m for m in dict.fromkeys(df[df["backbone"] == backbone]["metric"]) if m not in refs]
        metrics.sort(key=lambda m: direction(m) is None)  # quality metrics first, then entropy and the rest
        entry = index.setdefault(backbone, {"tables": [], "figures": []})
        for metric in metrics:
            path = out / "tables" / f"{safe_name(backbone)}__{safe_name(metric)}.tex"
            written.append(str(write_text(path, latex_table(summary, backbone, metric, s_order, references))))
            entry["tables"].append((metric, path))
            vs = pairs[(pairs["backbone"] == backbone) & (pairs["metric"] == metric) & (pairs["baseline"] == "euler")]
            if direction(metric) and len(vs):
                path = out / "tables" / f"{safe_name(backbone)}__{safe_name(metric)}__vs_euler.tex"
                written.append(str(write_text(path, latex_paired_table(pairs, backbone, metric, s_order))))
                entry["tables"].append((f"{metric}, difference to euler", path))
        if metrics:
            path = out / "figures" / f"{safe_name(backbone)}__metrics_vs_nfe.png"
            written.append(str(figure_metrics_vs_nfe(summary, backbone, metrics, s_order, references, path)))
            entry["figures"].append(("every metric against NFE", path))
        if "entropy" in metrics:
            for metric in metrics:
                if direction(metric) is not None:
                    path = out / "figures" / f"{safe_name(backbone)}__{safe_name(metric)}_vs_entropy.png"
                    written.append(str(figure_quality_vs_entropy(summary, backbone, metric, s_order, references, path)))
                    entry["figures"].append((f"{metric} against entropy", path))
    if schedules:
        entries = load_schedules(schedules, backbones, samplers, nfe, seeds)
        for backbone in bb_order:
            for sampler in s_order:
                group = [e for e in entries if e["backbone"] == backbone and e["sampler"] == sampler]
                if group and any(is_learned(e["times"], e["coefficients"], e.get("selection")) for e in group):
                    path = out / "figures" / f"{safe_name(backbone)}__{safe_name(sampler)}__schedule.png"
                    written.append(str(figure_schedule(group, backbone, sampler, path)))
                    index.setdefault(backbone, {"tables": [], "figures": []})["figures"].append(
                        (f"learned schedule of {sampler} (Phi and kappa per NFE)", path))
    precise = precision(summary, references, pairs=pairs)
    written.append(str(write_text(out / "precision.csv", precise.to_csv(index=False))))
    written.append(str(write_text(out / "README.md", readme(df, summary, references, index, out, precise, pairs,
                                                             dups))))
    return [str(p) for p in written]


