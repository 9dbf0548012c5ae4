"""Evaluate samples: every metric with its 95% interval over samples, named as in the tables.

Metric sets (`lsd evaluate --metrics ...`):
- `oracle_ppl` (oracle-text): exact NLL under the true language; `oracle_nll` (nats/token),
  `oracle_ppl_corpus` (exp of mean token NLL), `oracle_ppl_mean_of_exps` (mean of per-sample
  perplexities) and the language's own `oracle_ppl_floor` = exp(entropy rate).
- `entropy`: mean per-sample unigram entropy (nats) and `data_entropy`, the same statistic on
  as many sequences of the task's data (the reference a sampler should not fall below).
- `countdown`: `countdown_error_any` (share of samples with a violation, the paper's) and
  `countdown_error_transitions` (share of violating transitions).
- `frechet` (digits): Frechet distance in the 10 logits of a small digits classifier whose
  weights are committed and pinned (`frechet_digits`), never called FID; the record's
  `extra.frechet_digits_fit` says whether the Gaussian fit is well conditioned.
- `gen_ppl`: generative perplexity under a Hugging Face causal LM (default gpt2-large), both
  aggregations.
- `fid` (image backbones, e.g. tauldr-cifar10): FID with pytorch-fid's Inception against the
  reference statistics file `fid_stats` made by `lsd fid-stats` (`lsd.fid`).
Metrics that are a mean over samples (oracle_nll, oracle_ppl_mean_of_exps, entropy,
countdown_error_any) also return their per-sample values (`_per_sample`, kept in the record's
`extra.per_sample`), so the report can pair sample i of two samplers at the same seed.
"""
from __future__ import annotations

import numpy as np
import torch

METRIC_SETS = ("oracle_ppl", "entropy", "countdown", "frechet", "gen_ppl", "fid")
# The task whose samples a metric set can judge (entropy: any; gen_ppl: text in GPT-2's tokens, i.e.
# a backbone without an embedded task; fid: image backbones). Any other pairing would record a number
# that means nothing, e.g. a countdown error rate of 1.0 for oracle-text samples.
METRIC_TASKS = {"oracle_ppl": "oracle-text", "countdown": "countdown", "frechet": "digits"}


def check_metric_sets(metric_sets, backbone_info: dict, fid_stats=None, source: str = "samples") -> None:
    """Refuse, before any work, a metric set that the backbone's task cannot support (one-line ValueError)."""
    unknown = sorted(set(metric_sets) - set(METRIC_SETS))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; choose from {list(METRIC_SETS)}")
    task = (backbone_info or {}).get("task")
    has = f"{source} come from a backbone of task {task!r}" if task else f"{source} come from a backbone without a task"
    for name in metric_sets:
        need = METRIC_TASKS.get(name)
        if need and task != need:
            raise ValueError(f"metrics: {name} needs samples of the {need} task, but the {has}")
    if "gen_ppl" in metric_sets and task:
        raise ValueError(f"metrics: gen_ppl scores text in GPT-2's tokens, but the {has} (use its own metric set)")
    if "fid" in metric_sets:
        info = backbone_info or {}
        if not info.get("image_shape") or not info.get("levels"):
            raise ValueError(f"metrics: fid needs image samples, but the {source} are not images (the backbone info "
                             f"has no image_shape/levels); use it with an image backbone such as tauldr-cifar10")
        if fid_stats is None:
            raise ValueError("fid: needs the reference statistics file (--fid-stats, made by `lsd fid-stats`)")
        from pathlib import Path

        if not Path(fid_stats).is_file():
            raise FileNotFoundError(f"fid: reference statistics {fid_stats} not found; make them with "
                                    f"`lsd fid-stats --images <training PNGs> --out {fid_stats}`")


def _task(info: dict):
    from .tasks import make_task

    name = info.get("task")
    if name is None:
        raise ValueError("evaluate: this backbone has no embedded task; use --metrics gen_ppl entropy")
    return make_task(name, **info.get("task_config", {}))


