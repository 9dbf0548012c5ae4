"""The numbers of the report: records as a tidy frame, means over seeds with intervals that
respect each metric's domain, rows identical by construction, paired differences to a
baseline and whether the intervals are narrow enough to rank samplers."""
from __future__ import annotations

import math
import re

from .common import GROUP, REFERENCE_NAME, SHARE, SHARE_OF_SAMPLES, POSITIVE, ReportError, ordered, direction


# the data -----------------------------------------------------------------------------
def load(records, backbones=None, samplers=None, nfe=None, seeds=None):
    """The records as a tidy DataFrame, filtered to the given cells and checked for duplicates."""
    from ..metrics.records import load_records

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
    bb_order = ordered(df["backbone"], backbones)
    s_order = ordered(df["sampler"], samplers)
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

    from ..metrics.intervals import rate_interval, seed_interval

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

    from ..metrics.intervals import paired_interval

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
    from ..metrics.intervals import newcombe_interval

    def counts(name, n):
        rows = g[(g["sampler"] == name) & (g["nfe"] == n)]
        return int((rows["value"] * rows["num_samples"]).round().sum()), int(rows["num_samples"].sum())

    return newcombe_interval(*counts(sampler, nfe), *counts(base, base_nfe), confidence=confidence)



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


