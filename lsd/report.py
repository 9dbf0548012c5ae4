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
import re
from pathlib import Path

LOWER_IS_BETTER = re.compile(r"ppl|perplexity|nll|frechet|fid|error|(^|_)tv($|_)|(^|_)kl($|_)")
HIGHER_IS_BETTER = re.compile(r"accuracy|(^|_)acc($|_)|success")
REFERENCE_NAME = re.compile(r"floor|^data_|reference")
POSITIVE = re.compile(r"ppl|perplexity|nll|frechet|fid")  # > 0: intervals on the log scale
SHARE = re.compile(r"error|rate|accuracy|(^|_)acc($|_)|success")  # in [0, 1]
SHARE_OF_SAMPLES = re.compile(r"error_any$|accuracy|success")  # a share of samples: a binomial count
GROUP = ["backbone", "sampler", "nfe", "metric"]
SCHEDULE_PATH = re.compile(r"(?P<backbone>[^/]+)/(?P<sampler>[^/]+)/nfe(?P<nfe>\d+)/seed(?P<seed>\d+)\.json$")


class ReportError(ValueError):
    """Nothing to report, or records that contradict each other."""


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
    from .argtypes import non_negative_int, positive_int

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
    from .io import check_output

    check_output(args.out, "--out", inputs=[args.records], folder=True)
    if not Path(args.records).is_dir():
        raise ReportError(f"--records {args.records}: no such folder of result records")
    written = build_report(args.records, args.out, schedules=args.schedules, backbones=args.backbones,
                           samplers=args.samplers, nfe=args.nfe, seeds=args.seeds, confidence=args.confidence)
    n_tables = sum(1 for p in written if p.endswith(".tex"))
    n_figures = sum(1 for p in written if p.endswith(".png"))
    print(f"wrote {args.out}: metrics.csv, summary.csv, {n_tables} tables, {n_figures} figures, README.md")


# helpers ------------------------------------------------------------------------------
def direction(metric: str) -> str | None:
    """'lower', 'higher' or None (no best: entropy and anything unrecognised)."""
    if HIGHER_IS_BETTER.search(metric):
        return "higher"
    if LOWER_IS_BETTER.search(metric):
        return "lower"
    return None


def format_number(v: float) -> str:
    """About four significant digits, fixed point (the tables' and the README's format)."""
    if v is None or not math.isfinite(v):
        return "--"
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    if a >= 1:
        return f"{v:.3f}"
    return f"{v:.4f}"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def safe_name(text) -> str:
    return re.sub(r"[^A-Za-z0-9._+@-]", "-", str(text))


def _write_text(path: Path, text: str) -> Path:
    from .io import atomic_write_text

    atomic_write_text(path, text)
    return path


def _save_figure(fig, path: Path) -> Path:
    """savefig into a temporary file beside `path`, then rename: never a half-written PNG."""
    import matplotlib.pyplot as plt

    from .io import atomic_write_file

    try:
        atomic_write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _ordered(values, order) -> list:
    present = list(dict.fromkeys(values))
    if order:
        return [v for v in order if v in present]
    return sorted(present)


# the data -----------------------------------------------------------------------------
def load(records, backbones=None, samplers=None, nfe=None, seeds=None):
    """The records as a tidy DataFrame, filtered to the given cells and checked for duplicates."""
    from .metrics.records import load_records

    df = load_records(records, per_sample=True)
    for column, keep in (("backbone", backbones), ("sampler", samplers), ("nfe", nfe), ("seed", seeds)):
        if keep:
            df = df[df[column].isin(list(keep))]
    if df.empty:
        raise ReportError(f"{records}: no result records" + (" for the requested cells" if any(
            (backbones, samplers, nfe, seeds)) else ""))
    key = ["backbone", "sampler", "nfe", "seed", "metric"]
    dup = df[df.duplicated(key, keep=False)]
    if not dup.empty:
        row = dup.iloc[0]
        files = sorted(set(dup[(dup[key] == row[key]).all(axis=1)]["file"]))
        raise ReportError(f"metric {row['metric']!r} of {row['backbone']}/{row['sampler']}/NFE {row['nfe']}/seed "
                          f"{row['seed']} appears in more than one record: {files}")
    bb_order = _ordered(df["backbone"], backbones)
    s_order = _ordered(df["sampler"], samplers)
    df = df.assign(_b=df["backbone"].map(bb_order.index), _s=df["sampler"].map(s_order.index))
    df = df.sort_values(["_b", "_s", "nfe", "seed", "metric"]).drop(columns=["_b", "_s"]).reset_index(drop=True)
    return df, bb_order, s_order


def reference_metrics(df) -> dict:
    """{backbone: {metric: value}} of metrics that do not depend on the cell (constant, no interval)."""
    out = {}
    for (backbone, metric), g in df.groupby(["backbone", "metric"], sort=False):
        values = g["value"].dropna()
        if values.empty or g["low"].notna().any() or g["high"].notna().any():
            continue
        if not (values.max() - values.min() <= 1e-12 * max(1.0, abs(values.iloc[0]))):
            continue
        if len(g.groupby(["sampler", "nfe"])) > 1 or REFERENCE_NAME.search(metric):
            out.setdefault(backbone, {})[metric] = float(values.iloc[0])
    return out


