"""Atomic file writes, samples files, progress bars and provenance shared by every artifact."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


def one_line(text) -> str:
    """`text` (an error, usually) on one line: whitespace collapsed, terminal colour codes removed
    (torch's messages carry them)."""
    import re

    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())


def atomic_write_file(path, writer, mode: int | None = None) -> None:
    """`writer(tmp)` writes a temporary file beside `path`, which then replaces `path` in one rename;
    an error or Ctrl-C midway removes the temporary file and leaves `path` as it was. The file gets
    `mode`, or by default the permissions of a normally created file (mkstemp's are 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, (0o666 & ~_UMASK) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half-written file."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write_file(path, write)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def progress(total: int, desc: str, enabled: bool = True, **options):
    """A tqdm bar over `total` units; with `enabled=False` tqdm's silent stand-in (same methods,
    no output), so that callers need no `if bar is not None`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, **options)


def save_samples(path, x, meta: dict) -> None:
    """Tokens [samples, length] and their metadata as one safetensors file (metadata under `lsd`),
    written atomically; `load_samples` reads it back."""
    from safetensors.torch import save_file

    atomic_write_file(path, lambda tmp: save_file({"tokens": x.contiguous()}, tmp, metadata={"lsd": json.dumps(meta)}))


def load_samples(path):
    """Tokens [samples, length] and metadata written by `lsd sample`, checked (one-line ValueError)."""
    import torch
    from safetensors import safe_open

    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, expected a samples file written by `lsd sample`")
    try:
        with safe_open(path, "pt") as f:
            x, meta = f.get_tensor("tokens"), json.loads((f.metadata() or {}).get("lsd", "{}"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: samples file not found") from None
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not a samples file written by `lsd sample` ({' '.join(str(e).split())})") from None
    if x.dim() != 2 or x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"{path}: tokens must be an integer tensor [samples, length], got {x.dtype} of shape "
                         f"{tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{path}: no samples (tokens of shape {tuple(x.shape)})")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its `lsd` metadata must be a JSON object, got {type(meta).__name__}")
    for key, kinds, what in (("schedule", dict, "a JSON object"), ("backbone_info", dict, "a JSON object"),
                             ("nfe", (int, float), "a number"), ("sampler", str, "a string"),
                             ("backbone", str, "a string"), ("network_calls", (int, float), "a number"),
                             ("wall_time_s", (int, float), "a number"), ("device", str, "a string")):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise ValueError(f"{path}: metadata {key} must be {what}, got {value!r}")
    schedule = meta.get("schedule") or {}
    for key, kinds, what in (("nfe", int, "an integer"), ("metadata", dict, "a JSON object")):
        value = schedule.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise ValueError(f"{path}: metadata schedule.{key} must be {what}, got {value!r}")
    return x, meta


class OutputError(ValueError):
    """An output location that cannot be written, or that would overwrite an input."""


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path, option: str = "--out", inputs=(), folder: bool = False) -> Path:
    """Refuse, before any work, an output that could not be written at the end: a file path that is a
    folder (or a folder path that is a file), a path below a file, a folder this process cannot write
    in, or one of the command's inputs. Missing folders are fine (the writers create them); the nearest
    existing one is probed with a real temporary file, since permission bits do not tell (root, read-only
    mounts)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, expected a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{option} {path}: is a folder, expected a file path")
    for source in inputs:
        if source is not None and _same_path(path, Path(source)):
            raise OutputError(f"{option} {path}: is also an input of this command ({source}); writing it would "
                              f"overwrite that input")
    existing = (path if folder else path.parent).absolute()
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".lsd-write-check-")
    except OSError as err:
        raise OutputError(f"{option} {path}: cannot write in {existing} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _git(where, *args: str) -> str | None:
    """stdout of a git command run in `where` (default: this package's source tree); None outside git."""
    try:
        out = subprocess.run(["git", *args], cwd=where or Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_hash(where=None) -> str | None:
    """The commit of the source tree this package runs from (or of `where`), or None outside git."""
    return _git(where, "rev-parse", "HEAD") or None


def git_dirty(where=None) -> bool | None:
    """Whether tracked files differ from that commit (the hash alone would then misname the code);
    untracked files do not count. None outside git."""
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def provenance() -> dict:
    """Library versions, git hash and machine: recorded inside every artifact."""
    import numpy
    import torch

    from . import __version__

    return {
        "lsd": __version__,
        "git": git_hash(),
        "git_dirty": git_dirty(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
