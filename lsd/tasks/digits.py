"""Digits: scikit-learn's bundled 8x8 handwritten digits as 64-token sequences.

`sklearn.datasets.load_digits` ships with scikit-learn (no download): 1797 images of 8x8
pixels with integer grey values 0..16. Each image becomes 64 tokens in row-major order
over a vocabulary of 17 grey levels (token = grey value). Meant for the uniform graph
(every token is a real grey level; no mask). The train/test split is a permutation (argsort of
uniforms from torch.Generator(seed)); the first round(test_fraction * 1797) images of it are the
test split, the rest the training split (each kept in the dataset's original order).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..io import atomic_write_file

DEFAULTS = {"seed": 0, "test_fraction": 0.2}
LEVELS = 17
SIDE = 8


def _load() -> np.ndarray:
    from sklearn.datasets import load_digits

    data = load_digits().data  # [1797, 64] float with integer values 0..16
    tokens = np.rint(data).astype(np.int64)
    if tokens.min() < 0 or tokens.max() >= LEVELS or not np.array_equal(tokens, data):
        raise ValueError("digits: sklearn's load_digits returned values outside the integers 0..16")
    return tokens


class Digits:
    """Digits(config=None, **overrides): config keys {seed (default 0), test_fraction (default 0.2)}.

    Attributes: `train`, `test` LongTensors [n, 64] of tokens 0..16; vocab 17, length 64."""

    name = "digits"
    graph_type = "uniform"
    vocab = LEVELS
    length = SIDE * SIDE

    def __init__(self, config: dict | None = None, **overrides):
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"digits: config must be a dict, got {type(config).__name__}")
        merged = {**DEFAULTS, **(config or {}), **overrides}
        unknown = sorted(set(merged) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"digits: unknown config key(s) {unknown}; known: {sorted(DEFAULTS)}")
        seed, frac = merged["seed"], merged["test_fraction"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"digits.seed: must be an integer >= 0, got {seed!r}")
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
            raise ValueError(f"digits.test_fraction: must be a number in (0, 1), got {frac!r}")
        self.seed, self.test_fraction = seed, float(frac)
        tokens = torch.from_numpy(_load())
        self.all = tokens
        n_test = int(round(self.test_fraction * len(tokens)))
        g = torch.Generator().manual_seed(seed)
        perm = torch.argsort(torch.rand(len(tokens), generator=g, dtype=torch.float64))
        test_idx, _ = torch.sort(perm[:n_test])
        train_idx, _ = torch.sort(perm[n_test:])
        self.train, self.test = tokens[train_idx], tokens[test_idx]
        self.train_index, self.test_index = train_idx, test_idx

    def config(self) -> dict:
        return {"seed": self.seed, "test_fraction": self.test_fraction}

    def fingerprint(self) -> str:
        """sha256 (hex, 16 chars) of the token data and of the test indices."""
        h = hashlib.sha256(b"digits/1")
        h.update(np.ascontiguousarray(self.all.numpy(), dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(self.test_index.numpy(), dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    def make_graph(self):
        from ..diffusion.graph import UniformGraph

        return UniformGraph(LEVELS)

    def sample_corpus(self, n: int, seed: int = 0, split: str = "train") -> torch.Tensor:
        """n distinct images [n, 64] of `split`, drawn without replacement with torch.Generator(seed)."""
        if split not in ("train", "test"):
            raise ValueError(f"digits.split: unknown {split!r}; choose 'train' or 'test'")
        pool = self.train if split == "train" else self.test
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= len(pool):
            raise ValueError(f"digits.sample_corpus: n must be an integer in [0, {len(pool)}] "
                             f"for split {split!r}, got {n!r}")
        g = torch.Generator().manual_seed(int(seed))
        perm = torch.argsort(torch.rand(len(pool), generator=g, dtype=torch.float64))
        return pool[perm[:n]]

    def __repr__(self) -> str:
        return f"Digits({self.config()})"


def to_images(tokens) -> np.ndarray:
    """Tokens [n, 64] (tensor or array, values 0..16) -> float64 array [n, 8, 8] in [0, 1] (value / 16)."""
    x = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if x.ndim != 2 or x.shape[1] != SIDE * SIDE:
        raise ValueError(f"digits.to_images: expected tokens [n, {SIDE * SIDE}], got shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"digits.to_images: expected integer tokens, got {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= LEVELS):
        raise ValueError(f"digits.to_images: tokens must lie in [0, {LEVELS - 1}], got range [{x.min()}, {x.max()}]")
    return x.reshape(-1, SIDE, SIDE).astype(np.float64) / (LEVELS - 1)


def save_grid(tokens, path, ncols: int | None = None) -> None:
    """Write the images of `tokens` [n, 64] as one PNG grid at `path` (Agg; atomic write).

    Dark ink on white (grey value 16 is black), a white gutter of one pixel between images,
    `ncols` images per row (default ceil(sqrt(n)))."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = to_images(tokens)
    n = len(images)
    if n == 0:
        raise ValueError("digits.save_grid: no images to draw")
    ncols = int(ncols) if ncols else int(np.ceil(np.sqrt(n)))
    if ncols < 1:
        raise ValueError(f"digits.save_grid: ncols must be >= 1, got {ncols}")
    nrows = -(-n // ncols)
    cell = SIDE + 1
    grid = np.zeros((nrows * cell + 1, ncols * cell + 1))
    for k, img in enumerate(images):
        r, c = divmod(k, ncols)
        grid[1 + r * cell:1 + r * cell + SIDE, 1 + c * cell:1 + c * cell + SIDE] = img
    scale = 8  # output pixels per image pixel
    fig = Figure(figsize=(grid.shape[1] * scale / 100, grid.shape[0] * scale / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    atomic_write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
