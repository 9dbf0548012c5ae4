"""The trained backbones against their goals (`lsd train` recipes, checkpoints/<name>/).

For each backbone, uniform Euler at 1024 and at 8 steps (NFE = network calls):
- oracle-text (tiny-sedd-text, tiny-radd-text): oracle perplexity exp(mean NLL / L) under the
  true language (`OracleText.nll`), goal <= 1.5 x exp(entropy_rate()) at 1024 steps; the
  exact denoiser (`lsd.backbones.oracle_exact`) is run beside them as the reference; plus
  the mean KL(exact posterior || model posterior) per masked token at three mask levels.
- countdown (tiny-sedd-countdown): share of samples violating the rule, goal <= 5 %
  at 1024 steps, and the per-transition violation share; at 1024 steps with three samplers
  (left-to-right, spread, uniform Euler; `countdown_samplers`), the goal judged on the first
  with --goal-samples samples and an exact 95% interval.
- digits (tiny-sedd-digits): a grid of samples in benchmarks/digits_samples.png (and the
  8-step grid in benchmarks/digits_samples_8.png), plus the mean per-pixel grey-level
  distance of each sample to its nearest training image (a memorisation / quality probe).
Every backbone: 8 steps must be clearly worse than 1024 steps.

Prints the numbers and writes benchmarks/BACKBONES.md.

    python benchmarks/backbones.py [--samples 64] [--threads 1] [--only NAME ...] [--dir NAME=PATH ...]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import lsd
from lsd.backbones.trained import TRAINED, load_trained

from benchmarks.common import masked_at_levels

HERE = Path(__file__).resolve().parent
STEPS = (1024, 8)


def load(name: str, directories: dict):
    if name in directories:
        from lsd.backbones.dit import as_score_model
        from lsd.backbones.hub import load_dit
        from lsd.backbones.registry import Backbone

        net = load_dit(directories[name])
        cfg = net.config
        return Backbone(name, as_score_model(net), cfg.make_graph(), cfg.make_noise(), cfg.length, net.origin)
    return load_trained(name)


def draw(bb, steps, n: int, seed: int, batch: int) -> tuple[torch.Tensor, float]:
    """n samples with uniform Euler at `steps` steps, or with the `lsd.Schedule` given instead."""
    schedule = steps if isinstance(steps, lsd.Schedule) else lsd.Schedule.uniform("euler", steps)
    start = time.perf_counter()
    x = lsd.sample(bb.model, schedule, graph=bb.graph, noise=bb.noise, num_samples=n, length=bb.length,
                   seed=seed, batch_size=batch)
    return x, time.perf_counter() - start


@torch.no_grad()
def posterior_kl(bb, task, levels=(0.2, 0.5, 0.8), n: int = 64, seed: int = 1) -> dict:
    """Mean KL(exact || model) of p(x0_i | x_t) over masked positions, per masked fraction."""
    from lsd.backbones.oracle_exact import OracleDenoiser

    exact = OracleDenoiser(task)
    out = {}
    for level, masked, x_t, sigma_bar in masked_at_levels(task.sample_corpus(n, seed=seed), task.vocab, levels, seed):
        log_p = exact(x_t, sigma_bar)
        log_q = torch.log_softmax(bb.model(x_t, sigma_bar).double()[..., : task.vocab], dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)
        out[level] = float(kl[masked].mean())
    return out


def text(bb, args, rows, lines):
    from lsd.backbones.oracle_exact import oracle_exact_score
    from lsd.backbones.registry import Backbone
    from lsd.tasks.oracle_text import OracleText

    task = OracleText()
    floor = task.entropy_rate()
    goal = 1.5 * math.exp(floor)
    exact = Backbone("exact", oracle_exact_score(task), bb.graph, bb.noise, task.length)
    kl = posterior_kl(bb, task)
    result = {}
    for steps in STEPS:
        for who, model in (("model", bb), ("exact", exact)):
            x, wall = draw(model, steps, args.samples, args.seed, args.batch)
            nll = float(task.nll(x).mean()) / task.length
            result[(who, steps)] = nll
            print(f"  {bb.name:<20} {who:<6} Euler {steps:>4} steps: {nll:.3f} nats/token, oracle PPL "
                  f"{math.exp(nll):6.2f}  ({wall:.0f} s)", flush=True)
    ok = math.exp(result[("model", 1024)]) <= goal and result[("model", 8)] > result[("model", 1024)] + 0.1
    rows.append((bb.name, f"oracle PPL {math.exp(result[('model', 1024)]):.3f} "
                 f"({result[('model', 1024)]:.3f} nats/token)",
                 f"oracle PPL {math.exp(result[('model', 8)]):.2f} ({result[('model', 8)]:.3f})",
                 f"<= {goal:.3f} at 1024 steps", "yes" if ok else "NO"))
    lines.append(f"- `{bb.name}`: exact denoiser on the same seeds: {result[('exact', 1024)]:.3f} nats/token at "
                 f"1024 steps, {result[('exact', 8)]:.3f} at 8; language entropy rate {floor:.3f} "
                 f"(PPL {math.exp(floor):.2f}). KL(exact || model) per masked token at mask rate "
                 + ", ".join(f"{k:.1f}: {v:.3f}" for k, v in kl.items()) + " nats.")


class ChainDenoiser:
    """Exact log p(x0_i = y | x_t) [B, L, V] of a first-order Markov chain (start law `initial`,
    transition matrix `transition`) on the absorbing graph (mask id V), by forward-backward with
    messages normalised to sum 1. Contradictory evidence (two revealed tokens no path joins) is
    kept finite by a 1e-9 leak in the transition."""

    def __init__(self, initial: torch.Tensor, transition: torch.Tensor, leak: float = 1e-9):
        V = len(initial)
        self.initial, self.vocab = initial.double(), V
        self.transition = (1.0 - leak) * transition.double() + leak / V

    def __call__(self, x_t, sigma_bar):
        V, T = self.vocab, self.transition
        B, L = x_t.shape
        onehot = torch.nn.functional.one_hot(x_t.clamp_max(V - 1), V).double()
        e = torch.where((x_t == V)[..., None], torch.ones_like(onehot), onehot)
        alpha = torch.empty_like(e)
        a = self.initial * e[:, 0]
        alpha[:, 0] = a / a.sum(-1, keepdim=True)
        for i in range(1, L):
            a = (alpha[:, i - 1] @ T) * e[:, i]
            alpha[:, i] = a / a.sum(-1, keepdim=True)
        post = torch.empty_like(e)
        post[:, -1] = alpha[:, -1]
        beta = torch.ones(B, V, dtype=torch.float64)
        for i in range(L - 2, -1, -1):
            b = (e[:, i + 1] * beta) @ T.T
            beta = b / b.sum(-1, keepdim=True)
            p = alpha[:, i] * beta
            post[:, i] = p / p.sum(-1, keepdim=True)
        return torch.log(post).clamp_min(-1e4)


def countdown_exact(task) -> "lsd.DenoiserScore":
    """The exact score of the countdown language: a Markov chain on V values where a != 0 goes
    to a - 1 and 0 restarts uniformly; the first token is uniform (a fresh countdown)."""
    V = task.vocab
    T = torch.zeros(V, V, dtype=torch.float64)
    T[torch.arange(1, V), torch.arange(0, V - 1)] = 1.0
    T[0] = 1.0 / V
    return lsd.DenoiserScore(ChainDenoiser(torch.full((V,), 1.0 / V), T), lsd.AbsorbingGraph(V))


def countdown_samplers(steps: int) -> dict:
    """The 1024-step samplers the countdown goal is measured with (same grid, one call per step)."""
    euler = lsd.Schedule.uniform("euler", steps)
    return {"left-to-right": lsd.Schedule("euler", euler.times, selection={"rule": "left_to_right"}),
            "spread (theta = inf)": lsd.Schedule("euler", euler.times,
                                                 selection={"rule": "spread", "strength": math.inf}),
            "uniform Euler": euler}


def share_interval(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a share k / n."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def countdown(bb, args, rows, lines):
    """Goal: <= 5% of samples break the rule with a 1024-step sampler. Uniform Euler cannot reach it
    even with exact scores (tokens revealed in the same step are drawn independently), so the goal is
    judged on the left-to-right selection rule at 1024 steps (one token per step, exact for exact
    scores), with the spread rule and uniform Euler beside it, each also run on the exact denoiser."""
    from lsd.backbones.registry import Backbone
    from lsd.tasks.countdown import Countdown

    task = Countdown()
    exact = Backbone("exact", countdown_exact(task), bb.graph, bb.noise, task.length)
    result = {}
    cells = list(countdown_samplers(STEPS[0]).items())
    cells.append(("uniform Euler 8", lsd.Schedule.uniform("euler", STEPS[1])))
    for label, schedule in cells:
        for who, model in (("model", bb), ("exact", exact)):
            n = args.goal_samples if (who, label) == ("model", "left-to-right") else args.samples
            x, wall = draw(model, schedule, n, args.seed, args.batch)
            violates = task.violates(x)
            result[(who, label)] = (int(violates.sum()), n, float(task.violation_share(x).mean()))
            print(f"  {bb.name:<20} {who:<6} {label:<22} {schedule.nfe:>4} steps: {int(violates.sum())}/{n} samples "
                  f"violate ({100 * violates.double().mean():.1f}%), {100 * result[(who, label)][2]:.3f}% of "
                  f"transitions  ({wall:.0f} s)", flush=True)

    def share(who, label):
        k, n, per_transition = result[(who, label)]
        return k / n, per_transition

    k, n, _ = result[("model", "left-to-right")]
    low, high = share_interval(k, n)
    goal_share = k / n
    ok = goal_share <= 0.05 and share("model", "uniform Euler 8")[0] > goal_share + 0.2
    rows.append((bb.name, f"left-to-right: {100 * goal_share:.1f}% of {n} samples violate (95% CI "
                 f"{100 * low:.1f}-{100 * high:.1f}%); spread {100 * share('model', 'spread (theta = inf)')[0]:.1f}%, "
                 f"uniform Euler {100 * share('model', 'uniform Euler')[0]:.1f}%",
                 f"{100 * share('model', 'uniform Euler 8')[0]:.1f}% ({100 * share('model', 'uniform Euler 8')[1]:.2f}% "
                 f"transitions)", "<= 5% at 1024 steps", "yes" if ok else "NO"))
    per = "; ".join(f"{label} {100 * share('model', label)[0]:.1f}% of samples ({100 * share('model', label)[1]:.3f}% "
                    f"of transitions), exact denoiser {100 * share('exact', label)[0]:.1f}%"
                    for label, _ in cells[:3])
    lines.append(f"- `{bb.name}` at 1024 steps: {per}. Uniform Euler breaks the rule even with exact scores "
                 f"(tokens revealed in the same step are drawn independently; about 7 pairs of positions at most 31 "
                 f"apart, a countdown's reach, share a step per sample), so the goal is judged with one token per "
                 f"step: the left-to-right rule (`lsd.selection`; exact for exact scores, and each token needs only "
                 f"its left neighbour), {args.goal_samples} samples. The spread rule reveals far-apart positions "
                 f"first, so the model must place a value from a token 10-30 positions away, where it errs most.")


def digits(bb, args, rows, lines):
    from lsd.metrics.digits_features import DigitsClassifier, _as_inputs, digits_frechet_distance
    from lsd.tasks.digits import Digits, save_grid

    task = Digits()
    clf = DigitsClassifier.train(seed=task.seed)  # never sees the task's test split

    def confidence(x):  # mean top-class probability of the digits classifier
        with torch.no_grad():
            return float(torch.softmax(clf.model(_as_inputs(x)), -1).amax(-1).mean())

    train = task.train.double()
    result = {}
    stem = "digits_samples" if bb.name == "tiny-sedd-digits" else f"{bb.name}_samples"
    for steps in STEPS:
        x, wall = draw(bb, steps, args.samples, args.seed, args.batch)
        path = HERE / (f"{stem}.png" if steps == 1024 else f"{stem}_{steps}.png")
        save_grid(x, path)
        dist = torch.cdist(x.double(), train, p=1).min(1).values / task.length  # grey levels per pixel
        result[steps] = (digits_frechet_distance(x, task.test, clf), confidence(x), float(dist.mean()))
        print(f"  {bb.name:<20} Euler {steps:>4} steps: Frechet (classifier features) to the test split "
              f"{result[steps][0]:.1f}, classifier confidence {result[steps][1]:.3f}, mean L1 to nearest training "
              f"image {result[steps][2]:.2f} grey levels/pixel, grid {path.name}  ({wall:.0f} s)", flush=True)
    ref = task.sample_corpus(args.samples, seed=args.seed, split="test")
    ref_fd, ref_conf = digits_frechet_distance(ref, task.test, clf), confidence(ref)
    ref_l1 = float((torch.cdist(ref.double(), train, p=1).min(1).values / task.length).mean())
    ok = result[8][0] > result[1024][0]
    rows.append((bb.name, f"Frechet {result[1024][0]:.1f}, confidence {result[1024][1]:.2f}, `{stem}.png`",
                 f"Frechet {result[8][0]:.1f}, confidence {result[8][1]:.2f}, `{stem}_8.png`",
                 "recognisable digits", "yes (see grid)" if ok else "NO"))
    lines.append(f"- `{bb.name}`: Frechet distance between Gaussian fits of digits-classifier features "
                 f"(`lsd.metrics.digits_features`, not FID) of {args.samples} samples and the 359 test images; "
                 f"{args.samples} real test images score {ref_fd:.1f} (the floor at this sample count), with "
                 f"classifier confidence {ref_conf:.2f} and L1 {ref_l1:.2f} grey levels/pixel to the nearest training "
                 f"image (samples at 1024 steps: {result[1024][2]:.2f}, at 8: {result[8][2]:.2f}; 0 would mean copies).")


TASK_OF = {"tiny-sedd-text": text, "tiny-radd-text": text, "tiny-sedd-countdown": countdown,
           "tiny-sedd-digits": digits, "tiny-tauldr-digits": digits}


def recipe_table() -> list[str]:
    """One line per committed checkpoint: architecture, steps, batch, training time (from training.json)."""
    from lsd.backbones.trained import checkpoint_dir

    out = ["## Recipes as trained", "",
           "| backbone | network | loss | steps x batch | train CPU time | wall (shared machine) | params | file |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in TRAINED:
        path = checkpoint_dir(name) / "training.json"
        if not path.is_file():
            continue
        rec = json.loads(path.read_text())
        m, t = rec["model"], rec["recipe"]["train"]
        extras = [f"conv {m['conv_kernel']}" if m.get("conv_kernel") else "",
                  "rotary values" if m.get("rotary_values") else "", "abs. positions" if m.get("pos_embed") else ""]
        if "kind" in m:  # the SEDD/RADD DiT
            net = (f"{m['kind']} {m['graph']}, hidden {m['hidden_size']}, {m['n_blocks']} blocks x {m['n_heads']} "
                   f"heads, MLP x{m['mlp_ratio']}" + "".join(f", {e}" for e in extras if e))
        else:  # the tauLDR UNet (x0-predicting, on a CTMC graph)
            spec = rec["recipe"]["model"]
            net = (f"tauLDR UNet on the {rec['recipe']['graph']['type']} graph, ch {spec['ch']}, mult "
                   f"{'/'.join(map(str, spec['ch_mult']))}, {spec['num_res_blocks']} res blocks per scale")
        size = (checkpoint_dir(name) / "model.safetensors").stat().st_size / 2**20
        out.append(f"| `{name}` | {net} | {rec['recipe']['loss']} | {rec['steps']} x {t['batch_size']} | "
                   f"{rec.get('train_cpu_s', 0) / 60:.1f} min | {rec['train_time_s'] / 60:.1f} min | "
                   f"{rec['parameters'] / 1e6:.2f} M | {size:.1f} MiB |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--goal-samples", type=int, default=256,
                    help="samples of the countdown goal's sampler (left-to-right, 1024 steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", default=list(TRAINED), choices=list(TRAINED))
    ap.add_argument("--dir", nargs="+", default=[], metavar="NAME=PATH", help="evaluate another checkpoint directory")
    ap.add_argument("--no-write", action="store_true", help="write neither BACKBONES.md nor backbones.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    directories = dict(item.split("=", 1) for item in args.dir)
    store = HERE / "backbones.json"
    results = json.loads(store.read_text()) if store.is_file() and not args.no_write else {}
    for name in args.only:
        rows, lines = [], []
        start = time.perf_counter()
        bb = load(name, directories)
        print(f"{name}: {bb.info.get('steps', '?')} training steps", flush=True)
        TASK_OF[name](bb, args, rows, lines)
        results[name] = {"row": rows[0], "notes": lines, "samples": args.samples, "seed": args.seed,
                         "threads": args.threads, "minutes": round((time.perf_counter() - start) / 60, 1)}
    table = ["| backbone | 1024 steps (uniform Euler unless named) | uniform Euler, 8 steps | goal | met | bench time |",
             "| --- | --- | --- | --- | --- | --- |"]
    notes = []
    for name in TRAINED:
        if name in results:
            r = results[name]
            table.append(f"| `{name}` | {r['row'][1]} | {r['row'][2]} | {r['row'][3]} | {r['row'][4]} | "
                         f"{r['minutes']} min |")
            notes += r["notes"]
    print("\n".join(table))
    if not args.no_write:
        from lsd.io import atomic_write_json, atomic_write_text

        atomic_write_json(store, results)
        samples = sorted({r["samples"] for r in results.values()})
        text_md = ["# Trained backbones (`lsd train`)", "",
                   f"`python benchmarks/backbones.py --samples {args.samples} --threads {args.threads}` "
                   f"(samples per cell: {samples}, seed {args.seed}, uniform Euler unless named, NFE = steps, on "
                   f"the shared 2-core CI machine; `--only NAME` reruns one backbone, the rest is kept in "
                   f"benchmarks/backbones.json). Recipes: `lsd.training.RECIPES`; checkpoints: `checkpoints/<name>/`.", "",
                   *table, "", *notes, "", *recipe_table(), ""]
        atomic_write_text(HERE / "BACKBONES.md", "\n".join(text_md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
