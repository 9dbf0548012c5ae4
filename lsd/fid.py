"""FID of image samples against cached training statistics (`lsd fid-stats`, metric set `fid`).

The CIFAR-10 cells of the paper compare samples with the CIFAR-10 training set through
pytorch-fid's Inception (2048-d pool features; `lsd.metrics.frechet`). The reference
statistics (mean and covariance of the training set's features) are computed once:

    lsd fid-stats --images data/cifar10-train --out work/fid/cifar10-train.npz

from a folder of PNG files (the 50,000 training images; any folder layout, read
recursively, sorted by path). A folder of PNGs, not torchvision's pickled batches: this
harness never unpickles files. One way to make it, on a machine you trust with the dataset:
`torchvision.datasets.CIFAR10(root, train=True, download=True)` and save each image with
`PIL.Image.save(f"{i:05d}.png")`. pytorch-fid's own `python -m pytorch_fid --save-stats`
gives the same statistics (same network and weights; this command also records the count,
the feature dimension and the folder in the file).

Samples of an image backbone are [n, C*H*W] integers 0..S-1 in (C, H, W) order
(`lsd.backbones.tauldr`); `sample_images` turns them into uint8 images using the backbone
info's `image_shape` and `levels`.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch


class ImagesNotAvailable(FileNotFoundError):
    """The image folder the reference statistics need is missing or empty."""


def image_files(folder) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*.png")) if folder.is_dir() else []
    if not files:
        raise ImagesNotAvailable(
            f"{folder}: no PNG images; put the CIFAR-10 training images there as PNG files (see `lsd fid-stats "
            f"--help`: e.g. torchvision.datasets.CIFAR10(train=True) saved one PNG per image), or pass a "
            f"statistics file computed elsewhere (pytorch-fid --save-stats)")
    return files


def load_images(files) -> torch.Tensor:
    """uint8 images [n, 3, H, W] from PNG files (grey images repeated to RGB); one size for all."""
    from PIL import Image

    out = []
    for path in files:
        with Image.open(path) as im:
            img = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
        if out and img.shape != out[0].shape:
            raise ValueError(f"{path}: image of shape {tuple(img.shape)}, the others are {tuple(out[0].shape)}")
        out.append(img)
    return torch.stack(out)


def sample_images(x: torch.Tensor, info: dict) -> torch.Tensor:
    """Samples [n, C*H*W] of values 0..levels-1 -> uint8 images [n, C, H, W] (levels 256: as is)."""
    shape, levels = info.get("image_shape"), info.get("levels")
    if not shape or not levels:
        raise ValueError("fid: this backbone's samples are not images (its info has no image_shape/levels); "
                         "use it with an image backbone such as tauldr-cifar10")
    c, h, w = (int(v) for v in shape)
    if x.shape[1] != c * h * w:
        raise ValueError(f"fid: samples have {x.shape[1]} values each, the image shape {shape} needs {c * h * w}")
    scaled = x.double() * (255.0 / (int(levels) - 1))
    return scaled.round().clamp(0, 255).to(torch.uint8).reshape(-1, c, h, w)


def compute_statistics(images_dir, out, device="cpu", batch_size: int = 200, dims: int = 2048) -> tuple:
    """Inception statistics of every PNG under `images_dir`, written atomically to `out` (.npz)."""
    from .metrics.frechet import InceptionFeatures, reference_statistics

    extractor = InceptionFeatures(dims=dims, device=device, batch_size=batch_size)  # fails first if no weights
    files = image_files(images_dir)

    def features():
        from .io import progress

        chunks = []
        with progress(-(-len(files) // 1000), "fid-stats", unit="kimg") as bar:
            for start in range(0, len(files), 1000):
                chunks.append(extractor(load_images(files[start:start + 1000])))
                bar.update(1)
        return np.concatenate(chunks)

    return reference_statistics(out, features, meta={**extractor.describe(), "images": str(images_dir)})


@functools.lru_cache(maxsize=2)
def _extractor(dims: int, device: str, batch_size: int):
    """One Inception per process (`lsd evaluate` scores many samples files in one job)."""
    from .metrics.frechet import InceptionFeatures

    return InceptionFeatures(dims=dims, device=device, batch_size=batch_size)


def fid_of_samples(x: torch.Tensor, info: dict, stats_path, device="cpu", batch_size: int = 200) -> float:
    """FID of image samples against the statistics file `stats_path` (from `lsd fid-stats`)."""
    from .metrics.frechet import fid_from_features, load_statistics

    if not Path(stats_path).is_file():
        raise FileNotFoundError(f"fid: reference statistics {stats_path} not found; make them with "
                                f"`lsd fid-stats --images <training PNGs> --out {stats_path}`")
    mu, sigma, meta = load_statistics(stats_path)
    extractor = _extractor(int(meta.get("dims", 2048)), str(device), batch_size)
    return fid_from_features(extractor(sample_images(x, info)), (mu, sigma))


def configure_parser(p) -> None:
    from .argtypes import positive_int

    p.add_argument("--images", required=True, help="folder of the reference images (PNG, read recursively)")
    p.add_argument("--out", required=True, help="statistics file (.npz) to write")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=positive_int, default=200)


def run(args) -> None:
    from .io import check_output
    from .metrics.frechet import load_statistics

    check_output(args.out, inputs=[args.images])
    image_files(args.images)  # the images exist before the network is built
    compute_statistics(args.images, args.out, device=args.device, batch_size=args.batch_size)
    meta = load_statistics(args.out)[2]
    print(f"wrote {args.out}: Inception statistics of {meta['n']} images ({meta['dims']} dims)")
