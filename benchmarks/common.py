"""Helpers shared by the benchmark scripts: a synchronising network timer, line fits,
peak-memory probes, machine description and markdown tables.

Every script times the network and the work around it *in the same run* and reports
ratios; absolute seconds are context, never the verdict.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import resource
import time

import torch

from benchmarks.sampler_overhead import TimedModel


class IntervalTimer(TimedModel):
    """`TimedModel` that also keeps the (start, end) of every call, and synchronises CUDA
    around each call so the time inside is the kernels' time, not their launch."""

    def __init__(self, model, device=None):
        super().__init__(model)
        self.cuda = torch.device(device).type == "cuda" if device is not None else False
        self.intervals: list[tuple[float, float]] = []

    def __call__(self, x, sigma_bar):
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = self.model(x, sigma_bar)
        if self.cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        self.seconds += t1 - t0
        self.calls += 1
        self.intervals.append((t0, t1))
        return out

    def seconds_between(self, first: int, last: int) -> float:
        """Network seconds of calls first..last-1."""
        return sum(b - a for a, b in self.intervals[first:last])


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def fit_line(x, y) -> dict:
    """Least squares y = intercept + slope x, with R^2; plus the log-log exponent (slope of
    log y against log x) and its R^2."""
    def ls(u, v):
        n = len(u)
        mu, mv = sum(u) / n, sum(v) / n
        suu = sum((a - mu) ** 2 for a in u)
        suv = sum((a - mu) * (b - mv) for a, b in zip(u, v))
        svv = sum((b - mv) ** 2 for b in v)
        slope = suv / suu if suu > 0 else float("nan")
        intercept = mv - slope * mu
        r2 = 1.0 - sum((b - intercept - slope * a) ** 2 for a, b in zip(u, v)) / svv if svv > 0 else 1.0
        return slope, intercept, r2

    x, y = [float(a) for a in x], [float(b) for b in y]
    slope, intercept, r2 = ls(x, y)
    if all(a > 0 for a in x) and all(b > 0 for b in y):
        exponent, _, r2_log = ls([math.log(a) for a in x], [math.log(b) for b in y])
    else:
        exponent = r2_log = float("nan")
    return {"slope": slope, "intercept": intercept, "r2": r2, "loglog_exponent": exponent, "loglog_r2": r2_log}


def maxrss_mib() -> float:
    """This process's peak resident set size so far (getrusage ru_maxrss, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mib() -> float:
    """This process's current resident set size (/proc/self/statm), in MiB; NaN where unreadable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM, what getrusage reports as maxrss) to the current
    RSS by writing 5 to /proc/self/clear_refs (Linux >= 4.0). False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """VmHWM from /proc/self/status (MiB): the peak RSS since start or the last reset;
    getrusage's ru_maxrss where /proc is unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return maxrss_mib()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(threads: int | None = None) -> dict:
    """CPU model, cores, torch threads and version, GPU if any, provenance, date."""
    from lsd.io import provenance

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "provenance": provenance(),
    }
    try:
        info["load_avg"] = os.getloadavg()
    except OSError:
        pass
    return info


def set_threads(threads: int) -> None:
    """One setting for torch and for the subprocesses started from here."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["LSD_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def table(header, rows) -> str:
    """A markdown table from a header and rows of already formatted cells."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:.2f} GiB"


def masked_at_levels(x0: torch.Tensor, mask_id: int, levels, seed: int):
    """For each masked fraction in `levels`: (level, masked, x_t, sigma_bar), with each position of
    the clean batch `x0` masked independently with that probability (absorbing graph, log-linear
    noise: total noise -log(1 - level)); one generator for all levels, so the draws are fixed by seed."""
    g = torch.Generator().manual_seed(seed)
    for level in levels:
        masked = torch.rand(x0.shape, generator=g) < level
        x_t = torch.where(masked, mask_id, x0)
        sigma_bar = torch.full((x0.shape[0],), -math.log(1.0 - level), dtype=torch.float64)
        yield level, masked, x_t, sigma_bar
