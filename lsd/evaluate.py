"""Evaluate samples: every metric with its 95% interval over samples, named as in the tables.

Metric sets (`lsd evaluate --metrics ...`):
- `oracle_ppl` (oracle-text): exact NLL under the true language; `oracle_nll` (nats/token),
  `oracle_ppl_corpus` (exp of mean token NLL), `oracle_ppl_mean_of_exps` (mean of per-sample
  perplexities) and the language's own `oracle_ppl_floor` = exp(entropy rate).
- `entropy`: mean per-sample unigram entropy (nats) and `data_entropy`, the same statistic on
  as many sequences of the task's data (the reference a sampler should not fall below).
- `countdown`: `countdown_error_any` (share of samples with a violation, the paper's) and
  `countdown_error_transitions` (share of violating transitions).
- `frechet` (digits): Frechet distance in the feature space of a small digits classifier
  trained here (`frechet_digits`), never called FID.
- `gen_ppl`: generative perplexity under a Hugging Face causal LM (default gpt2-large), both
  aggregations.
- `fid` (image backbones, e.g. tauldr-cifar10): FID with pytorch-fid's Inception against the
  reference statistics file `fid_stats` made by `lsd fid-stats` (`lsd.fid`).
"""
from __future__ import annotations

import numpy as np
import torch

METRIC_SETS = ("oracle_ppl", "entropy", "countdown", "frechet", "gen_ppl", "fid")


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

    unknown = sorted(set(metric_sets) - set(METRIC_SETS))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; choose from {list(METRIC_SETS)}")
    out = {}
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
    if "entropy" in metric_sets:
        per_sample = M.unigram_entropy_per_sample(x).numpy()
        out["entropy"] = {"value": float(per_sample.mean()), "interval": M.bootstrap_interval(per_sample, seed=seed)}
        if backbone_info.get("task"):
            data = _task(backbone_info).sample_corpus(len(x), seed=12345)[:, :length]
            out["data_entropy"] = {"value": M.unigram_entropy(data), "interval": None}
    if "countdown" in metric_sets:
        rates = M.countdown_error_rates(x)
        flags = M.countdown_violations(x).any(-1).double().numpy()
        out["countdown_error_any"] = {"value": rates["error_rate_any"], "interval": M.bootstrap_interval(flags, seed=seed)}
        out["countdown_error_transitions"] = {"value": rates["error_rate_per_transition"], "interval": None}
    if "frechet" in metric_sets:
        from .tasks.digits import to_images

        task = _task(backbone_info)
        classifier = M.DigitsClassifier.load_or_train(cache_dir, seed=0) if cache_dir else M.DigitsClassifier.train(0)
        out["frechet_digits"] = {"value": M.digits_frechet_distance(to_images(x), to_images(task.test), classifier),
                                 "interval": None}
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
    return out
