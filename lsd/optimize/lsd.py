"""LSD and LSD+ (Fu et al., NeurIPS 2025): learnable coefficients and time grids, distilled
from an N-step teacher by matching intermediate scores rather than final samples.

What this harness implements (the paper's equations are the specification; docs/lsd-training.md
states every reading, its default and its source):
- LSD: one coefficient Phi_k per student step, trained sequentially along the student's own
  trajectory, coupled to the teacher's (lsd.optimize.teacher). At student step k the student
  state x_{t_k} of every trajectory has been reached with the already trained Phi_0..Phi_{k-1};
  Phi_k starts at 1 and minimises the L2 distance between the teacher's score at its own state
  x*_{t_k} and the student's scaled score, over the entries where both states can move
  (`compared_entries`). The student then takes its step with Phi_k and moves on.
  `fit="sgd"` (default, the paper: "Initialize Phi(t_k) = 1 and optimize the coefficients at
  each timestep sequentially using SGD"): Adam with lr 1e-2, 16 epochs, mini-batches of one
  trajectory (the LSD reference code's settings), PyTorch's Adam defaults otherwise.
  `fit="exact"`: the exact minimiser of the same loss over all trajectories (closed form, or a
  1-D bounded search for `power` fitted on scores): the harness's earlier reading, kept as an
  ablation; with `space="score"` it reproduces that reading bit for bit.
- Loss space (`space`): `score` compares scores (L2 on s), `log` compares log-scores (L2 on
  log s). Default per convention: `scale` (Phi * s, the paper's equations) in score space,
  `power` (Phi * log s, i.e. s^Phi, the reference code) in log space, as the reference code does.
- Entries (`entries`): `tokens` (default) compares the entries a step uses, the destinations a
  position can move to; `with_mask` adds each position's own current entry (on the absorbing
  graph the mask entry, 1 by definition), which under `scale` pulls Phi towards 1.
- LSD+: also the step sizes kappa_k. Taken literally, the paper's per-step transition loss
  ||kappa_k Phi_k s_k - ((T - eps)/N) s*_k||^2 is degenerate once Phi_k is fitted (its
  minimiser is the same constant for every k: a uniform grid after normalisation). We read
  the "effective transition term" of a student step over [t_a, t_b] as its one-step move
  probabilities and compare them with the teacher's move probabilities summed over the
  teacher steps it replaces; with the best Phi per interval, the L1 residual (a total-variation
  type distance; see `transition_grid`) is the interval's cost, and dynamic programming picks the M-step grid of least total cost among the
  teacher's candidate times. The grid is a subset of the teacher grid: positive steps that
  sum to T - eps_s, strictly decreasing, valid by construction. Phi_k are then trained on it
  as in LSD.
- Relaxed objective: the student starts within Hamming distance zeta * L of the teacher's
  start (at most round(zeta L) positions differ). From the all-mask start, round(zeta L)
  positions (chosen per sample) are revealed; `start` says with which tokens: `teacher`
  (default) the teacher's own final tokens there, `marginal` draws from the backbone's own
  p(x0 | x_T) (the teacher's first score; uniform tokens on the uniform graph), `best` the
  least-loss start among `start_candidates` marginal draws (LD3-style search in the ball, the
  loss of a Phi = 1 student along the whole trajectory). Inference always starts unperturbed.
  `zeta="auto"` fits each zeta in ZETA_GRID on half the trajectories and keeps the one whose
  coefficients give the least loss on the other half, started unperturbed (as at inference).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from ..diffusion.graph import Graph
from ..diffusion.noise import Noise
from ..diffusion.scores import CallCounter
from ..draws import pick_destination
from ..io import progress as progress_bar
from ..io import provenance
from ..random import RandomStreams
from ..sampling import scaled_score, transition_probabilities
from ..schedule import Schedule
from .teacher import TeacherRecord, TrajectoryNoise, teacher_rollout, trajectory_seed

ZETA_GRID = (0.0, 0.01, 0.05, 0.1, 0.2)
PERTURB = -4
POWER_BOUNDS = (0.0, 8.0)
FITS = ("sgd", "exact")
SPACES = ("score", "log")
ENTRIES = ("tokens", "with_mask")
STARTS = ("teacher", "marginal", "best")
DEFAULT_SPACE = {"scale": "score", "power": "log"}


class DistillationError(RuntimeError):
    """The optimisation diverged (non-finite loss or coefficient); nothing is written."""


def _finite(value: float, what: str) -> float:
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
    return _finite(phi, "coefficient"), _finite(loss(phi), "loss"), loss(1.0)


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
    return _finite(float(phi.detach()), "coefficient"), updates


def _start_positions(graph: Graph, x: torch.Tensor, ids: torch.Tensor, zeta: float, seed: int, stream: int):
    """(positions to change [B, L] bool, token uniforms [B, L]) of one relaxed start."""
    length = x.shape[1]
    r = int(round(zeta * length))
    u = RandomStreams(seed, ids).uniform(stream, length, 2)
    chosen = u[..., 0].argsort(-1)[:, :r]  # r distinct positions per sample
    return torch.zeros_like(x, dtype=torch.bool).scatter_(1, chosen, True), u[..., 1]


def perturbed_start(graph: Graph, record: TeacherRecord, rows: slice, ids: torch.Tensor, zeta: float, seed: int,
                    start: str = "marginal", stream: int = PERTURB):
    """The relaxed objective's start: the teacher's start with round(zeta L) positions changed,
    to the teacher's final tokens (`teacher`) or to draws from the backbone's p(x0 | x_T)
    (`marginal`; uniform tokens on the uniform graph). `best` is chosen in `fit_coefficients`."""
    x = record.states[0, rows].clone()
    if int(round(zeta * x.shape[1])) == 0:
        return x
    pick, u = _start_positions(graph, x, ids.cpu(), zeta, seed, stream)
    if start == "teacher":
        x[pick] = record.samples[rows][pick]
    elif graph.absorbing:  # reveal with p(x0 | x_T), the backbone's own first prediction
        probs = torch.exp(record.log_scores[0, rows].double())[..., : graph.num_tokens]
        x[pick] = pick_destination(probs[pick], u[pick])
    else:
        x[pick] = (u[pick] * graph.dim).long().clamp_max(graph.dim - 1)
    return x


BEST_STREAM_STRIDE = 16  # candidate j of `start="best"` draws from stream PERTURB - 16 j


def _entries(log_s: torch.Tensor, log_s_star: torch.Tensor, compared: torch.Tensor, space: str):
    """(student, teacher, compared) in the loss space: scores, or log-scores where both scores
    are non-zero in float64 (log 0 is undefined; backbones write it as a large negative number)."""
    if space == "score":
        return torch.exp(log_s), torch.exp(log_s_star), compared
    nonzero = (torch.exp(log_s) > 0) & (torch.exp(log_s_star) > 0)
    return log_s, log_s_star, compared & nonzero


def row_loss(log_s, log_s_star, compared, phi: float, convention: str, space: str) -> torch.Tensor:
    """Loss [B] of each trajectory at one step with coefficient `phi`."""
    student, teacher, compared = _entries(log_s, log_s_star, compared, space)
    if space == "score":
        pred = scaled_score(log_s, phi, convention)
    else:
        pred = phi * student if convention == "power" else student + math.log(phi)
    return torch.where(compared, (teacher - pred) ** 2, 0.0).sum((1, 2))


def _rollout_loss(model, graph, noise, record, grid, idx, x, coefficients, *, base, convention, space, entries,
                  coupling, device) -> tuple[torch.Tensor, int]:
    """Summed per-step loss [B] of the student with `coefficients` from start `x` along the coupled
    trajectories `idx`, and its network calls."""
    sl = slice(idx[0], idx[-1] + 1)
    rng = TrajectoryNoise(graph, trajectory_seed(record.seed, coupling), torch.tensor(idx, device=device),
                          record.states.shape[2])
    total = torch.zeros(len(idx), dtype=torch.float64, device=device)
    M = len(grid) - 1
    for k in range(M):
        a, t, t_next = grid[k], record.times[grid[k]], record.times[grid[k + 1]]
        log_s = model(x, noise.total(torch.full((len(idx),), t, dtype=torch.float64, device=device))).double()
        x_star = record.states[a, sl].to(device)
        log_s_star = record.log_scores[a, sl].to(device).double()
        total += row_loss(log_s, log_s_star, compared_entries(graph, x, x_star, entries), coefficients[k],
                          convention, space)
        move, stay = transition_probabilities(graph, noise, base, t, t_next, x,
                                              scaled_score(log_s, coefficients[k], convention), final=k == M - 1)
        x = rng.step(x, move, stay, record.steps[a])
    return total, M


def best_start(model, graph, noise, record, grid, idx, zeta, training: Training, *, base, convention, coupling,
               device) -> tuple[torch.Tensor, int]:
    """`start="best"`: per trajectory, the least-loss start among `start_candidates` marginal-token
    starts in the Hamming ball (loss of the Phi = 1 student along the whole trajectory), and the
    network calls the search cost."""
    sl, ids = slice(idx[0], idx[-1] + 1), torch.tensor(idx, device=device)
    space, ones = training.loss_space(convention), [1.0] * (len(grid) - 1)
    best, best_loss, calls = None, None, 0
    for j in range(training.start_candidates):
        x = perturbed_start(graph, record, sl, ids, zeta, record.seed, "marginal",
                            stream=PERTURB - BEST_STREAM_STRIDE * j).to(device)
        loss, c = _rollout_loss(model, graph, noise, record, grid, idx, x, ones, base=base, convention=convention,
                                space=space, entries=training.entries, coupling=coupling, device=device)
        calls += c
        if best is None:
            best, best_loss = x, loss
        else:
            better = loss < best_loss
            best = torch.where(better[:, None], x, best)
            best_loss = torch.minimum(loss, best_loss)
    return best, calls


@torch.no_grad()
def fit_coefficients(model, graph: Graph, noise: Noise, record: TeacherRecord, grid: list, *, base: str,
                     convention: str = "scale", coupling: str = "coupled", zeta: float = 0.0, rows=None,
                     batch_size: int = 64, device="cpu", progress: bool = False,
                     training: Training | None = None) -> dict:
    """Sequential LSD training on the student grid `grid` (candidate indices into `record`, ending at G).

    Returns coefficients, per-step losses at the trained Phi and at Phi = 1 (summed over
    trajectories), network calls and Adam updates per coefficient."""
    training = training or Training()
    space = training.loss_space(convention)
    rows = rows if rows is not None else range(record.states.shape[1])
    rows = list(rows)
    M = len(grid) - 1
    seed = trajectory_seed(record.seed, coupling)
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    student, rngs, calls = {}, {}, 0
    searched = training.start == "best" and int(round(zeta * record.states.shape[2])) > 0
    for b, idx in enumerate(batches):
        ids = torch.tensor(idx, device=device)
        sl = slice(idx[0], idx[-1] + 1)
        rngs[b] = TrajectoryNoise(graph, seed, ids, record.states.shape[2])
        if searched:
            student[b], c = best_start(model, graph, noise, record, grid, idx, zeta, training, base=base,
                                       convention=convention, coupling=coupling, device=device)
            calls += c
        else:
            student[b] = perturbed_start(graph, record, sl, ids, zeta, record.seed, training.start).to(device)
    coefficients, losses, losses_at_one, updates = [], [], [], []
    bar = progress_bar(M, f"fit {convention} coefficients", progress, leave=False)
    for k in range(M):
        a, b_next = grid[k], grid[k + 1]
        t, t_next = record.times[a], record.times[b_next]
        scores, s_all, s_star_all = {}, [], []
        row_losses = RowLosses(convention, space)
        for b, idx in enumerate(batches):
            sl = slice(idx[0], idx[-1] + 1)
            x = student[b]
            sigma_bar = noise.total(torch.full((len(idx),), t, dtype=torch.float64, device=device))
            log_s = model(x, sigma_bar).double()
            calls += 1
            scores[b] = log_s
            x_star = record.states[a, sl].to(device)
            both = compared_entries(graph, x, x_star, training.entries)
            student_entries, teacher_entries, both = _entries(log_s, record.log_scores[a, sl].to(device).double(),
                                                              both, space)
            if training.fit == "exact":
                s_all.append(student_entries[both])
                s_star_all.append(teacher_entries[both])
            else:
                row_losses.add(student_entries.cpu(), teacher_entries.cpu(), both.cpu())
        if training.fit == "exact":
            phi, loss, loss_one = fit_phi(torch.cat(s_all), torch.cat(s_star_all), convention, space)
            steps = 0
        else:
            phi, steps = adam_fit(row_losses, training, (record.seed * 1_000_003 + k) % 2 ** 63)
            everyone = torch.arange(len(row_losses))

            def at(p: float) -> float:
                return float(row_losses(torch.tensor(p, dtype=torch.float64), everyone).sum()) if len(everyone) else 0.0
            loss, loss_one = _finite(at(phi), "loss"), at(1.0)
        coefficients.append(phi)
        losses.append(loss)
        losses_at_one.append(loss_one)
        updates.append(steps)
        for b, idx in enumerate(batches):
            x = student[b]
            move, stay = transition_probabilities(graph, noise, base, t, t_next, x,
                                                  scaled_score(scores[b], phi, convention), final=k == M - 1)
            student[b] = rngs[b].step(x, move, stay, record.steps[a])
        bar.update(1)
    bar.close()
    return {"coefficients": coefficients, "loss": losses, "loss_at_phi_1": losses_at_one, "calls": calls,
            "adam_updates": updates, "samples": torch.cat([student[b].cpu() for b in range(len(batches))])}


def best_partition(cost: torch.Tensor, nfe: int) -> list:
    """Indices 0 = g_0 < g_1 < ... < g_nfe = G minimising sum_k cost[g_k, g_{k+1}] (dynamic programming).

    `cost` is [G + 1, G + 1]; entries with b <= a are never used. Always returns a valid grid
    (strictly increasing, from 0 to G), whatever the costs, as long as nfe <= G."""
    G = cost.shape[0] - 1
    if not 1 <= nfe <= G:
        raise ValueError(f"grid: need 1 <= nfe <= {G} candidate intervals, got {nfe}")
    finite = torch.nan_to_num(cost.double(), nan=float("inf"), posinf=float("inf"), neginf=float("inf"))
    forward = torch.triu(torch.ones(G + 1, G + 1, dtype=torch.bool), diagonal=1)
    # invalid (b <= a) transitions cost more than any valid path, so they are never chosen
    big = float(finite[forward & torch.isfinite(finite)].abs().sum()) * 2 + 1.0 if torch.isfinite(finite[forward]).any() else 1.0
    finite = torch.where(forward, torch.where(torch.isfinite(finite), finite, big), float("inf"))
    best = torch.full((nfe + 1, G + 1), float("inf"), dtype=torch.float64)
    back = torch.zeros((nfe + 1, G + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, nfe + 1):  # best[k, b]: least cost of reaching b from 0 in k steps
        best[k], back[k] = (best[k - 1][:, None] + finite).min(0)
    grid = [G]
    for k in range(nfe, 0, -1):
        grid.append(int(back[k, grid[-1]]))
    grid = grid[::-1]
    if grid[0] != 0 or any(a >= b for a, b in zip(grid, grid[1:])):
        raise DistillationError(f"grid: no valid {nfe}-step grid among {G} candidate intervals")
    return grid


@torch.no_grad()
def transition_costs(graph: Graph, noise: Noise, record: TeacherRecord, base: str,
                     max_trajectories: int = 16) -> torch.Tensor:
    """cost[a, b] of replacing the teacher between candidates a < b by one student step.

    cost(a, b) = || Phi m_ab - (P_b - P_a) ||_1, where m_ab are the student's one-step move
    probabilities from the teacher state at t_a to t_b, P the teacher's summed moves and Phi
    the L2-best coefficient of the interval. L1, not L2: probability vectors of diffuse token
    distributions have tiny L2 norms, and an L2 cost lets the early, most parallel steps grow
    (on the exact toy, an L2 cost made 4-step sampling worse than the uniform grid).
    Computed once per teacher record and base rule (memoised on the record)."""
    key = (base, max_trajectories)
    if key in record.grid_costs:
        return record.grid_costs[key]
    G = len(record.times) - 1
    n = min(max_trajectories, record.states.shape[1])
    cost = torch.full((G + 1, G + 1), float("inf"), dtype=torch.float64)
    for a in range(G):
        x = record.states[a, :n]
        score = torch.exp(record.log_scores[a, :n].double())
        for b in range(a + 1, G + 1):
            m, _ = transition_probabilities(graph, noise, base, record.times[a], record.times[b], x, score,
                                            final=b == G)
            dp = (record.cum_move[b, :n] - record.cum_move[a, :n]).double()
            mm, md = float((m * m).sum()), float((m * dp).sum())
            phi = md / mm if mm > 0 else 1.0
            cost[a, b] = float((phi * m - dp).abs().sum())
    record.grid_costs[key] = cost
    return cost


def transition_grid(graph: Graph, noise: Noise, record: TeacherRecord, nfe: int, base: str) -> tuple[list, list]:
    """LSD+'s time grid: the nfe-step subset of the candidate times of least total transition cost."""
    G = len(record.times) - 1
    if nfe > G:
        raise ValueError(f"lsd+: nfe ({nfe}) exceeds the teacher's candidate times ({G}); raise --candidates")
    cost = transition_costs(graph, noise, record, base)
    grid = best_partition(cost, nfe)
    return grid, [float(cost[a, b]) for a, b in zip(grid, grid[1:])]



