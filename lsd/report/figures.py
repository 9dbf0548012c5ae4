"""Figures of the report (matplotlib, Agg): metrics against NFE, quality against entropy and the
learned schedules; each PNG written atomically."""
from __future__ import annotations

import re
from pathlib import Path

from .common import reference_belongs, direction

SCHEDULE_PATH = re.compile(r"(?P<backbone>[^/]+)/(?P<sampler>[^/]+)/nfe(?P<nfe>\d+)/seed(?P<seed>\d+)\.json$")


def _save_figure(fig, path: Path) -> Path:
    """savefig into a temporary file beside `path`, then rename: never a half-written PNG."""
    import matplotlib.pyplot as plt

    from ..io import atomic_write_file

    try:
        atomic_write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path



def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish_axes(ax, metric: str, values, xlabel: str, title: str) -> None:
    """A log y axis for a lower-is-better metric whose values are all positive; labels, grid, legend."""
    if direction(metric) == "lower" and len(values) and (values > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


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
        for name, value in ((k, v) for k, v in references.get(backbone, {}).items() if reference_belongs(k, metric)):
            ax.axhline(value, color="0.4", ls=":", lw=1, label=name)
        ax.set_xscale("log", base=2)
        ticks = sorted(set(s["nfe"]) & set(grid_nfe))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        _finish_axes(ax, metric, s["mean"].dropna(), "NFE", f"{backbone}: {metric}")
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
        if reference_belongs(name, "entropy"):
            ax.axvline(value, color="0.4", ls=":", lw=1, label=name)
        elif reference_belongs(name, metric):
            ax.axhline(value, color="0.4", ls="-.", lw=1, label=name)
    _finish_axes(ax, metric, both["q"], "entropy (nats, mean over samples)",
                 f"{backbone}: {metric} against entropy (labels: NFE)")
    return _save_figure(fig, path)


def load_schedules(folder, backbones=None, samplers=None, nfe=None, seeds=None) -> list[dict]:
    """Schedules found under `folder` in the workflow's layout, with their cell."""
    from ..schedule import Schedule

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


