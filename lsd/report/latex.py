"""LaTeX tables in the layout of the paper's Table 1 (booktabs, via pandas' Styler): means with
intervals per sampler and NFE, and paired differences to a baseline."""
from __future__ import annotations

import math

from .common import reference_belongs, direction, format_number, latex_escape, safe_name
from .summary import coincidence_reason


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
    refs = {k: v for k, v in references.get(backbone, {}).items() if reference_belongs(k, metric)}
    if refs:
        caption += " Reference: " + ", ".join(f"{latex_escape(k)} = {format_number(v)}" for k, v in refs.items()) + "."
    return styler.to_latex(hrules=True, column_format="l" + "r" * len(nfes), caption=caption,
                           label=f"tab:{safe_name(backbone)}:{safe_name(metric)}", position_float="centering")