def distill(model, graph: Graph, noise: Noise, *, method: str, nfe: int, length: int, base: str = "euler",
            convention: str = "scale", coupling: str = "coupled", zeta="0.05", teacher_steps: int = 1024,
            teacher_base: str = "euler", trajectories: int = 64, candidates: int = 128, seed: int = 0,
            batch_size: int = 64, t_max: float = 1.0, t_min: float = 1e-5, device="cpu", progress: bool = False,
            record: TeacherRecord | None = None, training: Training | dict | None = None, **metadata) -> Schedule:
    """Distil an `nfe`-step LSD or LSD+ schedule of `base` rule from a `teacher_steps`-step teacher.

    The teacher is uniform Euler by default (the reference code's); pass `record` to reuse one
    teacher rollout for several students (its network calls are then not counted here).
    `training` (a `Training` or a dict of its keys): how each coefficient is trained and where
    the relaxed start's tokens come from; the default is the paper's reading (`Training()`)."""
    if method not in ("lsd", "lsd+"):
        raise ValueError(f"method: unknown {method!r}; choose 'lsd' or 'lsd+' (JYS lives in lsd.optimize.jys)")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe: must be a positive integer, got {nfe!r}")
    if convention not in DEFAULT_SPACE:
        raise ValueError(f"convention: unknown {convention!r}; choose one of {list(DEFAULT_SPACE)}")
    training = Training.from_dict(training, strict=True) if isinstance(training, dict) else training or Training()
    shared_teacher = record is not None
    if shared_teacher:
        candidates = len(record.times) - 1
    if candidates % nfe and method == "lsd":
        raise ValueError(f"lsd: nfe ({nfe}) must divide the candidate count ({candidates})")
    started = time.perf_counter()
    counter = CallCounter(model)
    if record is None:
        record = teacher_rollout(counter, graph, noise, length=length, trajectories=trajectories, steps=teacher_steps,
                                 base=teacher_base, candidates=candidates, t_max=t_max, t_min=t_min, seed=seed,
                                 batch_size=batch_size, device=device, progress=progress)
    else:  # a shared teacher: its calls are not this schedule's
        teacher_steps, teacher_base, seed = record.teacher_steps, record.base, record.seed
        trajectories = record.states.shape[1]
    grid_cost = None
    if method == "lsd":
        grid = list(range(0, candidates + 1, candidates // nfe))
    else:
        grid, grid_cost = transition_grid(graph, noise, record, nfe, base)
    fit = lambda z, rows=None: fit_coefficients(counter, graph, noise, record, grid, base=base,  # noqa: E731
                                                convention=convention, coupling=coupling, zeta=z, rows=rows,
                                                batch_size=batch_size, device=device, progress=progress,
                                                training=training)
    zeta_search = None
    if str(zeta) == "auto":
        train, held_out = range(0, trajectories // 2), range(trajectories // 2, trajectories)
        zeta_search = {}
        for z in ZETA_GRID:
            phis = fit(z, train)["coefficients"]
            check = Schedule(base, [record.times[g] for g in grid], phis, convention=convention)
            zeta_search[z] = held_out_loss(counter, graph, noise, record, grid, check, coupling, held_out,
                                           batch_size, device, training=training)
        zeta = min(zeta_search, key=zeta_search.get)
    zeta = float(zeta)
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"zeta: must lie in [0, 1] or be 'auto', got {zeta}")
    result = fit(zeta)
    wall = time.perf_counter() - started
    times = [record.times[g] for g in grid]
    meta = {"method": method, "nfe": nfe, "base": base, "convention": convention, "coupling": coupling,
            "zeta": zeta, "zeta_search": zeta_search, "training": {**asdict(training),
                                                                   "space": training.loss_space(convention)},
            "adam_updates": result["adam_updates"], "teacher_steps": teacher_steps,
            "teacher_base": teacher_base, "trajectories": trajectories, "candidates": candidates,
            "loss": result["loss"], "loss_at_phi_1": result["loss_at_phi_1"], "grid_cost": grid_cost,
            "kappa": [a - b for a, b in zip(times, times[1:])], "network_calls": counter.calls,
            "teacher_calls": record.calls, "teacher_shared": shared_teacher, "wall_time_s": wall, "seed": seed, "made_by": "lsd.optimize.lsd.distill",
            "provenance": provenance(), **metadata}
    return Schedule(base, times, result["coefficients"], convention=convention, metadata=meta)


@torch.no_grad()
def held_out_loss(model, graph, noise, record, grid, schedule: Schedule, coupling, rows, batch_size, device,
                  training: Training | None = None) -> float:
    """Sum over steps of the LSD loss of `schedule`'s coefficients, student started unperturbed."""
    training = training or Training()
    rows = list(rows)
    total = 0.0
    for i in range(0, len(rows), batch_size):
        idx = rows[i:i + batch_size]
        x = record.states[0, slice(idx[0], idx[-1] + 1)].to(device)
        loss, _ = _rollout_loss(model, graph, noise, record, grid, idx, x, list(schedule.coefficients),
                                base=schedule.base, convention=schedule.convention,
                                space=training.loss_space(schedule.convention), entries=training.entries,
                                coupling=coupling, device=device)
        total += float(loss.sum())
    return _finite(total, "held-out loss")