def summarize(df, confidence: float = 0.95):
    """Mean over seeds with its interval, per backbone, sampler, NFE and metric."""
    import pandas as pd

    import numpy as np

    from .metrics.intervals import rate_interval, seed_interval

    rows = []
    for (backbone, sampler, nfe, metric), g in df.groupby(GROUP, sort=False):
        finite = g[g["value"].map(lambda v: math.isfinite(v))]
        values = finite["value"].to_numpy()
        # `seeds` names exactly the seeds averaged; a record without a finite value is listed apart
        row = {"backbone": backbone, "sampler": sampler, "nfe": int(nfe), "metric": metric,
               "n_seeds": int(len(values)), "seeds": " ".join(str(s) for s in sorted(finite["seed"])),
               "seeds_without_value": " ".join(str(s) for s in sorted(set(g["seed"]) - set(finite["seed"])))}
        g = finite if len(finite) else g
        if len(values) == 0:
            row.update(mean=math.nan, low=math.nan, high=math.nan, interval="none")
        elif len(values) == 1:
            # one seed: the record's own interval over samples, when it has one
            low, high = float(g["low"].iloc[0]), float(g["high"].iloc[0])
            method = g["interval_method"].iloc[0]
            row.update(mean=float(values[0]), low=low, high=high,
                       interval=f"samples:{method}" if math.isfinite(low) and method else
                       ("samples" if math.isfinite(low) else "none"))
        elif SHARE_OF_SAMPLES.search(metric) and g["num_samples"].notna().all():
            # a share of samples: pool the seeds' counts (seeds are independent replicates of the same
            # sampler) into one exact binomial interval, inside [0, 1]
            counts = (finite["value"] * finite["num_samples"]).round().astype(int)
            iv = rate_interval(int(counts.sum()), int(finite["num_samples"].sum()), confidence=confidence)
            row.update(mean=float(values.mean()), low=iv.low, high=iv.high, interval=f"pooled:{iv.method}")
        else:
            iv = seed_interval(values, confidence=confidence, domain=metric_domain(metric, values))
            row.update(mean=iv.estimate, low=iv.low, high=iv.high, interval=f"seeds:{iv.method}")
        # a Frechet fit on too few samples per dimension (extra.<metric>_fit): say so on the cell
        row["ill_conditioned_seeds"] = " ".join(str(int(seed)) for seed, ok in zip(g["seed"], g["well_conditioned"])
                                                if isinstance(ok, (bool, np.bool_)) and not ok)
        rows.append(row)
    return pd.DataFrame(rows, columns=["backbone", "sampler", "nfe", "metric", "mean", "low", "high", "n_seeds",
                                       "seeds", "interval", "seeds_without_value", "ill_conditioned_seeds"])


def metric_domain(metric: str, values=None) -> str:
    """The domain an interval of the metric must respect: 'positive' (perplexities, NLL, Frechet
    distances, FID), 'unit' (shares and rates) or 'real' (anything else, e.g. entropy)."""
    if SHARE.search(metric):
        return "unit"
    if POSITIVE.search(metric) and (values is None or all(v > 0 for v in values)):
        return "positive"
    return "real"


# rows identical by construction ------------------------------------------------------
# Why two samplers can produce the very same samples; the coincidence itself is detected from the
# records' samples hashes, never assumed from the names: these only explain a detected one.
KNOWN_COINCIDENCES = (
    (re.compile(r"tweedie"), re.compile(r"euler"),
     "under log-linear noise on the absorbing graph the Tweedie step equals the Euler step"),
    (re.compile(r"^lsd\+-"), re.compile(r"^lsd-"),
     "LSD+ keeps NFE of its candidate steps; with as many candidates as NFE it keeps them all, which is LSD"),
)


def duplicates(df, samplers: list) -> dict:
    """{(backbone, sampler, nfe): earlier sampler} for cells whose samples are identical, seed by seed
    (the records' `samples_sha256`), to those of a sampler earlier in `samplers`; cells of records
    without hashes are never called duplicates."""
    out = {}
    if "samples_sha256" not in df:
        return out
    hashes = {}  # (backbone, sampler, nfe) -> {seed: samples hash}
    for row in df.dropna(subset=["samples_sha256"]).itertuples(index=False):
        hashes.setdefault((row.backbone, row.sampler, int(row.nfe)), {})[int(row.seed)] = row.samples_sha256
    rank = {name: i for i, name in enumerate(samplers)}
    first = {}
    for (backbone, sampler, nfe) in sorted(hashes, key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1], k[2])):
        key = (backbone, nfe, tuple(sorted(hashes[(backbone, sampler, nfe)].items())))
        earlier = first.setdefault(key, sampler)
        if earlier != sampler:
            out[(backbone, sampler, nfe)] = earlier
    return out


def coincidence_reason(sampler: str, same_as: str) -> str:
    for a, b, why in KNOWN_COINCIDENCES:
        if (a.search(sampler) and b.search(same_as)) or (a.search(same_as) and b.search(sampler)):
            return f"identical samples at every seed ({why})"
    return "identical samples at every seed (equal samples hashes)"


