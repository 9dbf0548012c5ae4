"""The README.md that indexes a report's tables and figures and states its precision."""
from __future__ import annotations

from pathlib import Path

from .common import direction, format_number
from .summary import coincidence_reason


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
