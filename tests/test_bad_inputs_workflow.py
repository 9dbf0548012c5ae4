"""Bad workflow configs, refused at parse time in one line naming the key; no config value
reaches the shell unquoted.

Each row of BAD is a config file (a YAML text) for `snakemake -n --configfile`: the run must
exit non-zero with exactly one line, `lsd workflow: <key>: ...`, that names the key, print
nothing after it, and create no marker file (the shell-injection rows would make `pwned`).
Separately, every rule's shell string is run with hostile values (a space, a semicolon and a
`touch` in every path and wildcard) and the CLI replaced by `true`: the files land at their
hostile paths and no marker appears, which only holds when every value is quoted.
Snakemake runs in a scratch copy of the workflow, never in the checkout.
"""
import ast
import re
import subprocess
from pathlib import Path

import pytest

from workflow_support import REPO, assert_refused_in_one_line, copy_workflow, snakemake

MARKER = "pwned"

BAD = {
    "work_dir with a space": ("work_dir: my work\n", "config.work_dir: 'my work' does not match"),
    "work_dir with a command": (f"work_dir: 'w;touch {MARKER};'\n", f"config.work_dir: 'w;touch {MARKER};' does not"),
    "work_dir with a substitution": (f"work_dir: '$(touch {MARKER})'\n", "config.work_dir: '$(touch"),
    "name with a slash": ("name: ../elsewhere\n", "config.name: '../elsewhere' does not match"),
    "name with a command": (f"name: 'a;touch {MARKER}'\n", "config.name: 'a;touch"),
    "hub cache with a command": (f"hub: {{cache: 'c;touch {MARKER}'}}\n", "config.hub.cache:"),
    "fid stats with a command": (f"fid: {{stats: 's.npz;touch {MARKER}'}}\n", "config.fid.stats: 's.npz;touch"),
    "fid images with a space": ("fid: {images: 'my images'}\n", "config.fid.images: 'my images' does not match"),
    "evaluator with a command": (f"evaluator: 'gpt2;touch {MARKER}'\n", "config.evaluator: 'gpt2;touch"),
    "file sampler path with a command": (
        f"samplers: [euler, mine]\nsampler_definitions:\n  mine: {{method: file, path: 'm/{{backbone}};touch {MARKER}'}}\n",
        "config.sampler_definitions.mine.path: 'm/{backbone};touch"),
    "countdown metric on oracle text": (
        "backbone_settings:\n  oracle-exact: {metrics: [countdown, entropy]}\n",
        "config.backbone_settings.oracle-exact.metrics[0]: metric 'countdown' needs the countdown task; "
        "backbone 'oracle-exact' does not have it"),
    "oracle perplexity on countdown": (
        "backbones: [tiny-sedd-countdown]\nbackbone_settings:\n  tiny-sedd-countdown: {metrics: [oracle_ppl]}\n",
        "config.backbone_settings.tiny-sedd-countdown.metrics[0]: metric 'oracle_ppl' needs the oracle-text task"),
    "digits Frechet on text": (
        "backbones: [tiny-sedd-text]\nbackbone_settings:\n  tiny-sedd-text: {metrics: [entropy, frechet]}\n",
        "config.backbone_settings.tiny-sedd-text.metrics[1]: metric 'frechet' needs the digits task"),
    "GPT-2 perplexity on the oracle": (
        "backbone_settings:\n  oracle-exact: {metrics: [gen_ppl]}\n",
        "config.backbone_settings.oracle-exact.metrics[0]: metric 'gen_ppl' needs GPT-2 tokens"),
    "FID on digits": (
        "backbones: [tiny-sedd-digits]\nsamplers: [euler]\nbackbone_settings:\n  tiny-sedd-digits: {metrics: [fid]}\n",
        "config.backbone_settings.tiny-sedd-digits.metrics[0]: metric 'fid' needs images"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def markers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{MARKER}*") if p.name == MARKER]


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD)
def test_bad_config_is_refused_in_one_line_naming_the_key(workdir, case):
    text, expected = BAD[case]
    (workdir / "bad.yaml").write_text("# a bad config\n" + text)
    assert_refused_in_one_line(snakemake(workdir, "-n", "--configfile", "bad.yaml"), expected)
    assert not markers(workdir) and not (REPO / MARKER).exists()
    assert not (workdir / "results").exists()  # refused before any output


@pytest.mark.slow
def test_a_config_file_name_that_is_no_folder_name_is_refused(workdir):
    (workdir / "my config.yaml").write_text("seeds: [0]\n")
    out = snakemake(workdir, "-n", "--configfile", "my config.yaml")
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode != 0
    assert lines[-1].startswith("lsd workflow: config.name (from my config.yaml): 'my config' is not a folder name")


# ---------------------------------------------------------------------------------------
# Quoting: every value a rule puts into its shell command is quoted
# ---------------------------------------------------------------------------------------
# params that are command-line pieces built in Python with shlex.quote (lsd_workflow/commands.py), so
# they may not be quoted again; everything else must carry :q.
PREQUOTED = {"params.lsd", "params.hf", "params.env", "params.flags", "threads"}


def rule_shells() -> dict:
    """{rule name: its shell string}, read from workflow/rules/*.smk."""
    out = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), re.S | re.M):
            shell = re.search(r"^    shell:\n((?:        .*\n?)+)", m.group(2), re.M)
            out[m.group(1)] = "".join(ast.literal_eval(line.strip()) for line in shell.group(1).splitlines())
    return out