# paired differences -------------------------------------------------------------------
PAIRED_COLUMNS = ["backbone", "metric", "sampler", "nfe", "baseline", "baseline_nfe", "n_seeds", "pairing",
                  "difference", "low", "high", "width", "interval", "verdict", "same_as"]


def paired(df, references: dict, samplers: list, baseline: str = "euler", reference: str = "teacher",
           confidence: float = 0.95, dups: dict | None = None):
    """Per backbone, metric, sampler and NFE: the mean difference (sampler minus `baseline` at the
    same NFE and seed; and minus `reference`, the teacher, at its NFE and the same seed) with
    `lsd.metrics.intervals.paired_interval` over seeds. Pairing 'samples' when both records hold
    per-sample values (`extra.per_sample`, sample i against sample i), else 'seeds' (the records'
    values). verdict: 'better', 'worse' or 'not distinguishable' (the interval holds 0), by the
    metric's direction; empty for metrics without one."""
    import numpy as np
    import pandas as pd

    from .metrics.intervals import paired_interval

    dups = dups or {}
    has_samples = "per_sample" in df
    cells = {}
    for row in df.itertuples(index=False):
        if math.isfinite(row.value):
            per = getattr(row, "per_sample", None) if has_samples else None
            cells[(row.backbone, row.metric, row.sampler, int(row.nfe), int(row.seed))] = (row.value, per)
    rows = []
    for (backbone, metric), g in df.groupby(["backbone", "metric"], sort=False):
        if metric in references.get(backbone, {}):
            continue
        ref_nfe = sorted(set(g[g["sampler"] == reference]["nfe"]))
        for sampler in [x for x in samplers if x in set(g["sampler"])]:
            for nfe in sorted(set(g[g["sampler"] == sampler]["nfe"])):
                for base, base_nfe in ((baseline, int(nfe)), (reference, ref_nfe[0] if ref_nfe else None)):
                    if sampler == base or base_nfe is None:
                        continue
                    diffs, by_samples = [], True
                    for seed in sorted(set(g["seed"])):
                        a = cells.get((backbone, metric, sampler, int(nfe), int(seed)))
                        b = cells.get((backbone, metric, base, base_nfe, int(seed)))
                        if a is None or b is None:
                            continue
                        if a[1] is not None and b[1] is not None and len(a[1]) == len(b[1]):
                            diffs.append(np.asarray(a[1], float) - np.asarray(b[1], float))
                        else:
                            diffs.append(a[0] - b[0])
                            by_samples = False
                    if not diffs:
                        continue
                    if not by_samples:  # mixed records: pair every seed on its values
                        diffs = [float(np.mean(d)) if np.ndim(d) else d for d in diffs]
                    iv = paired_interval(diffs, confidence=confidence)
                    if iv.method.endswith("degenerate") and SHARE_OF_SAMPLES.search(metric):
                        iv = _pooled_share_difference(g, sampler, int(nfe), base, base_nfe, confidence)
                    sense = direction(metric)
                    verdict = ""
                    if sense and math.isfinite(iv.low):
                        if iv.low <= 0 <= iv.high:
                            verdict = "not distinguishable"
                        else:
                            verdict = "better" if (iv.high < 0) == (sense == "lower") else "worse"
                    rows.append({"backbone": backbone, "metric": metric, "sampler": sampler, "nfe": int(nfe),
                                 "baseline": base, "baseline_nfe": base_nfe, "n_seeds": len(diffs),
                                 "pairing": "samples" if by_samples else "seeds", "difference": iv.estimate,
                                 "low": iv.low, "high": iv.high, "width": iv.high - iv.low, "interval": iv.method,
                                 "verdict": verdict, "same_as": dups.get((backbone, sampler, int(nfe)), "")})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def _pooled_share_difference(g, sampler, nfe, base, base_nfe, confidence):
    """Newcombe's interval of the difference of two shares of samples, each pooled over its seeds."""
    from .metrics.intervals import newcombe_interval

    def counts(name, n):
        rows = g[(g["sampler"] == name) & (g["nfe"] == n)]
        return int((rows["value"] * rows["num_samples"]).round().sum()), int(rows["num_samples"].sum())

    return newcombe_interval(*counts(sampler, nfe), *counts(base, base_nfe), confidence=confidence)


def signed(v: float) -> str:
    return "--" if not math.isfinite(v) else ("+" if v > 0 else "") + format_number(v)


