"""Temperature-matched baselines: separate gains of a better schedule from mere sharpening.

A learned schedule can lower generative perplexity by making samples sharper (lower
entropy) rather than better; the `power` convention (s^Phi) does that directly. The
baseline is the uniform sampler with the same rule and NFE whose temperature (see
`lsd.Schedule.temperature`) gives the same mean unigram entropy as the learned schedule,
measured on the same seeds (common random numbers make entropy smooth in T).
"""
from __future__ import annotations

import math

from ..metrics.entropy import unigram_entropy
from ..sampling import sample
from ..schedule import Schedule


def match_temperature(model, graph, noise, learned: Schedule, *, length: int, num_samples: int = 64, seed: int = 0,
                      batch_size: int = 64, bounds=(0.2, 5.0), iterations: int = 12, device="cpu") -> Schedule:
    """The uniform `learned.base` schedule at the temperature matching `learned`'s sample entropy."""
    run = lambda s: unigram_entropy(sample(model, s, graph=graph, noise=noise, num_samples=num_samples,  # noqa: E731
                                           length=length, seed=seed, batch_size=batch_size, device=device))
    target = run(learned)
    uniform = Schedule.uniform(learned.base, learned.nfe, t_max=learned.times[0], t_min=learned.times[-1])
    at = lambda temp: run(Schedule(uniform.base, uniform.times, temperature=temp)) - target  # noqa: E731
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    f_lo, f_hi = at(math.exp(lo)), at(math.exp(hi))
    trace = [(math.exp(lo), f_lo), (math.exp(hi), f_hi)]
    # Unigram entropy usually grows with temperature, but not always (sharpening can make
    # sequences more varied), so bisect on the sign change whichever way it goes.
    in_range = (f_lo <= 0) != (f_hi <= 0)
    if not in_range:  # take the nearer bound and say so in the metadata
        temp = math.exp(lo) if abs(f_lo) < abs(f_hi) else math.exp(hi)
    else:
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            f_mid = at(math.exp(mid))
            trace.append((math.exp(mid), f_mid))
            if (f_mid <= 0) == (f_lo <= 0):
                lo, f_lo = mid, f_mid
            else:
                hi, f_hi = mid, f_mid
        temp = math.exp(0.5 * (lo + hi))
    return Schedule(uniform.base, uniform.times, temperature=temp, metadata={
        "method": "temperature", "matches": learned.metadata.get("method"), "matched_schedule": learned.to_dict(),
        "target_entropy": target, "search": trace, "num_samples": num_samples, "seed": seed,
        "in_range": in_range})
