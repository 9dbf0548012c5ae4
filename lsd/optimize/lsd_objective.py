"""The objective LSD and LSD+ train their coefficients on (docs/lsd-training.md): which score
entries are compared, the per-entry loss in score or log space under each convention, the
exact minimiser (`fit="exact"`), and Adam from Phi = 1 (`fit="sgd"`, the paper's procedure),
with the `Training` settings that choose among them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..diffusion.graph import Graph
from ..step import scaled_score

POWER_BOUNDS = (0.0, 8.0)
FITS = ("sgd", "exact")
SPACES = ("score", "log")
ENTRIES = ("tokens", "with_mask")
STARTS = ("teacher", "marginal", "best")
DEFAULT_SPACE = {"scale": "score", "power": "log"}


class DistillationError(RuntimeError):
    """The optimisation diverged (non-finite loss or coefficient); nothing is written."""


def check_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise DistillationError(f"{what} is not finite ({value}): the optimisation diverged; no schedule written")
    return value


@dataclass(frozen=True)
class Training:
    """How each Phi_k is trained (defaults and their sources: module docstring, docs/lsd-training.md).

    fit: "sgd" (Adam from Phi = 1, the paper) or "exact" (the minimiser, an ablation);
    lr, epochs, minibatch: Adam's learning rate, passes over the trajectories, trajectories per
    update (the reference code: 1e-2, 16, 1); space: "score" | "log" | None (the convention's
    default); entries: "tokens" | "with_mask"; start: "teacher" | "marginal" | "best";
    start_candidates: starts searched by `start="best"`."""

    fit: str = "sgd"
    lr: float = 1e-2
    epochs: int = 16
    minibatch: int = 1
    space: str | None = None
    entries: str = "tokens"
    start: str = "teacher"
    start_candidates: int = 4

    def __post_init__(self):
        for key, allowed in (("fit", FITS), ("entries", ENTRIES), ("start", STARTS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: unknown {getattr(self, key)!r}; choose one of {list(allowed)}")
        if self.space is not None and self.space not in SPACES:
            raise ValueError(f"space: unknown {self.space!r}; choose one of {list(SPACES)} (or null: the convention's)")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)
                                             and self.lr >= 0):
            raise ValueError(f"lr: must be a finite number >= 0, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))
        for key, low in (("epochs", 0), ("minibatch", 1), ("start_candidates", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{key}: must be an integer >= {low}, got {value!r}")

    def loss_space(self, convention: str) -> str:
        return self.space or DEFAULT_SPACE[convention]

    @classmethod
    def from_dict(cls, d: dict, strict: bool = False) -> "Training":
        """The training keys of a dict (None: the default). `strict`: every key must be one of them
        (a training dict of its own); otherwise other keys are ignored (a sampler definition)."""
        if strict:
            unknown = sorted(set(d) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"training: unknown key {unknown[0]!r}; choose from {list(cls.__dataclass_fields__)}")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if d.get(k) is not None})


def compared_entries(graph: Graph, x: torch.Tensor, x_star: torch.Tensor, entries: str = "tokens") -> torch.Tensor:
    """Score entries [B, L, dim] the loss runs over: positions where student and teacher states
    agree (a score is a ratio to the current token, so only then are the two comparable), and
    destinations the position can move to (on the absorbing graph: masked positions, real tokens);
    `with_mask` adds the position's own current entry (the mask entry on the absorbing graph)."""
    weights = graph.reverse_weights(x) > 0
    if entries == "with_mask":
        weights = weights | (torch.nn.functional.one_hot(x, graph.dim).bool() & weights.any(-1, keepdim=True))
    return weights & (x == x_star)[..., None]


def entry_loss(student: torch.Tensor, teacher: torch.Tensor, phi, convention: str, space: str):
    """Summed L2 loss of coefficient `phi` on compared entries: `student`/`teacher` are scores in
    `score` space and log-scores in `log` space."""
    if space == "score":
        if convention == "scale":
            return ((teacher - phi * student) ** 2).sum()
        return ((teacher - torch.exp(phi * torch.log(student.clamp_min(1e-300)))) ** 2).sum()
    if convention == "power":
        return ((teacher - phi * student) ** 2).sum()
    return ((teacher - student - torch.log(phi)) ** 2).sum()


