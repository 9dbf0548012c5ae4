"""Schedule: everything that defines a few-step sampler, as data.

A schedule of M steps is a base rule (`euler`, `tauleap` or `tweedie`), a strictly decreasing time
grid T = tau_0 > tau_1 > ... > tau_M = eps_s > 0, one coefficient Phi_k per step, and the
coefficient convention:
- `scale` (default, the paper's equations): step k uses Phi_k * s(x, tau_k) in place of s;
- `power` (the LSD reference code): step k uses s^Phi_k = exp(Phi_k * log s).
Either way the entry of the current token stays 1: it is p(x)/p(x), not a learned rate.
`temperature` (default 1) sharpens (< 1) or flattens where a moving position goes without
changing how much probability moves: the temperature-matched baselines.
`selection` (optional, absorbing graphs) decides which masks a step reveals, e.g.
{"rule": "spread", "strength": theta}: `lsd.selection` (absent: the base rule's own choice).
Uniform Euler/Tweedie, JYS, LSD and LSD+ are all just schedules fed to the same
`lsd.sample`; a schedule of M steps costs exactly M network calls (NFE = M).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .io import atomic_write_json

BASES = ("euler", "tweedie", "tauleap")
# Far beyond any sampler worth running (teachers use 1024 steps); a grid this long still fits in
# memory, whereas a mistyped 10^9 would run for a minute into a MemoryError.
MAX_STEPS = 100_000
CONVENTIONS = ("scale", "power")
FORMAT = "lsd.schedule/1"


class ScheduleError(ValueError):
    """An invalid schedule; the message names the offending field."""


# The selection field (`lsd.selection` runs the rules; their data is validated here, with the
# rest of the schedule).
RULES = ("spread", "left_to_right")
SELECTION_KEYS = ("rule", "strength")


def normalize_selection(selection, source: str = "schedule") -> dict | None:
    """Validated copy of a selection dict (strength as a float, inf allowed); None stays None.

    Raises ScheduleError with a one-line message naming the offending field."""
    if selection is None:
        return None
    where = f"{source}.selection"
    if not isinstance(selection, dict):
        raise ScheduleError(f"{where}: expected an object like {{'rule': 'spread', 'strength': 1.0}}, "
                     f"got {type(selection).__name__}")
    unknown = sorted(set(selection) - set(SELECTION_KEYS))
    if unknown:
        raise ScheduleError(f"{where}: unknown field(s) {unknown}; known: {list(SELECTION_KEYS)}")
    rule = selection.get("rule")
    if rule not in RULES:
        raise ScheduleError(f"{where}.rule: unknown {rule!r}; choose one of {list(RULES)}")
    if rule == "left_to_right":
        if "strength" in selection:
            raise ScheduleError(f"{where}.strength: only the 'spread' rule takes a strength")
        return {"rule": rule}
    strength = selection.get("strength", math.inf)
    if isinstance(strength, str) and strength.strip().lower() in ("inf", "infinity"):
        strength = math.inf
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or math.isnan(strength) \
            or strength < 0:
        raise ScheduleError(f"{where}.strength: must be a number >= 0 or 'inf', got {strength!r}")
    return {"rule": rule, "strength": float(strength)}


def selection_to_json(selection: dict | None):
    """JSON form: an infinite strength is written as the string 'inf' (JSON has no infinity)."""
    if selection is None:
        return None
    if "strength" not in selection:  # left_to_right
        return dict(selection)
    s = selection["strength"]
    return {"rule": selection["rule"], "strength": "inf" if math.isinf(s) else s}


def check_graph(schedule, graph) -> None:
    """A selection rule chooses which masks leave: it needs an absorbing graph."""
    if schedule.selection is not None and not graph.absorbing:
        raise ScheduleError(f"schedule.selection: the {schedule.selection['rule']!r} rule needs an absorbing graph, "
                     f"got the {graph.name} graph")


@dataclass(frozen=True)
class Schedule:
    base: str
    times: tuple[float, ...]
    coefficients: tuple[float, ...] = ()
    convention: str = "scale"
    temperature: float = 1.0
    metadata: dict = field(default_factory=dict, compare=False)
    # optional selection rule (absorbing graphs): which masks a step reveals, e.g.
    # {"rule": "spread", "strength": 2.0}; None = the base rule's own choice (lsd.selection)
    selection: dict | None = field(default=None, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "times", tuple(float(t) for t in self.times))
        coeffs = tuple(float(c) for c in self.coefficients) or (1.0,) * (len(self.times) - 1)
        object.__setattr__(self, "coefficients", coeffs)
        object.__setattr__(self, "metadata", dict(self.metadata))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "selection", normalize_selection(self.selection))  # one-line errors name the field
        self.validate()

    @classmethod
    def uniform(cls, base: str, steps: int, t_max: float = 1.0, t_min: float = 1e-5, **metadata) -> "Schedule":
        """M equal steps from t_max down to t_min (SEDD's linspace(1, 1e-5, M + 1))."""
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
            raise ScheduleError(f"schedule.steps: must be an integer from 1 to {MAX_STEPS}, got {steps!r}")
        times = [t_max + (t_min - t_max) * k / steps for k in range(steps + 1)]
        metadata.setdefault("method", "uniform")
        return cls(base=base, times=times, metadata=metadata)

    @property
    def nfe(self) -> int:
        """Network calls per sample: one per step, the final denoising step included."""
        return len(self.coefficients)

    def validate(self) -> None:
        if self.base not in BASES:
            raise ScheduleError(f"schedule.base: unknown {self.base!r}; choose one of {list(BASES)}")
        if self.convention not in CONVENTIONS:
            raise ScheduleError(f"schedule.convention: unknown {self.convention!r}; choose one of {list(CONVENTIONS)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ScheduleError(f"schedule.temperature: must be finite and > 0, got {self.temperature}")
        t = self.times
        if len(t) < 2:
            raise ScheduleError(f"schedule.times: need at least 2 times (one step), got {len(t)}")
        for k, tk in enumerate(t):
            if not math.isfinite(tk):
                raise ScheduleError(f"schedule.times[{k}]: not finite ({tk})")
        if not 0.0 < t[-1]:
            raise ScheduleError(f"schedule.times[{len(t) - 1}]: last time must be > 0, got {t[-1]}")
        if t[0] > 1.0:
            raise ScheduleError(f"schedule.times[0]: first time must be <= 1, got {t[0]}")
        for k in range(1, len(t)):
            if not t[k] < t[k - 1]:
                raise ScheduleError(f"schedule.times[{k}]: times must strictly decrease, got {t[k]} after {t[k - 1]}")
        if len(self.coefficients) != len(t) - 1:
            raise ScheduleError(f"schedule.coefficients: need one per step ({len(t) - 1}), got {len(self.coefficients)}")
        for k, c in enumerate(self.coefficients):
            if not math.isfinite(c) or c < 0:
                raise ScheduleError(f"schedule.coefficients[{k}]: must be finite and >= 0, got {c}")

    # JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "base": self.base, "convention": self.convention, "nfe": self.nfe,
                "temperature": self.temperature, "times": list(self.times), "coefficients": list(self.coefficients), "metadata": self.metadata,
                **({} if self.selection is None else {"selection": selection_to_json(self.selection)})}

    @classmethod
    def from_dict(cls, d: dict, source: str = "schedule") -> "Schedule":
        if not isinstance(d, dict):
            raise ScheduleError(f"{source}: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise ScheduleError(f"{source}.format: expected {FORMAT!r}, got {d.get('format')!r}")
        known = {"format", "base", "convention", "nfe", "temperature", "times", "coefficients", "metadata", "selection"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ScheduleError(f"{source}: unknown field(s) {unknown}")
        for key in ("base", "times"):
            if key not in d:
                raise ScheduleError(f"{source}.{key}: missing")
        for key in ("times", "coefficients"):
            if key in d and not (isinstance(d[key], list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d[key])):
                raise ScheduleError(f"{source}.{key}: must be a list of numbers")
        # an empty list is not "all ones": only an absent field means unit coefficients
        if "coefficients" in d and not d["coefficients"]:
            raise ScheduleError(f"{source}.coefficients: empty; give one per step, or leave the field out for 1.0 each")
        if "temperature" in d and (isinstance(d["temperature"], bool) or not isinstance(d["temperature"], (int, float))):
            raise ScheduleError(f"{source}.temperature: must be a number, got {d['temperature']!r}")
        for key, kind in (("base", str), ("convention", str), ("metadata", dict)):
            if key in d and not isinstance(d[key], kind):
                expected = "a JSON object" if kind is dict else "a string"
                raise ScheduleError(f"{source}.{key}: must be {expected}, got {type(d[key]).__name__}")
        if "nfe" in d and (isinstance(d["nfe"], bool) or not isinstance(d["nfe"], int)):
            raise ScheduleError(f"{source}.nfe: must be an integer, got {d['nfe']!r}")
        schedule = cls(base=d["base"], times=d["times"], coefficients=d.get("coefficients", []),
                       convention=d.get("convention", "scale"), temperature=d.get("temperature", 1.0),
                       metadata=d.get("metadata", {}), selection=d.get("selection"))
        if "nfe" in d and d["nfe"] != schedule.nfe:
            raise ScheduleError(f"{source}.nfe: says {d['nfe']} but the grid has {schedule.nfe} steps")
        return schedule

    def save(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "Schedule":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ScheduleError(f"{path}: schedule file not found") from None
        except IsADirectoryError:
            raise ScheduleError(f"{path}: is a folder, expected a schedule JSON file") from None
        except json.JSONDecodeError as e:
            raise ScheduleError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except UnicodeDecodeError:
            raise ScheduleError(f"{path}: not a text file, expected a schedule JSON") from None
        except OSError as e:
            raise ScheduleError(f"{path}: cannot read the schedule ({e.strerror or e})") from None
        try:
            return cls.from_dict(d)
        except ScheduleError as e:
            raise ScheduleError(f"{path}: {e}") from None
