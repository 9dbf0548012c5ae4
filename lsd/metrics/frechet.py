"""Frechet distance between Gaussian fits of features; FID with pytorch-fid's Inception.

- `frechet_distance(mu1, sigma1, mu2, sigma2)`: d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)),
  computed by `pytorch_fid.fid_score.calculate_frechet_distance` (scipy.linalg.sqrtm; a
  diagonal offset when the product is singular; small imaginary parts dropped, large ones
  an error). If that function stops working with a newer SciPy (it passes `disp=`, which
  SciPy deprecates), the same algorithm runs here.
- `frechet_distance_features(a, b)`: the distance between Gaussian fits of two feature sets
  [n, d] (mean, covariance with ddof=1, as pytorch-fid), as FID computes it.
- `frechet_fit(a, b)`: the same distance by symmetric eigendecompositions only
  (`frechet_distance_symmetric`), with the sample sizes, the covariances' condition numbers
  and a `well_conditioned` flag (at least MIN_SAMPLES_PER_DIM samples per dimension, condition
  at most MAX_CONDITION). The `digits` task uses it with a small classifier's 10 logits
  (`lsd.metrics.digits_features`): that is a Frechet distance, never an FID.
- FID: 2048-d pool features of pytorch-fid's `InceptionV3` (the TF-FID weights). The weights
  are read from the torch hub cache, `$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`
  (`torch.hub.get_dir()`); this module checks that the file exists before building the
  network and never downloads it. It reads the file itself with `torch.load(weights_only=True)`
  and hands the tensors to pytorch-fid: pytorch-fid's own loader (torch.hub's
  `load_state_dict_from_url`) unpickles the file fully, so a crafted file in the cache would run
  code. The file's SHA-256 is recorded beside the statistics.
- `reference_statistics(path, features_fn)`: (mu, sigma) of a reference set, cached as `.npz`
  at `path` and written atomically.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                         + INCEPTION_WEIGHTS_FILE)
INCEPTION_DIMS = (64, 192, 768, 2048)


class FeatureExtractorUnavailable(RuntimeError):
    """The weights of a feature extractor are not available locally, or are refused (not plain tensors)."""


# ---------------------------------------------------------------------------------------
# Frechet distance
# ---------------------------------------------------------------------------------------
def _frechet_distance_local(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """The pytorch-fid algorithm, for SciPy versions its function no longer runs on."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes do not match: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {sigma1.shape} / {sigma2.shape}")
    from pytorch_fid.fid_score import calculate_frechet_distance

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # scipy's `disp` deprecation
            return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps))
    except TypeError as err:
        if "disp" not in str(err):
            raise
        return _frechet_distance_local(mu1, sigma1, mu2, sigma2, eps=eps)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d], covariance [d, d] with ddof=1) of features [n, d], n >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature_statistics: expected features [n >= 2, d], got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance_features(features_a, features_b) -> float:
    """Frechet distance between Gaussian fits of two feature sets [n_a, d] and [n_b, d]."""
    mu_a, s_a = feature_statistics(features_a)
    mu_b, s_b = feature_statistics(features_b)
    return frechet_distance(mu_a, s_a, mu_b, s_b)


