"""Train the small backbones of this harness (`lsd train --recipe NAME`): the subcommand's
arguments and its run (losses in `lsd.training.losses`, recipes in `lsd.training.recipes`,
the loop in `lsd.training.trainer`)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .recipes import RECIPES
from .trainer import STATE_FILE, TRAINING_FILE, train


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `lsd train`."""
    from ..argtypes import positive_int

    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES), help="backbone to train")
    parser.add_argument("--out", default=None, help="output directory (default: checkpoints/<recipe> in the repo)")
    parser.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    parser.add_argument("--threads", type=positive_int, default=argparse.SUPPRESS,
                        help="torch threads for this run (default: the global --threads or $LSD_THREADS)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    parser.add_argument("--keep-state", action="store_true", help="keep state.pt after the last step")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args) -> Path:
    """`lsd train`: train one recipe (see `configure_parser`)."""
    from ..backbones.trained import checkpoint_dir
    from ..io import check_output

    threads = getattr(args, "threads", None)
    if threads is not None:
        torch.set_num_threads(int(threads))
    out = Path(args.out) if args.out else checkpoint_dir(args.recipe)
    check_output(out, "--out", folder=True)
    if args.resume and not (out / STATE_FILE).is_file():
        raise FileNotFoundError(f"{out / STATE_FILE}: nothing to resume (train without --resume)")
    if not args.resume and (out / STATE_FILE).exists():
        raise ValueError(f"{out / STATE_FILE} exists: pass --resume to continue it, or another --out")
    start = time.perf_counter()
    path = train(args.recipe, out, steps=args.steps, device=args.device, resume=args.resume,
                 progress=not args.quiet, keep_state=args.keep_state)
    record = json.loads((path / TRAINING_FILE).read_text())
    print(f"wrote {path}: {args.recipe}, {record['steps']} steps, eval loss "
          f"{record['last'].get('eval_loss', float('nan')):.4f} nats/token, {time.perf_counter() - start:.0f} s")
    return path
