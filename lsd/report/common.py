"""What every part of the report shares: metric names and their direction and domain, number
formatting, LaTeX escaping, file names and atomic writes."""
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


class ReportError(ValueError):
    """Nothing to report, or records that contradict each other."""

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


def write_text(path: Path, text: str) -> Path:
    from ..io import atomic_write_text

    atomic_write_text(path, text)
    return path


def ordered(values, order) -> list:
    present = list(dict.fromkeys(values))
    if order:
        return [v for v in order if v in present]
    return sorted(present)


def reference_belongs(reference: str, metric: str) -> bool:
    """Whether a reference value goes with a metric: oracle_ppl_floor -> oracle_ppl_*, data_entropy -> entropy."""
    stem = re.sub(r"(^data_|_floor$|_reference$|^reference_)", "", reference)
    return metric.startswith(stem)


