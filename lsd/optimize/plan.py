"""Every schedule of one (backbone, seed): uniform, teacher, JYS, LSD, LSD+ and temperature-matched.

Making them together lets all students of a seed share one teacher rollout (the dominant
cost) and one process start-up, which is what keeps the embedded benchmark within a
laptop's budget. Sampler definitions are the workflow config's `sampler_definitions`:
`{method: uniform|teacher|jys|lsd|lsd+|spread|temperature|file, base, convention, coupling, zeta,
trajectories, teacher_steps, match, path, nfe, num_samples, fine_steps, iterations, quadrature,
temperature, coefficient, fit, lr, epochs, minibatch, space, entries, start, start_candidates}`:
- `nfe`: this sampler's own NFE list instead of `nfes` (not for teachers);
- uniform: `temperature` (default 1): a fixed-temperature uniform sampler, e.g. the sharpening
  rows (T < 1) beside the learned ones; `coefficient` (default 1): one hand-set Phi at every
  step (a control for learned coefficients);
- lsd, lsd+: how the coefficients are trained (`lsd.optimize.lsd_objective.Training`, docs/lsd-training.md):
  `fit` (sgd | exact), `lr`, `epochs`, `minibatch`, `space` (score | log), `entries`
  (tokens | with_mask), `start` (teacher | marginal | best), `start_candidates`; each absent key
  takes the distill settings' value, then the paper's default;
- `path` (file): a schedule JSON, `{backbone}`, `{nfe}` and `{seed}` filled in;
- jys: `fine_steps`, `iterations`, `quadrature` of `jys_schedule` (its defaults when absent),
  `trajectories` the number of data sequences of its KLUB;
- spread: lsd-spread (`lsd.optimize.spread`), sharing the seed's teacher rollout (its LSD+ grid
  candidate) and fitting on `trajectories` held-out rollouts;
- temperature: `num_samples` (default 128) and `iterations` (bisection steps, default 12) of
  `match_temperature`.
"""
from __future__ import annotations

import time

import torch

from ..schedule import Schedule
from ..workflow_facts import DISTILL_DEFAULTS
from .lsd import distill
from .lsd_objective import Training
from .teacher import teacher_rollout

METHODS = ("uniform", "teacher", "jys", "lsd", "lsd+", "spread", "temperature", "file")


def make_schedules(bb, samplers: dict, nfes: list, seed: int, distill_settings: dict, *, data_fn=None,
                   device="cpu", progress: bool = False, log=print) -> dict:
    """{(sampler, nfe): Schedule} for every sampler definition and NFE (teachers: their own NFE)."""
    for name, d in samplers.items():
        if d.get("method") not in METHODS:
            raise ValueError(f"samplers.{name}.method: unknown {d.get('method')!r}; choose one of {list(METHODS)}")
    settings = {**DISTILL_DEFAULTS, **distill_settings}
    records, out = {}, {}

    def record_for(d):
        key = (d.get("teacher_steps") or settings["teacher_steps"], d.get("trajectories") or settings["trajectories"])
        if key not in records:
            t0 = time.perf_counter()
            records[key] = teacher_rollout(bb.model, bb.graph, bb.noise, length=bb.length, trajectories=key[1],
                                           steps=key[0], candidates=settings["candidates"], seed=seed,
                                           batch_size=settings["batch_size"], device=device, progress=progress)
            log(f"teacher: {key[0]} steps x {key[1]} trajectories, {time.perf_counter() - t0:.1f} s")
        return records[key]

    order = sorted(samplers, key=lambda n: samplers[n]["method"] == "temperature")  # matches come first
    for name in order:
        d = samplers[name]
        method, base = d["method"], d.get("base", "euler")
        own = [d.get("teacher_steps") or settings["teacher_steps"]] if method == "teacher" else d.get("nfe") or nfes
        for nfe in own:
            t0 = time.perf_counter()
            if method in ("uniform", "teacher"):
                s = Schedule.uniform(base, nfe)
                if method == "uniform" and (d.get("temperature") is not None or d.get("coefficient") is not None):
                    coefficient = 1.0 if d.get("coefficient") is None else d["coefficient"]
                    temperature = 1.0 if d.get("temperature") is None else d["temperature"]
                    s = Schedule(s.base, s.times, [coefficient] * nfe, temperature=temperature, metadata=s.metadata)
            elif method == "file":
                s = Schedule.load(d["path"].format(backbone=bb.name, nfe=nfe, seed=seed))
            elif method == "jys":
                from .jys import jys_schedule

                data = data_fn(d.get("trajectories") or settings["trajectories"], seed)
                knobs = {k: d[k] for k in ("fine_steps", "iterations", "quadrature") if d.get(k) is not None}
                with torch.no_grad():  # jys_schedule does not turn autograd off itself
                    s = jys_schedule(bb.model, bb.graph, bb.noise, data, nfe, base=base, seed=seed,
                                     batch_size=settings["batch_size"], device=device, **knobs)
            elif method in ("lsd", "lsd+"):
                try:
                    training = Training.from_dict({**settings, **{k: v for k, v in d.items() if v is not None}})
                except (TypeError, ValueError) as e:
                    raise ValueError(f"samplers.{name}.{e}") from None
                s = distill(bb.model, bb.graph, bb.noise, method=method, nfe=nfe, length=bb.length, base=base,
                            convention=d.get("convention", "scale"),
                            coupling=d.get("coupling", settings["coupling"]),
                            zeta=d.get("zeta", settings["zeta"]), record=record_for(d), device=device,
                            training=training)
            elif method == "spread":
                from .spread import distill_spread

                s = distill_spread(bb.model, bb.graph, bb.noise, nfe=nfe, length=bb.length, base=base,
                                   trajectories=d.get("trajectories") or settings["trajectories"],
                                   batch_size=settings["batch_size"], record=record_for(d), device=device)
            else:
                from .temperature import match_temperature

                s = match_temperature(bb.model, bb.graph, bb.noise, out[(d["match"], nfe)], length=bb.length,
                                      num_samples=d.get("num_samples") or 128, iterations=d.get("iterations") or 12,
                                      seed=seed, batch_size=settings["batch_size"], device=device)
            s.metadata.update({"sampler": name, "backbone": bb.name, "seed": seed,
                               "plan_wall_time_s": time.perf_counter() - t0})
            out[(name, nfe)] = s
            log(f"{name} NFE {nfe}: {time.perf_counter() - t0:.1f} s")
    return out
