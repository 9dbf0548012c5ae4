"""argparse types shared by every `lsd` subcommand, including those configured outside
lsd/cli.py (train, report, fid-stats): a low module so that cli.py stays the top of the
import graph."""
from __future__ import annotations

import argparse

# Most steps a schedule may have (lsd.schedule.MAX_STEPS; repeated here so that parsing imports nothing).
MAX_STEPS = 100_000


def _integer(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts, sizes, threads; 0 never silently means "the default")."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    return _integer(text, 0)


def step_count(text: str) -> int:
    """argparse type: a number of sampler steps, 1..MAX_STEPS."""
    return _integer(text, 1, MAX_STEPS)
