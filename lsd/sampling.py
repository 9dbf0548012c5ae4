"""One sampler for every schedule (k-diffusion style: a plain function over a model and a schedule).

Step k goes from tau_k to tau_{k+1} with one network call at tau_k:
- euler:   P(x_i -> y) = (tau_k - tau_{k+1}) sigma(tau_k) Q(y, x_i) s'_y, one categorical jump;
- tauleap: the same expected jump counts m_y = (tau_k - tau_{k+1}) sigma(tau_k) Q(y, x_i) s'_y
           (so `transition_probabilities` returns Euler's move/stay for it and the optimisers
           treat it as Euler), but every destination y gets an independent Poisson(m_y) count
           N_y and the value moves by the ordinal sum sum_y (y - x_i) N_y, clamped to
           [0, V - 1] (tauLDR's tau-leaping, Campbell et al. 2022). Graphs with ordinal
           values only (`graph.ordinal`: the Gaussian-rate graph of images);
- tweedie: SEDD's analytic step over delta = sigma_bar(tau_k) - sigma_bar(tau_{k+1})
where s' is the score after the step's coefficient (`Schedule` explains the conventions).
The last step (`graph.finalize`) removes every remaining mask on the absorbing graph (its
probabilities of staying masked are dropped); on the CTMC graphs it decodes from p(x0 | x_t)
at the last network call (the x0-model's own output, `lsd.X0Score`; else derived from the
score): its argmax by default, as tauLDR's last step, or a draw from it (`final="sample"` in
the graph's config). A tau-leaping schedule's last step is that categorical decoding too.
Either way it uses the last step's own network call, so a schedule of M steps costs exactly
M network calls: NFE = M. (SEDD, JYS and tauLDR spend one more call on a separate denoising
step; this harness folds it in, as the LSD student does.)

Draws are exact float64 categorical draws from per-sample counter-based streams
(`lsd.random`): position i first stays or moves with one uniform, then picks its
destination by inverse CDF with a second one. Tau-leaping draws each Poisson count by
inverse CDF of its own uniform (stream `lsd.random.TAULEAP + k`). Samples depend on
(seed, sample index) only, never on batch size or order.

The step itself is `lsd.step` (probabilities and draws: the specification) and, where it
applies, `lsd.sparse_step` (the same draws from far fewer float64 rows).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .diffusion.graph import Graph
from .diffusion.noise import Noise
from .draws import TrajectoryNoise
from .io import progress as progress_bar
from .random import INIT, RandomStreams
from .schedule import Schedule, check_graph
from .sparse_step import coupled_sparse_step, sparse_step, supports_sparse_step
from .step import Step, check_base, draw_step, step_probabilities

COUPLINGS = ("independent", "coupled")


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule, *,
           graph: Graph, noise: Noise, num_samples: int, length: int, seed: int = 0,
           batch_size: int = 64, first_sample: int = 0, device: str | torch.device = "cpu",
           callback: Optional[Callable[[Step], None]] = None, progress: bool = False,
           dense: bool = False, coupling: str = "independent") -> torch.Tensor:
    """Draw `num_samples` sequences of `length` tokens with `schedule`; returns LongTensor [n, L].

    model: a score model `(x_t [B, L], sigma_bar [B] float64) -> log score [B, L, graph.dim]`;
        wrap it in `lsd.CallCounter` to count network calls (exactly `schedule.nfe` per batch).
    schedule: the sampler, as data (`lsd.Schedule`).
    graph, noise: the diffusion the model was trained for.
    seed, first_sample: sample i (global index first_sample + i) uses its own random streams
        keyed by (seed, index): results do not depend on batch_size.
    callback: called after every step with a `Step` (state, time, score, probabilities); the steps
        are then dense, to build the probabilities it sees (same samples).
    progress: show a tqdm bar over batches x steps.
    dense: build the full float64 probabilities at every step (`dense_step`, the specification);
        by default steps are sparse where `supports_sparse_step` allows, with the same samples.
    coupling: "independent" (default) or "coupled": common random numbers across samplers. On
        the absorbing graph with a categorical rule (euler, tweedie) and no selection rule, sample i
        gets one clock and one token draw per position from (seed, i), shared by every sampler
        (`lsd.draws.TrajectoryNoise`, the coupling of teacher and student rollouts): a
        position unmasks at the first step where its survival falls to its clock, to the token at
        its draw's quantile. Each sampler keeps its exact law, and sample i of two samplers of a
        seed end close, so their paired differences are precise. Elsewhere (other graphs, where
        positions jump repeatedly; tauleap; selection rules) what is shared is what independent
        sampling shares too: the start and the uniforms of step k keyed by (seed, i, k).
    """
    if num_samples < 0 or length < 1 or batch_size < 1:
        raise ValueError(f"sample: need num_samples >= 0, length >= 1, batch_size >= 1; "
                         f"got {num_samples}, {length}, {batch_size}")
    if coupling not in COUPLINGS:
        raise ValueError(f"sample: coupling must be one of {COUPLINGS}, got {coupling!r}")
    check_base(schedule.base, graph)  # before any network call
    if schedule.selection is not None:
        from .selection import selection_step

        check_graph(schedule, graph)  # before any network call: one line naming schedule.selection
    device = torch.device(device)
    coupled = (coupling == "coupled" and getattr(graph, "absorbing", False) and schedule.selection is None
               and schedule.base != "tauleap")
    # a callback sees move and stay, so its steps are dense
    sparse = not dense and callback is None and supports_sparse_step(graph, schedule)
    out = torch.empty(num_samples, length, dtype=torch.long)
    bar = progress_bar(-(-num_samples // batch_size) * schedule.nfe,
                       f"sample {schedule.metadata.get('method', '')} {schedule.base} NFE={schedule.nfe}", progress,
                       unit="step", leave=False)
    for start in range(0, num_samples, batch_size):
        ids = torch.arange(first_sample + start, first_sample + min(start + batch_size, num_samples), device=device)
        streams = RandomStreams(seed, ids)
        x = graph.limit(streams.uniform(INIT, length, 2))
        shared = None
        if coupled:
            shared = TrajectoryNoise(graph, seed, ids, length)  # the same start as `streams`
        for k in range(schedule.nfe):
            sigma_bar = noise.total(torch.full((len(ids),), schedule.times[k], dtype=torch.float64, device=device))
            log_score = model(x, sigma_bar)
            x_next = None
            if sparse and shared is not None:
                x_next = coupled_sparse_step(graph, noise, schedule, k, x, log_score, shared)
            elif sparse:
                x_next = sparse_step(graph, noise, schedule, k, x, log_score, streams)
            if x_next is None:
                move, stay = step_probabilities(graph, noise, schedule, k, x, log_score)
                if shared is not None:
                    x_next = shared.step(x, move, stay, k)
                elif schedule.selection is None:
                    x_next = draw_step(schedule.base, x, move, stay, streams, k, final=k == schedule.nfe - 1)
                else:  # the schedule's selection rule decides which masks leave (lsd.selection)
                    x_next = selection_step(graph, schedule, k, x, move, stay, streams)
            if callback is not None:
                callback(Step(k, schedule.times[k], schedule.times[k + 1], x, log_score, move, stay, x_next, ids))
            x = x_next
            bar.update(1)
        out[start:start + len(ids)] = x.cpu()
    bar.close()
    return out