def test_every_interpolation_is_quoted():
    shells = rule_shells()
    assert set(shells) == {"download", "schedules", "sample", "evaluate", "fid_stats", "report"}
    for rule, shell in shells.items():
        for field in re.findall(r"\{([^{}]+)\}", shell):
            name, _, spec = field.partition(":")
            assert spec == "q" or (name in PREQUOTED and spec == ""), f"rule {rule}: {{{field}}} is not quoted"


class Hostile:
    """Every attribute a path with a space, a semicolon and a command in it."""

    def __init__(self, root: Path, kind: str):
        self._root, self._kind = root, kind

    def __getattr__(self, name):
        return str(self._root / f"{self._kind} dir;touch {MARKER};" / f"{name} file")


def test_hostile_values_stay_arguments(tmp_path):
    """Each rule's shell string, filled with hostile paths and wildcards (the CLI replaced by `true`),
    writes its files at those paths and runs no injected command."""
    from snakemake.utils import format as snakemake_format

    for rule, shell in rule_shells().items():
        root = tmp_path / rule
        for kind in ("input", "output", "log", "params"):
            (root / f"{kind} dir;touch {MARKER};").mkdir(parents=True)
        params = Hostile(root, "params")
        for name in ("lsd", "hf"):
            params.__dict__[name] = "true"  # the command line itself: a program that accepts anything
        params.__dict__.update(env="", flags="--flag 'a value'",
                               stamp=f'{{"settings": "a; touch {MARKER}; $(touch {MARKER})"}}')
        output = Hostile(root, "output")
        log = str(root / f"log dir;touch {MARKER};" / "log file")
        command = snakemake_format(shell, input=Hostile(root, "input"), log=log, params=params, threads=1,
                                   output=output.file if "{output:q}" in shell else output,  # one file, or named
                                   wildcards=Hostile(root, "wildcards"))
        run = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, (rule, command, run.stderr)
        assert not markers(tmp_path) and not (REPO / MARKER).exists(), (rule, command)
        assert Path(log).is_file(), rule  # the redirect reached the hostile path
        if "{output.stamp:q}" in shell:
            stamp = Path(output.stamp)
            assert stamp.read_text() == params.stamp + "\n", rule  # written whole, then moved into place
            assert not Path(output.stamp + ".tmp").exists()