def evaluate_samples(x: torch.Tensor, metric_sets, backbone_info: dict, *, evaluator: str = "gpt2-large",
                     seed: int = 0, cache_dir=None, device="cpu", fid_stats=None) -> dict:
    """{metric name: {"value": v, "interval": Interval | None}} for the samples x [n, L]."""
    from . import metrics as M

    check_metric_sets(metric_sets, backbone_info, fid_stats)
    out = {}
    per_sample = {}  # metric -> one value per sample (the metric is their mean): the report pairs samplers on them
    length = x.shape[1]
    if "oracle_ppl" in metric_sets:
        task = _task(backbone_info)
        res = M.oracle_perplexity(task.nll, x, task.entropy_rate())
        per_token = res["sum_nll"] / length
        out["oracle_nll"] = {"value": res["nll_per_token"], "interval": M.bootstrap_interval(per_token, seed=seed)}
        out["oracle_ppl_corpus"] = {"value": res["ppl_corpus"],
                                    "interval": M.bootstrap_ratio_exp_interval(res["sum_nll"], res["n_tokens"], seed=seed)}
        out["oracle_ppl_mean_of_exps"] = {"value": res["ppl_mean_of_exps"],
                                          "interval": M.bootstrap_interval(np.exp(per_token), seed=seed)}
        out["oracle_ppl_floor"] = {"value": res["floor"], "interval": None}
        per_sample["oracle_nll"], per_sample["oracle_ppl_mean_of_exps"] = per_token, np.exp(per_token)
    if "entropy" in metric_sets:
        entropies = M.unigram_entropy_per_sample(x).numpy()
        out["entropy"] = {"value": float(entropies.mean()), "interval": M.bootstrap_interval(entropies, seed=seed)}
        per_sample["entropy"] = entropies
        if backbone_info.get("task"):
            data = _task(backbone_info).sample_corpus(len(x), seed=12345)[:, :length]
            out["data_entropy"] = {"value": M.unigram_entropy(data), "interval": None}
    if "countdown" in metric_sets:
        rates = M.countdown_error_rates(x)
        flags = M.countdown_violations(x).any(-1).double().numpy()
        # a share of samples: an exact binomial interval, inside [0, 1] even at 0 or 16 of 16
        out["countdown_error_any"] = {"value": rates["error_rate_any"], "interval": M.rate_interval(flags)}
        per_sample["countdown_error_any"] = flags
        out["countdown_error_transitions"] = {"value": rates["error_rate_per_transition"], "interval": None}
    if "frechet" in metric_sets:
        from .tasks.digits import to_images

        task = _task(backbone_info)
        classifier = M.DigitsClassifier.pinned(cache=cache_dir)  # committed weights; cache_dir: fallback only
        fit = M.digits_frechet(to_images(x), to_images(task.test), classifier)
        out["frechet_digits"] = {"value": fit["value"], "interval": None}
        out["_frechet_digits"] = {**fit, "classifier": classifier.describe()}  # kept in the record's extra
    if "fid" in metric_sets:
        from .fid import fid_of_samples

        if fid_stats is None:
            raise ValueError("fid: needs the reference statistics file (--fid-stats, made by `lsd fid-stats`)")
        out["fid"] = {"value": fid_of_samples(x, backbone_info, fid_stats, device=device), "interval": None}
    if "gen_ppl" in metric_sets:
        from .backbones.hub import load_gpt2_tokenizer

        ev = M.CausalLMEvaluator.from_pretrained(evaluator, device=device)
        res = ev.evaluate(x, sample_tokenizer=load_gpt2_tokenizer())
        iv = res.intervals(seed=seed)
        out["gen_ppl_mean_of_exps"] = {"value": res.ppl_mean_of_exps, "interval": iv["ppl_mean_of_exps"]}
        out["gen_ppl_corpus"] = {"value": res.ppl_corpus, "interval": iv["ppl_corpus"]}
        out["_evaluator"] = res.meta
    if per_sample:
        out["_per_sample"] = {name: compact(values) for name, values in per_sample.items()}
    return out


def compact(values) -> list:
    """Per-sample values for a record's `extra`: floats at 7 significant digits (a mean over them
    agrees with the metric to about 1e-7 relative; the record stays small)."""
    return [float(f"{float(v):.7g}") for v in np.asarray(values, dtype=np.float64).reshape(-1)]
