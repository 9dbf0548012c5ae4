"""A small classifier of scikit-learn's 8x8 digits whose hidden layer serves as features for a
'Frechet distance (digits classifier features)' (never called FID: it is not Inception).

Data: `sklearn.datasets.load_digits` (1797 images, grey levels 0..16, labels 0..9). Split as
the `digits` task does: a permutation from argsort of float64 uniforms of
`torch.Generator().manual_seed(seed)`; the first round(0.2 * 1797) = 359 images are the test
split, so with the same seed the classifier never sees the task's test images.
Model: MLP 64 -> 128 -> 64 -> 10 with ReLU; inputs are grey levels / 16. Features: the 64
post-ReLU activations of the second layer. Training: full-batch Adam (lr 1e-2, weight decay
1e-4), 300 steps, weights initialised under `torch.manual_seed(seed)` inside a forked RNG
(the global RNG is left alone); deterministic on CPU; about a second on one core.
Cache: the weights as safetensors at a path the caller gives, with the seed, the test
accuracy and the architecture in the file's metadata.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

LABEL = "Frechet distance (digits classifier features)"
LEVELS = 17
HIDDEN = (128, 64)
TEST_FRACTION = 0.2
STEPS = 300
FORMAT = "lsd-digits-classifier/1"


class _MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, HIDDEN[0])
        self.fc2 = torch.nn.Linear(HIDDEN[0], HIDDEN[1])
        self.out = torch.nn.Linear(HIDDEN[1], 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc2(torch.relu(self.fc1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


def _digits(seed: int):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(np.asarray(data.data, dtype=np.float32) / (LEVELS - 1))
    y = torch.from_numpy(np.asarray(data.target, dtype=np.int64))
    n_test = int(round(TEST_FRACTION * len(x)))
    perm = torch.argsort(torch.rand(len(x), generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    test_idx, _ = torch.sort(perm[:n_test])
    train_idx, _ = torch.sort(perm[n_test:])
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _as_inputs(images) -> torch.Tensor:
    """Tokens/grey levels 0..16 (integers) or floats in [0, 1]; shape [n, 64] or [n, 8, 8]."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.dim() == 3 and tuple(x.shape[1:]) == (8, 8):
        x = x.reshape(x.shape[0], 64)
    if x.dim() != 2 or x.shape[1] != 64:
        raise ValueError(f"digits features: expected images [n, 64] or [n, 8, 8], got shape {tuple(x.shape)}")
    if x.dtype == torch.bool:
        raise ValueError("digits features: boolean images are not supported")
    if not x.dtype.is_floating_point:
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= LEVELS):
            raise ValueError(f"digits features: integer grey levels must lie in [0, {LEVELS - 1}], got range "
                             f"[{int(x.min())}, {int(x.max())}]")
        return x.float() / (LEVELS - 1)
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError("digits features: float images must lie in [0, 1] (grey level / 16)")
    return x.float()


class DigitsClassifier:
    """Use `DigitsClassifier.load_or_train(path, seed)`; `features(images) -> np.ndarray [n, 64]`."""

    label = LABEL

    def __init__(self, model: _MLP, seed: int, test_accuracy: float):
        self.model = model.eval()
        self.seed, self.test_accuracy = int(seed), float(test_accuracy)

    @classmethod
    def train(cls, seed: int = 0) -> "DigitsClassifier":
        xtr, ytr, xte, yte = _digits(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _MLP()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
        model.train()
        for _ in range(STEPS):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xtr), ytr).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xte).argmax(1) == yte).float().mean())
        return cls(model, seed, acc)

    def save(self, path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, tmp, metadata={"format": FORMAT, "seed": str(self.seed),
                                            "test_accuracy": repr(self.test_accuracy),
                                            "hidden": ",".join(map(str, HIDDEN)), "steps": str(STEPS)})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path) -> "DigitsClassifier":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line error
            raise ValueError(f"{path}: not a digits classifier checkpoint ({type(err).__name__}: {err})") from None
        if meta.get("format") != FORMAT or meta.get("hidden") != ",".join(map(str, HIDDEN)):
            raise ValueError(f"{path}: not a {FORMAT} checkpoint with hidden sizes {HIDDEN} (metadata {meta})")
        model = _MLP()
        model.load_state_dict(state)
        return cls(model, int(meta["seed"]), float(meta["test_accuracy"]))

    @classmethod
    def load_or_train(cls, path, seed: int = 0) -> "DigitsClassifier":
        """Load the classifier cached at `path` (it must have been trained with `seed`), or train and cache it."""
        path = Path(path)
        if path.is_file():
            clf = cls.load(path)
            if clf.seed != seed:
                raise ValueError(f"{path}: cached digits classifier was trained with seed {clf.seed}, not {seed}; "
                                 f"use another path or delete it")
            return clf
        clf = cls.train(seed)
        clf.save(path)
        return clf

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        return self.model.features(_as_inputs(images)).double().numpy()

    @torch.no_grad()
    def predict(self, images) -> np.ndarray:
        return self.model(_as_inputs(images)).argmax(1).numpy()

    def describe(self) -> dict:
        return {"feature_extractor": "digits MLP classifier", "label": LABEL, "seed": self.seed,
                "test_accuracy": self.test_accuracy, "dims": HIDDEN[1]}


def digits_frechet_distance(images_a, images_b, classifier: DigitsClassifier) -> float:
    """Frechet distance between Gaussian fits of the classifier features of two image sets."""
    from .frechet import frechet_distance_features

    return frechet_distance_features(classifier.features(images_a), classifier.features(images_b))