def latex_paired_table(pairs, backbone: str, metric: str, samplers: list, baseline: str = "euler") -> str:
    """Rows = samplers, columns = NFE, `difference [low, high]` to `baseline` at the same NFE and seed."""
    import pandas as pd

    p = pairs[(pairs["backbone"] == backbone) & (pairs["metric"] == metric) & (pairs["baseline"] == baseline)]
    rows = [x for x in samplers if x in set(p["sampler"])]
    # a row identical to another at every NFE is shown once (in the other's place): left out here
    hidden = {r: p[p["sampler"] == r]["same_as"].iloc[0] for r in rows
              if (p[p["sampler"] == r]["same_as"] != "").all() and p[p["sampler"] == r]["same_as"].nunique() == 1}
    rows = [r for r in rows if r not in hidden]
    nfes = sorted(set(p["nfe"]))
    cell = {(r.sampler, r.nfe): r for r in p.itertuples(index=False)}

    def text(r):
        if r is None:
            return "--"
        if r.same_as:
            return "= " + r.same_as
        out = signed(r.difference)
        if math.isfinite(r.low):
            out += r" {\scriptsize [" + signed(r.low) + ", " + signed(r.high) + "]}"
        return out + {"better": r"$^{+}$", "worse": r"$^{-}$"}.get(r.verdict, "")

    table = pd.DataFrame({f"NFE={n}": [text(cell.get((r, n))) for r in rows] for n in nfes}, index=rows)
    table.columns.name = "Sampler"
    methods = sorted(set(p["interval"]))
    pairing = sorted(set(p["pairing"]))
    sense = direction(metric)
    caption = (f"{latex_escape(backbone)}: {latex_escape(metric)}, difference to {latex_escape(baseline)} at the "
               f"same NFE and seed (mean over seeds, paired on {' and '.join(pairing)}; 95\\% interval: "
               f"{latex_escape(', '.join(methods))})"
               + (f"; $^{{+}}$ better, $^{{-}}$ worse than {latex_escape(baseline)} ({sense} is better), "
                  f"unmarked: not distinguishable" if sense else "") + ".")
    for r, other in hidden.items():
        caption += (f" {latex_escape(r)} is not shown: {latex_escape(coincidence_reason(r, other))}, "
                    f"= {latex_escape(other)}.")
    return table.style.format_index(escape="latex", axis=0).to_latex(
        hrules=True, column_format="l" + "r" * len(nfes), caption=caption,
        label=f"tab:{safe_name(backbone)}:{safe_name(metric)}:vs-{safe_name(baseline)}", position_float="centering")


# tables -------------------------------------------------------------------------------
def cell_text(mean: float, low: float, high: float, n_seeds: int | None = None, most_seeds: int | None = None) -> str:
    """`mean [low, high]`; a cell that averages fewer seeds than the table's others says how many."""
    if not math.isfinite(mean):
        return "--"
    text = format_number(mean)
    if math.isfinite(low) and math.isfinite(high):
        text += r" {\scriptsize [" + format_number(low) + ", " + format_number(high) + "]}"
    if n_seeds is not None and most_seeds is not None and n_seeds < most_seeds:
        text += r"\textsuperscript{" + f"{n_seeds} of {most_seeds} seeds" + "}"
    return text


def best_rows(table, metric: str) -> dict:
    """{column: set of row labels} holding the best (rounded) mean of each column."""
    sense = direction(metric)
    out = {}
    if sense is None:
        return out
    for column in table.columns:
        col = table[column].dropna()
        if len(col) < 2:
            continue
        rounded = col.map(lambda v: float(format_number(v)))
        target = rounded.min() if sense == "lower" else rounded.max()
        out[column] = set(rounded.index[rounded == target])
    return out