def fit_phi(s: torch.Tensor, s_star: torch.Tensor, convention: str, space: str = "score") -> tuple[float, float, float]:
    """Exact best Phi for vectors of student and teacher entries (scores, or log-scores in `log`
    space): (Phi, loss at Phi, loss at 1)."""
    if s.numel() == 0:
        return 1.0, 0.0, 0.0
    if space == "log":
        if convention == "power":  # Phi log s against log s*: least squares through the origin
            ss = float((s * s).sum())
            phi = float((s * s_star).sum()) / ss if ss > 0 else 1.0
        else:  # log Phi + log s against log s*: log Phi is the mean difference
            phi = math.exp(float((s_star - s).mean()))
        def loss(p: float) -> float:
            return float(entry_loss(s, s_star, torch.tensor(p, dtype=torch.float64), convention, space))
    elif convention == "scale":
        ss = float((s * s).sum())
        phi = float((s * s_star).sum()) / ss if ss > 0 else 1.0
        loss = lambda p: float(((s_star - p * s) ** 2).sum())  # noqa: E731
    else:
        from scipy.optimize import minimize_scalar

        log_s = torch.log(s.clamp_min(1e-300))
        loss = lambda p: float(((s_star - torch.exp(p * log_s)) ** 2).sum())  # noqa: E731
        phi = float(minimize_scalar(loss, bounds=POWER_BOUNDS, method="bounded",
                                    options={"xatol": 1e-6}).x)
    return check_finite(phi, "coefficient"), check_finite(loss(phi), "loss"), loss(1.0)


class RowLosses:
    """Per-trajectory losses of one student step as functions of Phi (differentiable), from
    sufficient statistics where the loss is quadratic in Phi or log Phi, else from the entries."""

    def __init__(self, convention: str, space: str):
        self.convention, self.space = convention, space
        self.stats, self.rows = [], []

    def add(self, student: torch.Tensor, teacher: torch.Tensor, compared: torch.Tensor) -> None:
        """Student/teacher entries [B, L, dim] (scores or log-scores) and the compared mask."""
        if self.space == "score" and self.convention == "power":
            self.rows += [(student[i][compared[i]], teacher[i][compared[i]]) for i in range(len(student))]
            return
        # per-row dot products through bmm: no [B, L, dim] temporaries beyond the two masked copies
        flat = lambda v: v.masked_fill(~compared, 0.0).reshape(len(v), 1, -1)  # noqa: E731
        dot = lambda a, b: torch.bmm(a, b.transpose(1, 2))[:, 0, 0]  # noqa: E731
        s, t = flat(student), flat(teacher)
        if self.space == "log" and self.convention == "scale":
            d = t.sub_(s)
            count = compared.reshape(len(compared), -1).sum(-1).to(d.dtype)
            self.stats.append(torch.stack([count, d.sum((1, 2)), dot(d, d)], -1))
        else:  # t - Phi s: sum t^2 - 2 Phi sum s t + Phi^2 sum s^2
            self.stats.append(torch.stack([dot(t, t), dot(s, t), dot(s, s)], -1))

    def __len__(self):
        return len(self.rows) if self.rows else sum(len(s) for s in self.stats)

    def __call__(self, phi: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Losses [len(idx)] of trajectories `idx` at coefficient `phi`."""
        if self.rows or not self.stats:
            return torch.stack([entry_loss(*self.rows[i], phi, self.convention, self.space) for i in idx.tolist()])
        st = torch.cat(self.stats)[idx]
        if self.space == "log" and self.convention == "scale":
            lp = torch.log(phi)
            return st[:, 2] - 2 * lp * st[:, 1] + lp * lp * st[:, 0]
        return st[:, 0] - 2 * phi * st[:, 1] + phi * phi * st[:, 2]


def adam_fit(losses: RowLosses, training: Training, seed: int) -> tuple[float, int]:
    """Train one coefficient from Phi = 1 with Adam on mini-batches of trajectories (mean loss per
    mini-batch, a fresh shuffle per epoch from `seed`): (Phi, number of Adam updates)."""
    n = len(losses)
    phi = torch.ones((), dtype=torch.float64, requires_grad=True)
    if n == 0 or training.epochs == 0:
        return 1.0, 0
    opt = torch.optim.Adam([phi], lr=training.lr)
    gen = torch.Generator().manual_seed(seed)
    updates = 0
    with torch.enable_grad():
        for _ in range(training.epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, training.minibatch):
                opt.zero_grad()
                loss = losses(phi, order[i:i + training.minibatch]).mean()
                loss.backward()
                opt.step()
                updates += 1
    return check_finite(float(phi.detach()), "coefficient"), updates


def loss_entries(log_s: torch.Tensor, log_s_star: torch.Tensor, compared: torch.Tensor, space: str):
    """(student, teacher, compared) in the loss space: scores, or log-scores where both scores
    are non-zero in float64 (log 0 is undefined; backbones write it as a large negative number)."""
    if space == "score":
        return torch.exp(log_s), torch.exp(log_s_star), compared
    nonzero = (torch.exp(log_s) > 0) & (torch.exp(log_s_star) > 0)
    return log_s, log_s_star, compared & nonzero


def row_loss(log_s, log_s_star, compared, phi: float, convention: str, space: str) -> torch.Tensor:
    """Loss [B] of each trajectory at one step with coefficient `phi`."""
    student, teacher, compared = loss_entries(log_s, log_s_star, compared, space)
    if space == "score":
        pred = scaled_score(log_s, phi, convention)
    else:
        pred = phi * student if convention == "power" else student + math.log(phi)
    return torch.where(compared, (teacher - pred) ** 2, 0.0).sum((1, 2))
