"""Embedded tasks with exact ground truth.

Registry: `TASKS` maps a task name to its class; `make_task(name, **config)` builds one.
- `oracle-text`: `OracleText`, a seeded sparse Markov-chain language with exact NLL and an
  exact denoiser (`lsd.backbones.oracle_exact`); absorbing graph.
- `countdown`: `Countdown`, the countdown sequences of Zhao et al. / JYS; absorbing graph.
- `digits`: `Digits`, scikit-learn's 8x8 digits as 64 tokens of 17 grey levels; uniform graph.
Every task has `vocab`, `length`, `graph_type`, `make_graph()`, `config()`, `fingerprint()`
and `sample_corpus(n, seed)`. The enumerable test bed stays in `lsd.tasks.toy`.
"""
from .countdown import Countdown
from .digits import Digits
from .oracle_text import OracleText

TASKS = {"oracle-text": OracleText, "countdown": Countdown, "digits": Digits}


def make_task(name: str, **config):
    """Build the task `name` from its config keys (each class names its own keys and defaults)."""
    if name not in TASKS:
        raise ValueError(f"task: unknown {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](config)


__all__ = ["TASKS", "make_task", "OracleText", "Countdown", "Digits"]
