"""A small classifier of scikit-learn's 8x8 digits whose 10 logits serve as features for a
'Frechet distance (digits classifier features)' (never called FID: it is not Inception).

Data: `sklearn.datasets.load_digits` (1797 images, grey levels 0..16, labels 0..9). Split as
the `digits` task does: a permutation from argsort of float64 uniforms of
`torch.Generator().manual_seed(seed)`; the first round(0.2 * 1797) = 359 images are the test
split, so with the same seed the classifier never sees the task's test images.
Model: MLP 64 -> 128 -> 64 -> 10 with ReLU, float64; inputs are grey levels / 16.

Features: the 10 logits. The evaluation grid fits a Gaussian to 24 samples; in the 64 hidden
activations that covariance is singular (rank <= 23, and some units are dead even on the 359
test images) and the distance moved by tens of percent with the last bits of the features. In 10
dimensions the covariance of 24 samples has a condition number of about 2e3 on real digits
(`lsd.metrics.frechet.frechet_fit` records it and flags a fit with fewer than 2 samples per
dimension).

Weights: committed as `checkpoints/digits-classifier.safetensors` (`CHECKPOINT`), whose
content hash (`weights_sha256`: tensor names, dtypes, shapes and bytes, independent of the file
container) is pinned in `WEIGHTS_SHA256` and checked on every load, so every process and
machine scores with the same weights. Fallback when that file is absent: train it (full-batch
Adam, lr 1e-2, weight decay 1e-4, 300 steps, seed 0, in float64 on exactly one thread, about
7 s), write it where the caller says, and check that the result has the pinned hash; a machine
whose float64 arithmetic differs gets a one-line error asking for the committed file instead of
silently different numbers.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import torch

LABEL = "Frechet distance (digits classifier features)"
LEVELS = 17
HIDDEN = (128, 64)
FEATURE_DIMS = 10  # the logits
TEST_FRACTION = 0.2
STEPS = 300
FORMAT = "lsd-digits-classifier/2"  # /1: float32 weights, 64 hidden features, trained at run time
CHECKPOINT_NAME = "digits-classifier.safetensors"
WEIGHTS_SHA256 = "d6fcbb83ae2a47ce387484cf1252ebbb59e2a96ab304010fe2d719e382846226"  # seed 0


def checkpoint_path() -> Path:
    """`checkpoints/digits-classifier.safetensors` (or under $LSD_CHECKPOINTS)."""
    from ..backbones.trained import checkpoints_root

    return checkpoints_root() / CHECKPOINT_NAME


class _MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, HIDDEN[0], dtype=torch.float64)
        self.fc2 = torch.nn.Linear(HIDDEN[0], HIDDEN[1], dtype=torch.float64)
        self.out = torch.nn.Linear(HIDDEN[1], 10, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _digits(seed: int):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(np.asarray(data.data, dtype=np.float64) / (LEVELS - 1))
    y = torch.from_numpy(np.asarray(data.target, dtype=np.int64))
    n_test = int(round(TEST_FRACTION * len(x)))
    perm = torch.argsort(torch.rand(len(x), generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    test_idx, _ = torch.sort(perm[:n_test])
    train_idx, _ = torch.sort(perm[n_test:])
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _as_inputs(images) -> torch.Tensor:
    """Tokens/grey levels 0..16 (integers) or floats in [0, 1]; shape [n, 64] or [n, 8, 8]; float64 out."""
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
        return x.double() / (LEVELS - 1)
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError("digits features: float images must lie in [0, 1] (grey level / 16)")
    return x.double()


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread (a float64 sum is then added up in one fixed order), restoring the
    caller's thread count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def weights_sha256(state: dict) -> str:
    """Content hash of a state dict: sha256 over (name, dtype, shape, bytes) in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{str(t.dtype).replace('torch.', '')}|{list(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class DigitsClassifier:
    """`DigitsClassifier.pinned()`: the committed classifier; `features(images) -> np.ndarray [n, 10]`."""

    label = LABEL

    def __init__(self, model: _MLP, seed: int, test_accuracy: float):
        self.model = model.eval()
        self.seed, self.test_accuracy = int(seed), float(test_accuracy)
        self.sha256 = weights_sha256(self.model.state_dict())

    @classmethod
    def train(cls, seed: int = 0) -> "DigitsClassifier":
        """Train from scratch in float64 on one thread (deterministic on a given machine)."""
        xtr, ytr, xte, yte = _digits(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _MLP()
        with single_thread():
            opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
            model.train()
            for _ in range(STEPS):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xtr), ytr).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = float((model(xte).argmax(1) == yte).double().mean())
        return cls(model, seed, acc)

    def save(self, path) -> None:
        from safetensors.torch import save_file

        from ..io import atomic_write_file

        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        metadata = {"format": FORMAT, "seed": str(self.seed), "test_accuracy": repr(self.test_accuracy),
                    "hidden": ",".join(map(str, HIDDEN)), "steps": str(STEPS), "weights_sha256": self.sha256}
        # a committed file, readable like the other checkpoints whatever the umask
        atomic_write_file(path, lambda tmp: save_file(state, tmp, metadata=metadata), mode=0o644)

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
            raise ValueError(f"{path}: not a {FORMAT} checkpoint with hidden sizes {HIDDEN} (metadata {meta}); "
                             f"delete it to retrain")
        model = _MLP()
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path}: digits classifier weights do not fit the model ({str(err).splitlines()[0]})") \
                from None
        return cls(model, int(meta["seed"]), float(meta["test_accuracy"]))

    @classmethod
    def load_or_train(cls, path, seed: int = 0) -> "DigitsClassifier":
        """Load the classifier cached at `path` (it must have been trained with `seed`), or train and cache it.
        The seed-0 classifier must have the pinned weights (`pinned`)."""
        path = Path(path)
        if path.is_file():
            clf = cls.load(path)
            if clf.seed != seed:
                raise ValueError(f"{path}: cached digits classifier was trained with seed {clf.seed}, not {seed}; "
                                 f"use another path or delete it")
        else:
            clf = cls.train(seed)
            clf.save(path)
        if seed == 0 and clf.sha256 != WEIGHTS_SHA256:
            raise ValueError(f"{path}: digits classifier weights have sha256 {clf.sha256[:16]}..., not the pinned "
                             f"{WEIGHTS_SHA256[:16]}... (float64 training differs on this machine or the file is "
                             f"stale); use the committed {CHECKPOINT_NAME} (git checkout checkpoints/)")
        return clf

    @classmethod
    def pinned(cls, cache=None) -> "DigitsClassifier":
        """The committed classifier (`checkpoint_path()`), checked against `WEIGHTS_SHA256`; when that
        file is absent, the one at `cache` (trained and written there if absent too, then checked)."""
        committed = checkpoint_path()
        if committed.is_file() or cache is None:
            return cls.load_or_train(committed, seed=0)
        return cls.load_or_train(cache, seed=0)

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        """The 10 logits [n, 10] (float64)."""
        return self.model(_as_inputs(images)).numpy()

    @torch.no_grad()
    def predict(self, images) -> np.ndarray:
        return self.model(_as_inputs(images)).argmax(1).numpy()

    def describe(self) -> dict:
        return {"feature_extractor": "digits MLP classifier logits", "label": LABEL, "seed": self.seed,
                "test_accuracy": self.test_accuracy, "dims": FEATURE_DIMS, "weights_sha256": self.sha256}


def digits_frechet(images_a, images_b, classifier: DigitsClassifier) -> dict:
    """`lsd.metrics.frechet.frechet_fit` of the classifier features of two image sets: the distance,
    the sample sizes, the covariances' condition numbers and the `well_conditioned` flag."""
    from .frechet import frechet_fit

    return frechet_fit(classifier.features(images_a), classifier.features(images_b))


def digits_frechet_distance(images_a, images_b, classifier: DigitsClassifier) -> float:
    """Frechet distance between Gaussian fits of the classifier features of two image sets."""
    return digits_frechet(images_a, images_b, classifier)["value"]