def latex_table(summary, backbone: str, metric: str, samplers: list, references: dict) -> str:
    """One table: rows = samplers, columns = NFE, `mean [low, high]`, best per column in bold."""
    import pandas as pd

    s = summary[(summary["backbone"] == backbone) & (summary["metric"] == metric)]
    same = {(r.sampler, int(r.nfe)): r.same_as for r in s.itertuples() if getattr(r, "same_as", "")}
    ill = {(r.sampler, int(r.nfe)) for r in s.itertuples() if getattr(r, "ill_conditioned_seeds", "")}
    rows = [x for x in samplers if x in set(s["sampler"])]
    # a row identical to another at every NFE is shown once: left out, and the caption says why
    hidden = {r: same[(r, int(s[s["sampler"] == r]["nfe"].iloc[0]))] for r in rows
              if all((r, int(n)) in same for n in s[s["sampler"] == r]["nfe"])
              and len({same[(r, int(n))] for n in s[s["sampler"] == r]["nfe"]}) == 1}
    rows = [r for r in rows if r not in hidden]
    s = s[s["sampler"].isin(rows)]
    nfes = sorted(set(s["nfe"]))
    means = s.pivot(index="sampler", columns="nfe", values="mean").reindex(index=rows, columns=nfes)
    lows = s.pivot(index="sampler", columns="nfe", values="low").reindex(index=rows, columns=nfes)
    highs = s.pivot(index="sampler", columns="nfe", values="high").reindex(index=rows, columns=nfes)
    counts = s.pivot(index="sampler", columns="nfe", values="n_seeds").reindex(index=rows, columns=nfes)
    most_seeds = int(s["n_seeds"].max()) if len(s) else 0
    def cell(r, n):
        if (r, n) in same:
            return "= " + latex_escape(same[(r, n)])
        return cell_text(means.at[r, n], lows.at[r, n], highs.at[r, n],
                         int(counts.at[r, n]) if pd.notna(counts.at[r, n]) else None, most_seeds) + (
            r"$^\dagger$" if (r, n) in ill else "")

    text = pd.DataFrame({f"NFE={n}": [cell(r, n) for r in rows] for n in nfes}, index=rows)
    for key in same:  # a duplicate cell is no candidate for the column's best
        if key[0] in means.index and key[1] in means.columns:
            means.at[key[0], key[1]] = float("nan")
    text.columns.name = "Sampler"
    best = best_rows(means, metric)

    def bold(column):
        n = int(column.name.split("=", 1)[1])
        return ["textbf:--rwrap;" if r in best.get(n, ()) else "" for r in column.index]

    styler = text.style.format_index(escape="latex", axis=0).apply(bold, axis=0)
    sense = direction(metric)
    methods = sorted(set(s["interval"]))
    interval_note = {"seeds": "95\\% interval over seeds", "samples": "95\\% interval over samples (one seed)"}
    notes = sorted({interval_note.get(m.split(":", 1)[0], "no interval") for m in methods})
    fewer = bool((s["n_seeds"] < most_seeds).any())
    caption = (f"{latex_escape(backbone)}: {latex_escape(metric)}"
               + {"lower": " (lower is better)", "higher": " (higher is better)", None: ""}[sense]
               + (f". Mean over {most_seeds} seeds" if most_seeds > 1 else ". One seed")
               + (" (a superscript marks cells over fewer seeds; summary.csv lists the seeds without a value)"
                  if fewer else "")
               + f" [{'; '.join(notes)}]"
               + ("; best mean per NFE in bold" if sense else "") + ".")
    if "frechet" in metric or metric == "fid":
        caption += (" Frechet distances of few samples are biased upward (the fitted means alone add "
                    r"$\mathrm{Tr}(S_a)/n_a + \mathrm{Tr}(S_b)/n_b$ in expectation), so compare only cells of "
                    "equal sample counts; the "
                    "teacher row shows the bias a near-exact sampler still has.")
    if ill:
        caption += (r" $^\dagger$: the Gaussian fit behind the distance is not well conditioned in at least one "
                    "seed (too few samples per feature dimension), so the number ranks nothing.")
    for r, other in hidden.items():
        caption += (f" {latex_escape(r)} is not shown: {latex_escape(coincidence_reason(r, other))}, "
                    f"= {latex_escape(other)}.")
    partial = sorted({(r, o) for (r, n), o in same.items() if r not in hidden})
    for r, other in partial:
        caption += (f" Cells `= {latex_escape(other)}' of {latex_escape(r)}: "
                    f"{latex_escape(coincidence_reason(r, other))}.")
    refs = {k: v for k, v in references.get(backbone, {}).items() if _belongs(k, metric)}
    if refs:
        caption += " Reference: " + ", ".join(f"{latex_escape(k)} = {format_number(v)}" for k, v in refs.items()) + "."
    return styler.to_latex(hrules=True, column_format="l" + "r" * len(nfes), caption=caption,
                           label=f"tab:{safe_name(backbone)}:{safe_name(metric)}", position_float="centering")


def _belongs(reference: str, metric: str) -> bool:
    """Whether a reference value goes with a metric: oracle_ppl_floor -> oracle_ppl_*, data_entropy -> entropy."""
    stem = re.sub(r"(^data_|_floor$|_reference$|^reference_)", "", reference)
    return metric.startswith(stem)


# figures ------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main_nfe(summary) -> list[int]:
    """The NFE grid of a backbone: every NFE that two or more samplers share (all NFE if none is shared)."""
    counts = summary.groupby("nfe")["sampler"].nunique()
    shared = sorted(int(n) for n in counts.index[counts >= 2])
    return shared or sorted(int(n) for n in counts.index)


