"""What the workflow tests share: a copy of the workflow to run in, Snakemake in a subprocess, and
the check that a bad config is refused in one line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs")


def copy_workflow(dst: Path) -> Path:
    """The workflow's files (not the results, checkpoints or samples) copied into `dst`."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def snakemake(cwd: Path, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """`snakemake *args` in `cwd` with one thread, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_refused_in_one_line(out: subprocess.CompletedProcess, expected: str) -> None:
    """The run failed with exactly one `lsd workflow: ...` line, holding `expected`, as its last line
    (nothing after it: no traceback)."""
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode != 0
    ours = [line for line in lines if line.startswith("lsd workflow: ")]
    assert len(ours) == 1, lines
    assert expected in ours[0], ours[0]
    assert lines[-1] == ours[0]
    assert not any("Traceback" in line for line in lines)