# A Gaussian fit is trusted when every set has at least this many samples per feature dimension
# and both covariances have at most this condition number; otherwise the fit is flagged.
MIN_SAMPLES_PER_DIM = 2
MAX_CONDITION = 1e8


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (sigma + sigma.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_symmetric(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance with Tr (S1 S2)^(1/2) = sum of sqrt(eig(S1^(1/2) S2 S1^(1/2))): symmetric
    eigendecompositions only, so a perturbation of the covariances by e moves the value by at most
    about d sqrt(e) even when they are singular (scipy's sqrtm of the non-symmetric product S1 S2
    has no such bound; pytorch-fid then adds a diagonal offset). Same value as `frechet_distance`
    for well-conditioned covariances."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    root = _psd_sqrt(np.asarray(sigma1, np.float64))
    middle = root @ np.asarray(sigma2, np.float64) @ root
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (middle + middle.T)), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _condition(sigma: np.ndarray) -> float | None:
    """Condition number of a covariance; None when it is singular (JSON has no infinity)."""
    w = np.linalg.eigvalsh(0.5 * (sigma + sigma.T))
    return float(w[-1] / w[0]) if w[0] > 0 else None


def frechet_fit(features_a, features_b) -> dict:
    """Frechet distance between Gaussian fits of two feature sets [n_a, d] and [n_b, d], with what
    decides whether to trust it: {"value", "n_a", "n_b", "dims", "condition_a", "condition_b",
    "well_conditioned"}. well_conditioned is False when a set has fewer than MIN_SAMPLES_PER_DIM
    samples per dimension or a covariance's condition number exceeds MAX_CONDITION (None when
    singular); the value is still computed (`frechet_distance_symmetric`), and is then unstable
    under tiny changes of the features. Small-sample bias: the fitted means alone add
    Tr(S_a)/n_a + Tr(S_b)/n_b in expectation to ||mu_a - mu_b||^2, and the covariance term is biased
    too, so values are comparable only between fits of equal sample sizes."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_fit: expected features [n_a, d] and [n_b, d], got shapes {a.shape} and {b.shape}")
    mu_a, s_a = feature_statistics(a)
    mu_b, s_b = feature_statistics(b)
    dims = a.shape[1]
    cond_a, cond_b = _condition(s_a), _condition(s_b)
    enough = min(a.shape[0], b.shape[0]) >= MIN_SAMPLES_PER_DIM * dims
    return {"value": frechet_distance_symmetric(mu_a, s_a, mu_b, s_b), "n_a": int(a.shape[0]), "n_b": int(b.shape[0]),
            "dims": int(dims), "condition_a": cond_a, "condition_b": cond_b,
            "well_conditioned": bool(enough and None not in (cond_a, cond_b) and max(cond_a, cond_b) <= MAX_CONDITION)}


# ---------------------------------------------------------------------------------------
# Inception features (FID)
# ---------------------------------------------------------------------------------------
def inception_weights_path() -> Path:
    """Where torch.hub (and so pytorch-fid) keeps the FID Inception weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def check_inception_weights() -> Path:
    path = inception_weights_path()
    if not path.is_file():
        raise FeatureExtractorUnavailable(
            f"FID needs pytorch-fid's Inception weights, not found at {path}: download {INCEPTION_WEIGHTS_URL} "
            f"and put it there (the torch hub cache, $TORCH_HOME/hub/checkpoints/)")
    return path


def load_inception_state(path) -> dict:
    """The FID Inception's weights as a flat {name: tensor} dict, read with torch.load(weights_only=True):
    a file that needs anything beyond tensors to unpickle is refused, never executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch's refusal (UnpicklingError) or a corrupt file
        from ..io import one_line

        reason = one_line(f"{type(err).__name__}: {err}")  # torch's whole message, its warning included
        raise FeatureExtractorUnavailable(f"{path}: refused, not a plain state dict of tensors (read with "
                                          f"torch.load(weights_only=True): {reason}); replace it with "
                                          f"{INCEPTION_WEIGHTS_URL}") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FeatureExtractorUnavailable(f"{path}: not a state dict of named tensors; replace it with "
                                          f"{INCEPTION_WEIGHTS_URL}")
    return state


def _sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_fid_inception(state: dict, output_blocks):
    """pytorch-fid's InceptionV3 with the weights `state` (already read safely). pytorch-fid fetches its
    weights through torch.hub's loader, which unpickles fully; while the network is built, that loader
    (under every name pytorch-fid may use) returns `state` instead and refuses anything else."""
    import torch.utils.model_zoo as model_zoo
    from pytorch_fid import inception as fid_inception

    def from_memory(url, *args, **kwargs):
        if os.path.basename(str(url)) != INCEPTION_WEIGHTS_FILE:
            raise FeatureExtractorUnavailable(f"pytorch-fid asked for weights {url}; only the FID Inception's "
                                              f"{INCEPTION_WEIGHTS_FILE}, read safely, is supplied")
        return state

    targets = [(fid_inception, "load_state_dict_from_url"), (torch.hub, "load_state_dict_from_url"),
               (model_zoo, "load_url")]
    saved = [(module, name, getattr(module, name)) for module, name in targets if hasattr(module, name)]
    try:
        for module, name, _ in saved:
            setattr(module, name, from_memory)
        return fid_inception.InceptionV3(list(output_blocks))
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _as_images(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"inception features: expected images [n, 3 or 1, H, W], got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype.is_floating_point:
        x = x.float()
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"inception features: float images must lie in [0, 1], got range "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    else:
        raise ValueError(f"inception features: expected uint8 (0..255) or float (0..1) images, got {x.dtype}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFeatures:
    """pytorch-fid's InceptionV3 (TF-FID weights) as a feature extractor: `extractor(images) -> [n, dims]`.

    Images: [n, 3, H, W] uint8 0..255 or float 0..1 (grey [n, 1, H, W] is repeated to RGB); they
    are resized to 299x299 bilinearly and scaled to [-1, 1] inside pytorch-fid. dims: 2048 (FID's
    pool features) or an earlier block (64, 192, 768)."""

    def __init__(self, dims: int = 2048, device="cpu", batch_size: int = 50):
        if dims not in INCEPTION_DIMS:
            raise ValueError(f"InceptionFeatures.dims: choose one of {INCEPTION_DIMS}, got {dims!r}")
        self.weights = check_inception_weights()
        state = load_inception_state(self.weights)  # before pytorch-fid is even imported
        self.weights_sha256 = _sha256(self.weights)
        from pytorch_fid.inception import InceptionV3

        self.dims, self.batch_size, self.device = dims, batch_size, torch.device(device)
        self.model = build_fid_inception(state, [InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).to(self.device).eval()

    def describe(self) -> dict:
        return {"feature_extractor": "pytorch-fid InceptionV3", "weights": INCEPTION_WEIGHTS_FILE,
                "weights_sha256": self.weights_sha256, "dims": self.dims}

    @torch.inference_mode()
    def __call__(self, images) -> np.ndarray:
        x = _as_images(images)
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            feat = self.model(x[start:start + self.batch_size].to(self.device))[0]
            if feat.shape[2] != 1 or feat.shape[3] != 1:
                feat = torch.nn.functional.adaptive_avg_pool2d(feat, output_size=(1, 1))
            out.append(feat.squeeze(3).squeeze(2).double().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.dims))


def fid_from_features(features, reference: tuple[np.ndarray, np.ndarray]) -> float:
    """Frechet distance between the Gaussian fit of `features` and reference (mu, sigma)."""
    mu, sigma = feature_statistics(features)
    return frechet_distance(mu, sigma, reference[0], reference[1])


# ---------------------------------------------------------------------------------------
# Cached reference statistics
# ---------------------------------------------------------------------------------------
def save_statistics(path, mu, sigma, meta: dict | None = None) -> None:
    """Write (mu, sigma, meta) to `path` (.npz) atomically."""
    from ..io import atomic_write_file

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz"
            np.savez(f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                     meta=np.array(json.dumps(meta or {}, sort_keys=True)))

    atomic_write_file(path, write)


def load_statistics(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu, sigma, meta) from a statistics file written by `save_statistics`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = data["mu"], data["sigma"]
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a reference statistics file ({type(err).__name__}: {err})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: malformed reference statistics (mu {mu.shape}, sigma {sigma.shape})")
    return mu, sigma, meta


def reference_statistics(path, features_fn, meta: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of a reference set, cached at `path`: loaded when the file exists (and its
    stored meta agrees with `meta` on their common keys), else computed from `features_fn()`
    ([n, d] features) and written atomically."""
    path = Path(path)
    meta = dict(meta or {})
    if path.is_file():
        mu, sigma, stored = load_statistics(path)
        clash = {k: (stored[k], meta[k]) for k in set(stored) & set(meta) if stored[k] != meta[k]}
        if not clash:
            return mu, sigma
        raise ValueError(f"{path}: cached reference statistics were computed with other settings {clash}; "
                         f"delete the file to recompute")
    feats = np.asarray(features_fn(), dtype=np.float64)
    mu, sigma = feature_statistics(feats)
    save_statistics(path, mu, sigma, {**meta, "n": int(feats.shape[0]), "dims": int(feats.shape[1])})
    return mu, sigma
