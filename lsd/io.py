"""Atomic file writes and provenance shared by every artifact."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


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