def figure_metrics_vs_nfe(summary, backbone, metrics, samplers, references, path: Path) -> Path:
    plt = _plt()
    from matplotlib.ticker import NullLocator

    n = len(metrics)
    cols = min(n, 3)
    rows_ = -(-n // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(5.2 * cols, 3.8 * rows_), squeeze=False)
    grid_nfe = main_nfe(summary[summary["backbone"] == backbone])
    for ax, metric in zip(axes.flat, metrics):
        s = summary[(summary["backbone"] == backbone) & (summary["metric"] == metric)]
        for i, sampler in enumerate(x for x in samplers if x in set(s["sampler"])):
            g = s[s["sampler"] == sampler].sort_values("nfe")
            color = f"C{i % 10}"
            if not set(g["nfe"]) & set(grid_nfe):  # a reference row outside the grid (the teacher)
                ax.axhline(g["mean"].iloc[0], color=color, ls="--", lw=1,
                           label=f"{sampler} (NFE {', '.join(str(int(n)) for n in g['nfe'])})")
                continue
            g = g[g["nfe"].isin(grid_nfe)]
            err = [(g["mean"] - g["low"]).clip(lower=0).fillna(0), (g["high"] - g["mean"]).clip(lower=0).fillna(0)]
            ax.errorbar(g["nfe"], g["mean"], yerr=err, marker="o", ms=3, capsize=2, color=color, label=sampler)
        for name, value in ((k, v) for k, v in references.get(backbone, {}).items() if _belongs(k, metric)):
            ax.axhline(value, color="0.4", ls=":", lw=1, label=name)
        ax.set_xscale("log", base=2)
        ticks = sorted(set(s["nfe"]) & set(grid_nfe))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        values = s["mean"].dropna()
        if direction(metric) == "lower" and len(values) and (values > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel(metric)
        ax.set_title(f"{backbone}: {metric}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return _save_figure(fig, path)


def figure_quality_vs_entropy(summary, backbone, metric, samplers, references, path: Path) -> Path:
    plt = _plt()
    s = summary[summary["backbone"] == backbone]
    q = s[s["metric"] == metric].set_index(["sampler", "nfe"])["mean"]
    e = s[s["metric"] == "entropy"].set_index(["sampler", "nfe"])["mean"]
    both = q.to_frame("q").join(e.to_frame("e"), how="inner").dropna()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, sampler in enumerate(x for x in samplers if x in set(both.index.get_level_values(0))):
        g = both.loc[sampler].sort_index()
        ax.plot(g["e"], g["q"], marker="o", ms=4, lw=0.8, color=f"C{i % 10}", label=sampler)
        for nfe, r in g.iterrows():
            ax.annotate(str(nfe), (r["e"], r["q"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    for name, value in references.get(backbone, {}).items():
        if _belongs(name, "entropy"):
            ax.axvline(value, color="0.4", ls=":", lw=1, label=name)
        elif _belongs(name, metric):
            ax.axhline(value, color="0.4", ls="-.", lw=1, label=name)
    if direction(metric) == "lower" and len(both) and (both["q"] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("entropy (nats, mean over samples)")
    ax.set_ylabel(metric)
    ax.set_title(f"{backbone}: {metric} against entropy (labels: NFE)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save_figure(fig, path)


def load_schedules(folder, backbones=None, samplers=None, nfe=None, seeds=None) -> list[dict]:
    """Schedules found under `folder` in the workflow's layout, with their cell."""
    from .schedule import Schedule

    out = []
    folder = Path(folder)
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*.json")):
        m = SCHEDULE_PATH.search(path.relative_to(folder).as_posix())
        if not m:
            continue
        cell = {"backbone": m["backbone"], "sampler": m["sampler"], "nfe": int(m["nfe"]), "seed": int(m["seed"])}
        if any(keep and cell[k] not in keep for k, keep in
               (("backbone", backbones), ("sampler", samplers), ("nfe", nfe), ("seed", seeds))):
            continue
        s = Schedule.load(path)
        cell.update(times=list(s.times), coefficients=list(s.coefficients), convention=s.convention, path=str(path),
                    selection=s.selection)
        out.append(cell)
    return out


def is_learned(times, coefficients, selection=None) -> bool:
    """Not a uniform grid with unit coefficients and no selection rule (lsd-spread)."""
    if selection:
        return True
    steps = [times[k] - times[k + 1] for k in range(len(times) - 1)]
    uniform = max(steps) - min(steps) <= 1e-9 * max(steps)
    return not (uniform and all(abs(c - 1.0) <= 1e-12 for c in coefficients))


def figure_schedule(entries, backbone, sampler, path: Path) -> Path:
    """Phi_k and kappa_k (relative to the uniform step) against the step's start time, one line per NFE."""
    import numpy as np

    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    by_nfe = {}
    for e in entries:
        by_nfe.setdefault(e["nfe"], []).append(e)
    for i, nfe in enumerate(sorted(by_nfe)):
        group = by_nfe[nfe]
        times = np.array([g["times"] for g in group])
        phi = np.array([g["coefficients"] for g in group])
        kappa = -np.diff(times, axis=1)
        rel = kappa * nfe / (times[:, :1] - times[:, -1:])
        start = times[:, :-1].mean(0)
        label = f"NFE {nfe}" + (f" ({len(group)} seeds)" if len(group) > 1 else "")
        ax1.plot(start, phi.mean(0), marker="o", ms=3, color=f"C{i % 10}", label=label)
        ax2.plot(start, rel.mean(0), marker="o", ms=3, color=f"C{i % 10}", label=label)
        if len(group) > 1:
            ax1.fill_between(start, phi.min(0), phi.max(0), color=f"C{i % 10}", alpha=0.15, lw=0)
            ax2.fill_between(start, rel.min(0), rel.max(0), color=f"C{i % 10}", alpha=0.15, lw=0)
    convention = entries[0]["convention"]
    ax1.axhline(1.0, color="0.4", ls=":", lw=1)
    ax2.axhline(1.0, color="0.4", ls=":", lw=1)
    ax1.set_ylabel(f"Phi_k ({convention}: " + ("Phi * s" if convention == "scale" else "s^Phi") + ")")
    ax2.set_ylabel("kappa_k / uniform step")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xlabel("tau_k (start of step k)")
        ax.invert_xaxis()
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{backbone}: learned schedule of {sampler} (band: range over seeds)", fontsize=10)
    return _save_figure(fig, path)


# the whole report ---------------------------------------------------------------------
def build_report(records, out, schedules=None, backbones=None, samplers=None, nfe=None, seeds=None,
                 confidence: float = 0.95) -> list[str]:
    """Write every output under `out`; returns the written paths."""
    df, bb_order, s_order = load(records, backbones, samplers, nfe, seeds)
    out = Path(out)
    written = [_write_text(out / "metrics.csv", df.drop(columns=["per_sample"]).to_csv(index=False))]
    references = reference_metrics(df)
    dups = duplicates(df, s_order)
    summary = summarize(df, confidence)
    summary["same_as"] = [dups.get((r.backbone, r.sampler, int(r.nfe)), "") for r in summary.itertuples()]
    written.append(_write_text(out / "summary.csv", summary.to_csv(index=False)))
    pairs = paired(df, references, s_order, confidence=confidence, dups=dups)
    written.append(_write_text(out / "paired.csv", pairs.to_csv(index=False)))

    index = {}  # backbone -> {"tables": [...], "figures": [...]}
    for backbone in bb_order:
        refs = references.get(backbone, {})
        metrics = [m for m in dict.fromkeys(df[df["backbone"] == backbone]["metric"]) if m not in refs]
        metrics.sort(key=lambda m: direction(m) is None)  # quality metrics first, then entropy and the rest
        entry = index.setdefault(backbone, {"tables": [], "figures": []})
        for metric in metrics:
            path = out / "tables" / f"{safe_name(backbone)}__{safe_name(metric)}.tex"
            written.append(str(_write_text(path, latex_table(summary, backbone, metric, s_order, references))))
            entry["tables"].append((metric, path))
            vs = pairs[(pairs["backbone"] == backbone) & (pairs["metric"] == metric) & (pairs["baseline"] == "euler")]
            if direction(metric) and len(vs):
                path = out / "tables" / f"{safe_name(backbone)}__{safe_name(metric)}__vs_euler.tex"
                written.append(str(_write_text(path, latex_paired_table(pairs, backbone, metric, s_order))))
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
    written.append(str(_write_text(out / "precision.csv", precise.to_csv(index=False))))
    written.append(str(_write_text(out / "README.md", readme(df, summary, references, index, out, precise, pairs,
                                                             dups))))
    return [str(p) for p in written]


def precision(summary, references: dict | None = None, baseline: str = "euler", reference: str = "teacher",
              pairs=None):
    """Are the intervals narrow enough to rank samplers? Per backbone and quality metric: the gap
    between `baseline` at its smallest NFE and `reference` (the teacher row), the widest 95%
    interval of the other cells, and how many cells are wider than a tenth of the gap (the
    workflow's sizing goal). With `pairs` (from `paired`), the same for the paired intervals of the
    differences to `baseline` at the same NFE and seed (rows identical to another left out), side by
    side with the unpaired ones. Empty when a backbone lacks either row."""
    import pandas as pd

    rows = []
    for (backbone, metric), g in summary.groupby(["backbone", "metric"], sort=False):
        if direction(metric) is None or metric in (references or {}).get(backbone, {}):
            continue
        base, ref = g[g["sampler"] == baseline], g[g["sampler"] == reference]
        if base.empty or ref.empty:
            continue
        first = base.sort_values("nfe").iloc[0]
        gap = abs(float(first["mean"]) - float(ref["mean"].iloc[0]))
        cells = g[g["sampler"] != reference]
        width = (cells["high"] - cells["low"]).astype(float)
        widest = cells.loc[width.idxmax()] if width.notna().any() else None
        row = {"backbone": backbone, "metric": metric, "baseline_nfe": int(first["nfe"]), "gap": gap,
               "tenth_of_gap": gap / 10, "widest_interval": float(width.max()),
               "widest_cell": f"{widest['sampler']} NFE {int(widest['nfe'])}" if widest is not None else "",
               "cells": int(width.notna().sum()), "cells_wider_than_tenth": int((width > gap / 10).sum()),
               "median_width": float(width.median())}
        if pairs is not None and len(pairs):
            p = pairs[(pairs["backbone"] == backbone) & (pairs["metric"] == metric) & (pairs["baseline"] == baseline)
                      & (pairs["sampler"] != reference) & (pairs["same_as"] == "")]
            pw = p["width"].astype(float)
            row.update(paired_cells=int(pw.notna().sum()), paired_cells_wider_than_tenth=int((pw > gap / 10).sum()),
                       paired_median_width=float(pw.median()) if pw.notna().any() else math.nan,
                       widest_paired_interval=float(pw.max()) if pw.notna().any() else math.nan,
                       pairing=" ".join(sorted(set(p["pairing"]))))
        rows.append(row)
    return pd.DataFrame(rows, columns=["backbone", "metric", "baseline_nfe", "gap", "tenth_of_gap", "widest_interval",
                                       "widest_cell", "cells", "cells_wider_than_tenth", "median_width",
                                       "paired_cells", "paired_cells_wider_than_tenth", "paired_median_width",
                                       "widest_paired_interval", "pairing"])


def readme(df, summary, references, index, out: Path, precise=None, pairs=None, dups=None) -> str:
    files = df["file"].nunique()
    lines = [
        "# Results", "",
        f"Written by `lsd report` from {files} result records: backbones {', '.join(index)}; samplers "
        f"{', '.join(dict.fromkeys(df['sampler']))}; NFE {', '.join(str(n) for n in sorted(set(df['nfe'])))}; "
        f"seeds {', '.join(str(s) for s in sorted(set(df['seed'])))}.", "",
        "- [`metrics.csv`](metrics.csv): every metric value of every record, one row each (tidy): backbone, "
        "sampler, nfe, seed, metric, value, the record's own 95% interval over samples (low, high), provenance.",
        "- [`summary.csv`](summary.csv): per backbone, sampler, NFE and metric, the mean over seeds and its 95% "
        "interval (column `interval`: `seeds:<method>` over seeds, `samples:<method>` the record's own "
        "interval when there is one seed); the tables print these numbers.",
        "- Tables (`tables/*.tex`, booktabs): a row per sampler, a column per NFE, `mean [low, high]`, best mean "
        "per column in bold where lower or higher is better. Intervals stay inside the metric's domain: "
        "log scale for perplexities, NLL and Frechet distances, an exact binomial interval for shares of samples.",
        "- [`paired.csv`](paired.csv) and `tables/*__vs_euler.tex`: per cell the mean difference to uniform Euler "
        "at the same NFE and seed (and to the teacher), paired sample by sample when the records hold per-sample "
        "values, else seed by seed, with a t interval over the seeds' mean differences.", "",
    ]
    gits = sorted({g for g in df["git"].dropna()})
    hashes = sorted({h for h in df["config_hash"].dropna()})
    if gits:
        lines += [f"Code: git {', '.join(gits)}." + (f" {len(hashes)} distinct cell configurations (their hashes are "
                                                      f"in metrics.csv, column config_hash)." if hashes else ""), ""]
    if precise is not None and len(precise):
        lines += ["## Precision", "",
                  "Is a cell's 95% interval narrower than a tenth of the gap between uniform Euler at the smallest "
                  "NFE and the teacher ([`precision.csv`](precision.csv))?", "",
                  "| backbone | metric | gap | tenth | widest interval (cell) | cells wider than a tenth |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for _, r in precise.iterrows():
            lines.append(f"| {r['backbone']} | {r['metric']} | {format_number(r['gap'])} | "
                         f"{format_number(r['tenth_of_gap'])} | {format_number(r['widest_interval'])} "
                         f"({r['widest_cell']}) | {r['cells_wider_than_tenth']} of {r['cells']} |")
        lines.append("")
        if "paired_cells" in precise and precise["paired_cells"].notna().any():
            lines += ["The same for the paired intervals of the differences to Euler at the same NFE and seed, "
                      "side by side with the unpaired ones (median widths; rows identical to another left out):", "",
                      "| backbone | metric | tenth | median width unpaired | median width paired | "
                      "unpaired cells wider | paired cells wider (pairing) |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for _, r in precise.iterrows():
                if not r["paired_cells"] == r["paired_cells"]:  # NaN: no paired cells
                    continue
                lines.append(f"| {r['backbone']} | {r['metric']} | {format_number(r['tenth_of_gap'])} | "
                             f"{format_number(r['median_width'])} | {format_number(r['paired_median_width'])} | "
                             f"{r['cells_wider_than_tenth']} of {r['cells']} | "
                             f"{int(r['paired_cells_wider_than_tenth'])} of {int(r['paired_cells'])} "
                             f"({r['pairing']}) |")
            met = int((precise["paired_cells"] - precise["paired_cells_wider_than_tenth"]).sum())
            lines += ["", f"Paired goal (at least 90% of paired intervals narrower than a tenth of the gap): {met} of "
                      f"{int(precise['paired_cells'].sum())} cells.", ""]
    if dups:
        lines += ["## Rows identical by construction", "",
                  "These cells' samples are identical, seed by seed, to an earlier row's (equal samples hashes); "
                  "the tables show them once (`= <row>`):", ""]
        for (backbone, sampler, nfe), same in sorted(dups.items()):
            lines.append(f"- {backbone}: {sampler} at NFE {nfe} = {same}: {coincidence_reason(sampler, same)}.")
        lines.append("")
    if pairs is not None and len(pairs):
        lines += ["## Difference to Euler", "",
                  "Per NFE, the rows whose 95% interval of the paired difference to uniform Euler (same NFE and "
                  "seed) lies wholly on the better or the worse side ([`paired.csv`](paired.csv)).", ""]
        vs = pairs[(pairs["baseline"] == "euler") & (pairs["verdict"] != "") & (pairs["same_as"] == "")]
        for (backbone, metric), g in vs.groupby(["backbone", "metric"], sort=False):
            lines.append(f"- {backbone}, {metric}:")
            for nfe, h in g.groupby("nfe"):
                parts = [f"{verdict}: " + (", ".join(h[h["verdict"] == verdict]["sampler"]) or "none")
                         for verdict in ("better", "worse", "not distinguishable")]
                lines.append(f"  - NFE {nfe}: " + "; ".join(parts))
        lines.append("")
    for backbone, entry in index.items():
        lines += [f"## {backbone}", ""]
        refs = references.get(backbone, {})
        if refs:
            lines += ["Reference values (the same for every sampler): "
                      + ", ".join(f"{k} = {format_number(v)}" for k, v in refs.items()) + ".", ""]
        for metric, path in entry["tables"]:
            sense = direction(metric)
            lines.append(f"- Table: [{metric}]({path.relative_to(out).as_posix()})"
                         + {"lower": " (lower is better)", "higher": " (higher is better)", None: ""}[sense])
        if entry["tables"]:
            lines.append("")
        for title, path in entry["figures"]:
            rel = path.relative_to(out).as_posix()
            lines += [f"{title}:", "", f"![{title}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"
