"""Bad inputs and faults, one row each: the command refuses in one line naming the culprit.

Every row of `ROWS` runs `lsd.cli.main(argv)` in this process and asserts the exit code, exactly one
line on stderr (`lsd <command>: ...`, no traceback) holding the expected words, that the listed files
are unchanged (sha256 before and after) and that the listed paths were not created. The work itself
(sampling, distillation, evaluation) is replaced by a function that fails loudly, so a row also fails
when a bad input is noticed only after the work started. Rows that need a real process (the
installed `lsd --help`, Ctrl-C) run as subprocesses.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
LSD = [sys.executable, "-c", "import sys; from lsd.cli import main; sys.exit(main())"]


# ---------------------------------------------------------------------------------------------
# the files the rows refer to
# ---------------------------------------------------------------------------------------------
class Plant:
    """Pickles as a call of open(marker, "w"): unpickling it fully creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _samples(path, tokens, meta) -> str:
    save_file({"tokens": tokens.contiguous()}, str(path), metadata={"lsd": json.dumps(meta)})
    return str(path)


def _writable(folder) -> bool:
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _read_only_folder(tmp: Path) -> Path | None:
    """A folder this process cannot write in (root ignores permission bits: then a kernel folder)."""
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not _writable(folder):
        return folder
    for candidate in ("/sys", "/proc"):
        if os.path.isdir(candidate) and not _writable(candidate):
            return Path(candidate)
    return None


@pytest.fixture
def ws(tmp_path):
    """Paths of every input a row may name (formatted into its argv as {key})."""
    import lsd
    from lsd.metrics.frechet import INCEPTION_WEIGHTS_FILE, save_statistics

    p = {"tmp": str(tmp_path), "marker": str(tmp_path / "MARKER-code-ran")}
    sched = lsd.Schedule.uniform("euler", 2)
    sched.save(tmp_path / "s.json")
    p["sched"] = str(tmp_path / "s.json")
    sched.save(tmp_path / "x.safetensors.json")  # a schedule named like the JSON record of x.safetensors
    p["sched_like_record"] = str(tmp_path / "x.safetensors.json")
    p["x_out"] = str(tmp_path / "x.safetensors")
    good = sched.to_dict()
    for key, change in {"coeff_empty": {"coefficients": []}, "temp_null": {"temperature": None},
                        "meta_list": {"metadata": ["a", "b"]}}.items():
        (tmp_path / f"{key}.json").write_text(json.dumps({**good, **change}))
        p[key] = str(tmp_path / f"{key}.json")
    (tmp_path / "broken.json").write_text('{"format": "lsd.schedule/1", "base": ')
    p["broken"] = str(tmp_path / "broken.json")
    (tmp_path / "a-folder").mkdir()
    p["folder"] = str(tmp_path / "a-folder")
    (tmp_path / "a-file").write_text("not a folder\n")
    p["file"] = str(tmp_path / "a-file")
    ro = _read_only_folder(tmp_path)
    p["ro"] = str(ro) if ro is not None else ""
    p["out"] = str(tmp_path / "out" / "result.json")

    toy_info = {"source": "lsd.tasks.toy", "vocab": 3, "exact": True}
    oracle_info = {"source": "lsd.backbones.oracle_exact", "exact": True, "task": "oracle-text"}
    meta = {"backbone": "toy-absorbing", "backbone_info": toy_info, "schedule": good, "sampler": "euler", "nfe": 2}
    tokens = torch.randint(0, 3, (4, 4), generator=torch.Generator().manual_seed(0))
    p["samples"] = _samples(tmp_path / "toy.safetensors", tokens, meta)
    p["samples_b"] = _samples(tmp_path / "toy-b.safetensors", tokens, meta)
    p["samples_1d"] = _samples(tmp_path / "one-d.safetensors", tokens[0], meta)
    p["samples_float"] = _samples(tmp_path / "float.safetensors", tokens.double(), meta)
    p["samples_nfe_word"] = _samples(tmp_path / "nfe-word.safetensors", tokens, {**meta, "nfe": "eight"})
    p["samples_meta_list"] = _samples(tmp_path / "meta-list.safetensors", tokens, [meta])
    p["samples_sched_list"] = _samples(tmp_path / "sched-list.safetensors", tokens, {**meta, "schedule": [1, 2]})
    p["samples_oracle"] = _samples(tmp_path / "oracle.safetensors", torch.randint(0, 128, (4, 64)),
                                   {**meta, "backbone": "oracle-exact", "backbone_info": oracle_info})
    image_info = {"image_shape": [3, 2, 2], "levels": 256, "source": "test"}
    p["samples_image"] = _samples(tmp_path / "image.safetensors", torch.randint(0, 256, (3, 12)),
                                  {**meta, "backbone": "images", "backbone_info": image_info})
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 5 + b"not safetensors")
    p["garbage"] = str(tmp_path / "garbage.safetensors")

    stats = tmp_path / "stats.npz"
    save_statistics(stats, torch.zeros(64).numpy(), torch.eye(64).numpy(), {"dims": 64, "n": 2})
    p["stats"] = str(stats)
    # a crafted Inception weights file in a torch hub cache: fully unpickled, it creates the marker
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({"Conv2d_1a_3x3.conv.weight": Plant(p["marker"])}, home / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE)
    p["torch_home"], p["inception"] = str(home), str(home / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE)
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "00000.png")
    p["images"] = str(tmp_path / "images")
    # a crafted training state to --resume from
    (tmp_path / "train").mkdir()
    torch.save({"format": "lsd.train/1", "step": Plant(p["marker"])}, tmp_path / "train" / "state.pt")
    p["train"], p["state"] = str(tmp_path / "train"), str(tmp_path / "train" / "state.pt")
    # a DiT checkpoint folder whose pytorch_model.bin needs full unpickling
    from lsd.backbones.dit import DiT, DiTConfig
    from lsd.backbones.hub import save_dit

    net = DiT(DiTConfig(tokens=5, hidden_size=16, n_heads=2, n_blocks=1, cond_dim=8, length=4))
    folder = save_dit(net, tmp_path / "dit", layout="bin")
    torch.save({"vocab_embed.embedding": Plant(p["marker"])}, folder / "pytorch_model.bin")
    p["dit"], p["dit_bin"] = str(folder), str(folder / "pytorch_model.bin")
    (tmp_path / "records").mkdir()
    p["records"] = str(tmp_path / "records")
    return p


# ---------------------------------------------------------------------------------------------
# the table: id, argv, exit code, words of the one line, files unchanged, paths not created, env
# ---------------------------------------------------------------------------------------------
SCHEDULE = ["schedule", "--base", "euler", "--nfe", "2", "--out"]
SAMPLE = ["sample", "--backbone", "toy-absorbing", "--quiet", "--schedule"]
EVAL = ["evaluate", "--backbone", "toy-absorbing", "--metrics", "entropy", "--samples"]
DISTILL = ["distill", "--backbone", "toy-absorbing", "--method", "lsd", "--quiet"]
ROWS = [
    # global options and argparse's own errors
    ("threads-negative", ["--threads", "-1", *SCHEDULE, "{out}"], 2, ["--threads", "-1"], [], ["{out}"], {}),
    ("threads-zero", ["--threads", "0", *SCHEDULE, "{out}"], 2, ["--threads", "0"], [], ["{out}"], {}),
    ("threads-word", ["--threads", "two", *SCHEDULE, "{out}"], 2, ["--threads"], [], ["{out}"], {}),
    ("env-threads-negative", SCHEDULE + ["{out}"], 2, ["LSD_THREADS", "-3"], [], ["{out}"], {"LSD_THREADS": "-3"}),
    ("unknown-command", ["bogus"], 2, ["invalid choice", "bogus"], [], [], {}),
    ("unknown-option", [*SCHEDULE, "{out}", "--bogus"], 2, ["unrecognized", "--bogus"], [], ["{out}"], {}),
    ("missing-option", ["schedule", "--base", "euler", "--out", "{out}"], 2, ["--nfe", "required"], [], ["{out}"], {}),
    # lsd schedule
    ("schedule-nfe-zero", ["schedule", "--base", "euler", "--nfe", "0", "--out", "{out}"], 2, ["--nfe", "0"], [],
     ["{out}"], {}),
    ("schedule-nfe-huge", ["schedule", "--base", "euler", "--nfe", "1000000000", "--out", "{out}"], 2,
     ["--nfe", "1000000000"], [], ["{out}"], {}),
    ("schedule-nfe-1e9", ["schedule", "--base", "euler", "--nfe", "1e9", "--out", "{out}"], 2, ["--nfe", "1e9"], [],
     ["{out}"], {}),
    ("schedule-base", ["schedule", "--base", "nope", "--nfe", "2", "--out", "{out}"], 2, ["--base", "nope"], [],
     ["{out}"], {}),
    ("schedule-t-min", [*SCHEDULE, "{out}", "--t-min", "2"], 2, ["times"], [], ["{out}"], {}),
    ("schedule-out-folder", [*SCHEDULE, "{folder}"], 2, ["--out", "is a folder"], [], [], {}),
    ("schedule-out-below-file", [*SCHEDULE, "{file}/s.json"], 2, ["--out", "not a folder"], ["{file}"], [], {}),
    ("schedule-out-read-only", [*SCHEDULE, "{ro}/lsd-s.json"], 2, ["--out", "cannot write"], [], ["{ro}/lsd-s.json"],
     {}),
    # lsd sample: its inputs
    ("sample-out-is-schedule", [*SAMPLE, "{sched}", "--out", "{sched}"], 2, ["--out", "is also an input"], ["{sched}"],
     [], {}),
    ("sample-record-is-schedule", [*SAMPLE, "{sched_like_record}", "--out", "{x_out}"], 2, ["is also an input"],
     ["{sched_like_record}"], ["{x_out}"], {}),
    ("sample-out-twice", [*SAMPLE, "{sched}", "{sched}", "--out", "{out}", "{out}"], 2, ["given twice"], ["{sched}"],
     ["{out}"], {}),
    ("sample-out-count", [*SAMPLE, "{sched}", "{sched}", "--out", "{out}"], 2, ["--out", "2 --schedule"], [],
     ["{out}"], {}),
    ("sample-schedule-folder", [*SAMPLE, "{folder}", "--out", "{out}"], 2, ["a-folder", "is a folder"], [], ["{out}"],
     {}),
    ("sample-schedule-missing", [*SAMPLE, "{tmp}/none.json", "--out", "{out}"], 2, ["none.json", "not found"], [],
     ["{out}"], {}),
    ("sample-schedule-broken", [*SAMPLE, "{broken}", "--out", "{out}"], 2, ["broken.json", "not valid json"], [],
     ["{out}"], {}),
    ("sample-coefficients-empty", [*SAMPLE, "{coeff_empty}", "--out", "{out}"], 2, ["coefficients", "empty"],
     ["{coeff_empty}"], ["{out}"], {}),
    ("sample-temperature-null", [*SAMPLE, "{temp_null}", "--out", "{out}"], 2, ["temp_null.json", "temperature"], [],
     ["{out}"], {}),
    ("sample-metadata-list", [*SAMPLE, "{meta_list}", "--out", "{out}"], 2, ["meta_list.json", "metadata"], [],
     ["{out}"], {}),
    ("sample-length-zero", [*SAMPLE, "{sched}", "--length", "0", "--out", "{out}"], 2, ["--length", "0"], [],
     ["{out}"], {}),
    ("sample-num-samples-zero", [*SAMPLE, "{sched}", "--num-samples", "0", "--out", "{out}"], 2,
     ["--num-samples", "0"], [], ["{out}"], {}),
    ("sample-batch-size-zero", [*SAMPLE, "{sched}", "--batch-size", "0", "--out", "{out}"], 2, ["--batch-size"], [],
     ["{out}"], {}),
    ("sample-seed-negative", [*SAMPLE, "{sched}", "--seed", "-1", "--out", "{out}"], 2, ["--seed"], [], ["{out}"], {}),
    ("sample-out-read-only", [*SAMPLE, "{sched}", "--out", "{ro}/lsd-x.safetensors"], 2, ["cannot write"], [],
     ["{ro}/lsd-x.safetensors"], {}),
    ("sample-out-below-file", [*SAMPLE, "{sched}", "--out", "{file}/x.safetensors"], 2, ["not a folder"], ["{file}"],
     [], {}),
    ("sample-backbone-crafted-bin", ["sample", "--backbone", "{dit}", "--schedule", "{sched}", "--out", "{out}"], 2,
     ["pytorch_model.bin", "weights_only", "only if you trust", "documentation of torch.load"], ["{dit_bin}"],
     ["{marker}", "{out}"], {}),
    ("sample-backbone-unknown", ["sample", "--backbone", "no-such-backbone", "--schedule", "{sched}", "--out",
                                 "{out}"], 2, ["no-such-backbone"], [], ["{out}"], {}),
    # lsd evaluate: samples files and metric sets
    ("evaluate-tokens-1d", [*EVAL, "{samples_1d}", "--out", "{out}"], 2, ["one-d.safetensors", "tokens must be"], [],
     ["{out}"], {}),
    ("evaluate-tokens-float", [*EVAL, "{samples_float}", "--out", "{out}"], 2, ["float.safetensors", "integer"], [],
     ["{out}"], {}),
    ("evaluate-nfe-word", [*EVAL, "{samples_nfe_word}", "--out", "{out}"], 2, ["nfe", "eight"], [], ["{out}"], {}),
    ("evaluate-metadata-list", [*EVAL, "{samples_meta_list}", "--out", "{out}"], 2, ["meta-list", "json object"], [],
     ["{out}"], {}),
    ("evaluate-schedule-list", [*EVAL, "{samples_sched_list}", "--out", "{out}"], 2, ["sched-list", "schedule"], [],
     ["{out}"], {}),
    ("evaluate-countdown-on-oracle-text", ["evaluate", "--backbone", "oracle-exact", "--metrics", "countdown",
                                           "--samples", "{samples_oracle}", "--out", "{out}"], 2,
     ["countdown", "oracle-text"], [], ["{out}"], {}),
    ("evaluate-frechet-on-toy", [*EVAL[:4], "frechet", "--samples", "{samples}", "--out", "{out}"], 2,
     ["frechet", "digits"], [], ["{out}"], {}),
    ("evaluate-oracle-ppl-on-toy", [*EVAL[:4], "oracle_ppl", "--samples", "{samples}", "--out", "{out}"], 2,
     ["oracle_ppl", "oracle-text"], [], ["{out}"], {}),
    ("evaluate-gen-ppl-on-oracle-text", ["evaluate", "--backbone", "oracle-exact", "--metrics", "gen_ppl",
                                         "--samples", "{samples_oracle}", "--out", "{out}"], 2, ["gen_ppl"], [],
     ["{out}"], {}),
    ("evaluate-fid-without-stats", ["evaluate", "--backbone", "images", "--metrics", "fid", "--samples",
                                    "{samples_image}", "--out", "{out}"], 2, ["--fid-stats"], [], ["{out}"], {}),
    ("evaluate-fid-not-images", [*EVAL[:4], "fid", "--fid-stats", "{stats}", "--samples", "{samples}", "--out",
                                 "{out}"], 2, ["fid", "not images"], [], ["{out}"], {}),
    ("evaluate-metric-unknown", [*EVAL[:4], "bleu", "--samples", "{samples}", "--out", "{out}"], 2,
     ["--metrics", "bleu"], [], ["{out}"], {}),
    ("evaluate-out-is-samples", [*EVAL, "{samples}", "--out", "{samples}"], 2, ["is also an input"], ["{samples}"], [],
     {}),
    ("evaluate-out-is-stats", [*EVAL, "{samples}", "--fid-stats", "{stats}", "--out", "{stats}"], 2, ["is also an input"], ["{stats}"], [], {}),
    ("evaluate-cache-is-samples", [*EVAL, "{samples}", "--cache", "{samples}", "--out", "{out}"], 2,
     ["--cache", "is also an input"], ["{samples}"], ["{out}"], {}),
    ("evaluate-nfe-zero", [*EVAL, "{samples}", "--nfe", "0", "--out", "{out}"], 2, ["--nfe", "0"], [], ["{out}"], {}),
    ("evaluate-not-safetensors", [*EVAL, "{garbage}", "--out", "{out}"], 2, ["garbage", "not a samples file"], [],
     ["{out}"], {}),
    ("evaluate-samples-missing", [*EVAL, "{tmp}/none.safetensors", "--out", "{out}"], 2, ["none.safetensors",
                                                                                           "not found"], [], ["{out}"],
     {}),
    ("evaluate-samples-folder", [*EVAL, "{folder}", "--out", "{out}"], 2, ["a-folder", "is a folder"], [], ["{out}"],
     {}),
    ("evaluate-backbone-mismatch", ["evaluate", "--backbone", "oracle-exact", "--metrics", "entropy", "--samples",
                                    "{samples}", "--out", "{out}"], 2, ["toy-absorbing", "oracle-exact"], [],
     ["{out}"], {}),
    ("evaluate-second-file-bad", [*EVAL, "{samples}", "{samples_1d}", "--out", "{tmp}/r1.json", "{tmp}/r2.json"], 2,
     ["one-d.safetensors"], [], ["{tmp}/r1.json", "{tmp}/r2.json"], {}),
    # lsd distill, temperature, schedules
    ("distill-nfe-zero", [*DISTILL, "--nfe", "0", "--out", "{out}"], 2, ["--nfe", "0"], [], ["{out}"], {}),
    ("distill-teacher-steps-zero", [*DISTILL, "--nfe", "2", "--teacher-steps", "0", "--out", "{out}"], 2,
     ["--teacher-steps"], [], ["{out}"], {}),
    ("distill-out-read-only", [*DISTILL, "--nfe", "2", "--out", "{ro}/lsd-d.json"], 2, ["cannot write"], [],
     ["{ro}/lsd-d.json"], {}),
    ("temperature-out-is-schedule", ["temperature", "--backbone", "toy-absorbing", "--schedule", "{sched}", "--out",
                                     "{sched}"], 2, ["is also an input"], ["{sched}"], [], {}),
    ("temperature-num-samples-zero", ["temperature", "--backbone", "toy-absorbing", "--schedule", "{sched}",
                                      "--num-samples", "0", "--out", "{out}"], 2, ["--num-samples"], [], ["{out}"], {}),
    ("schedules-samplers-not-json", ["schedules", "--backbone", "toy-absorbing", "--nfe", "2", "--samplers-json",
                                     "{{bad", "--out-dir", "{tmp}/sched"], 2, ["--samplers-json", "not valid json"],
     [], ["{tmp}/sched"], {}),
    ("schedules-distill-json-list", ["schedules", "--backbone", "toy-absorbing", "--nfe", "2", "--samplers-json", "{{}}",
                                     "--distill-json", "[1]", "--out-dir", "{tmp}/sched"], 2,
     ["--distill-json", "object"], [], ["{tmp}/sched"], {}),
    ("schedules-out-dir-is-file", ["schedules", "--backbone", "toy-absorbing", "--nfe", "2", "--samplers-json", "{{}}",
                                   "--out-dir", "{file}"], 2, ["--out-dir", "is a file"], ["{file}"], [], {}),
    # lsd train
    ("train-resume-crafted-state", ["train", "--recipe", "tiny-sedd-text", "--out", "{train}", "--resume", "--quiet"],
     2, ["state.pt", "refused", "weights_only"], ["{state}"], ["{marker}", "{train}/config.json"], {}),
    ("train-resume-nothing", ["train", "--recipe", "tiny-sedd-text", "--out", "{folder}", "--resume", "--quiet"], 2,
     ["nothing to resume"], [], ["{folder}/config.json"], {}),
    ("train-steps-zero", ["train", "--recipe", "tiny-sedd-text", "--out", "{tmp}/t", "--steps", "0"], 2,
     ["--steps", "0"], [], ["{tmp}/t"], {}),
    ("train-threads-zero", ["train", "--recipe", "tiny-sedd-text", "--out", "{tmp}/t", "--threads", "0"], 2,
     ["--threads"], [], ["{tmp}/t"], {}),
    ("train-out-is-file", ["train", "--recipe", "tiny-sedd-text", "--out", "{file}", "--steps", "1"], 2,
     ["--out", "is a file"], ["{file}"], [], {}),
    # lsd report
    ("report-records-missing", ["report", "--records", "{tmp}/no-records", "--out", "{tmp}/rep"], 2,
     ["--records", "no-records"], [], ["{tmp}/rep"], {}),
    ("report-confidence", ["report", "--records", "{records}", "--out", "{tmp}/rep", "--confidence", "95"], 2,
     ["--confidence", "95"], [], ["{tmp}/rep"], {}),
    ("report-out-is-file", ["report", "--records", "{records}", "--out", "{file}"], 2, ["--out", "is a file"],
     ["{file}"], [], {}),
    # FID: a crafted Inception file in the torch hub cache is refused, never unpickled
    ("fid-stats-crafted-inception", ["fid-stats", "--images", "{images}", "--out", "{tmp}/ref.npz"], 2,
     ["refused", "weights_only", "pt_inception"], ["{inception}"], ["{marker}", "{tmp}/ref.npz"],
     {"TORCH_HOME": "{torch_home}"}),
    ("evaluate-fid-crafted-inception", ["evaluate", "--backbone", "images", "--metrics", "fid", "--fid-stats",
                                        "{stats}", "--samples", "{samples_image}", "--out", "{out}"], 2,
     ["refused", "weights_only"], ["{inception}", "{stats}"], ["{marker}", "{out}"], {"TORCH_HOME": "{torch_home}"}),
    ("fid-stats-no-images", ["fid-stats", "--images", "{folder}", "--out", "{tmp}/ref.npz"], 2, ["no png"], [],
     ["{tmp}/ref.npz", "{marker}"], {"TORCH_HOME": "{torch_home}"}),
    ("fid-stats-batch-size-zero", ["fid-stats", "--images", "{images}", "--out", "{tmp}/ref.npz", "--batch-size", "0"],
     2, ["--batch-size"], [], ["{tmp}/ref.npz"], {}),
    # lsd demo
    ("demo-samples-zero", ["demo", "--samples", "0"], 2, ["--samples", "0"], [], [], {}),
    ("demo-steps-zero", ["demo", "--steps", "4", "0"], 2, ["--steps", "0"], [], [], {}),
]


LOADS_INCEPTION = {"evaluate-fid-crafted-inception"}
EVALUATE_SAMPLES = None


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before every input was checked")


@pytest.fixture
def no_work(monkeypatch):
    global EVALUATE_SAMPLES
    """Replace the expensive steps by a loud failure: a row passes only if it is refused before them."""
    import lsd
    import lsd.evaluate
    import lsd.optimize.jys
    import lsd.optimize.lsd
    import lsd.optimize.plan
    import lsd.optimize.temperature
    import lsd.training

    EVALUATE_SAMPLES = EVALUATE_SAMPLES or lsd.evaluate.evaluate_samples
    for module, name in ((lsd, "sample"), (lsd.evaluate, "evaluate_samples"), (lsd.optimize.lsd, "distill"),
                         (lsd.optimize.jys, "jys_schedule"), (lsd.optimize.temperature, "match_temperature"),
                         (lsd.optimize.plan, "make_schedules"), (lsd.training.Trainer, "batch_loss")):
        monkeypatch.setattr(module, name, _no_work)
    monkeypatch.delenv("LSD_DEBUG", raising=False)
    monkeypatch.setenv("LSD_THREADS", "1")


def test_the_table_is_large_enough():
    assert len(ROWS) >= 40 and len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_refused_in_one_line(row, ws, no_work, monkeypatch, capsys):
    import lsd.evaluate
    import lsd.fid
    from lsd.cli import main

    name, argv, code, words, untouched, absent, env = row
    if name in LOADS_INCEPTION:  # the refusal happens inside the evaluation, where the network is built
        monkeypatch.setattr(lsd.evaluate, "evaluate_samples", EVALUATE_SAMPLES)
    if any("{ro}" in a for a in argv) and not ws["ro"]:
        pytest.skip("no read-only folder on this machine")
    fill = lambda text: text.format(**ws)  # noqa: E731
    for key, value in env.items():
        monkeypatch.setenv(key, fill(value))
    lsd.fid._extractor.cache_clear()  # an Inception built by another test must not stand in for this one's
    before = {fill(p): _digest(fill(p)) for p in untouched}
    capsys.readouterr()
    assert main([fill(a) for a in argv]) == code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("lsd") and "Traceback" not in err and "internal error" not in line, line
    missing = [w for w in words if fill(w).lower() not in line.lower()]
    assert not missing, f"{missing} not in: {line}"
    assert {p: _digest(p) for p in before} == before
    created = [fill(p) for p in absent if os.path.exists(fill(p))]
    assert not created, f"created: {created}"
    assert not os.path.exists(ws["marker"])


# ---------------------------------------------------------------------------------------------
# help, Ctrl-C and the debug switch
# ---------------------------------------------------------------------------------------------
def _commands() -> list[str]:
    import argparse

    from lsd.cli import build_parser

    return [name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices]


COMMANDS = _commands()


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_prints(command, capsys):
    from lsd.cli import main

    assert main(["--help"] if command is None else [command, "--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: lsd") and not err
    if command is None:
        assert len(COMMANDS) >= 10 and all(c in out for c in COMMANDS) and "95% interval" in out


def test_installed_help_prints():
    done = subprocess.run([str(REPO / ".venv" / "bin" / "lsd"), "--help"] if (REPO / ".venv" / "bin" / "lsd").exists()
                          else LSD + ["--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: lsd") and not done.stderr


def test_ctrl_c_exits_130_in_one_line_and_writes_nothing(tmp_path):
    import lsd

    lsd.Schedule.uniform("euler", 100000).save(tmp_path / "long.json")  # minutes of sampling
    out = tmp_path / "out" / "x.safetensors"
    driver = ("import sys; from lsd.cli import main; print('ready', flush=True); "
              f"sys.exit(main({['--threads', '1', *SAMPLE, str(tmp_path / 'long.json'), '--num-samples', '64', '--out', str(out)]!r}))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LSD_DEBUG", None)
    # a shell without job control starts background commands with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: restore the default in the child, as a terminal's Ctrl-C would find it
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)  # inside the sampling loop
    assert proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("lsd sample: interrupted")
    assert not out.exists() and not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".x.safetensors*"))


def test_debug_switch_keeps_the_traceback(tmp_path, monkeypatch):
    from lsd.cli import main
    from lsd.schedule import ScheduleError

    monkeypatch.setenv("LSD_DEBUG", "1")
    monkeypatch.setenv("LSD_THREADS", "1")
    with pytest.raises(ScheduleError, match="not found"):
        main(["sample", "--backbone", "toy-absorbing", "--schedule", str(tmp_path / "none.json"), "--out",
              str(tmp_path / "x.safetensors")])


# ---------------------------------------------------------------------------------------------
# what the refusals leave working
# ---------------------------------------------------------------------------------------------
def test_missing_output_folders_are_created(tmp_path, capsys, monkeypatch):
    """A folder that does not exist yet is not an error: the writers create it (checked up front)."""
    from lsd.cli import main

    monkeypatch.setenv("LSD_THREADS", "1")
    out = tmp_path / "new" / "deeper" / "s.json"
    assert main(["schedule", "--base", "euler", "--nfe", "3", "--out", str(out)]) == 0
    x = tmp_path / "samples" / "x.safetensors"
    assert main([*SAMPLE, str(out), "--num-samples", "2", "--out", str(x)]) == 0
    assert x.is_file() and Path(str(x) + ".json").is_file()
    assert sorted(p.name for p in x.parent.iterdir()) == ["x.safetensors", "x.safetensors.json"]
    rec = tmp_path / "records" / "r.json"
    assert main([*EVAL, str(x), "--sampler", "euler", "--out", str(rec)]) == 0 and rec.is_file()


def test_report_names_only_the_seeds_it_averaged(tmp_path):
    """A record without a finite value is left out of the mean, and the cell says so."""
    import pandas as pd

    from lsd.metrics.records import make_record, write_record
    from lsd.report import build_report

    values = {0: 1.0, 1: None, 2: 3.0}
    for seed, value in values.items():
        for sampler in ("euler", "lsd"):
            write_record(tmp_path / "records" / f"{sampler}-{seed}.json", make_record(
                backbone="toy", sampler=sampler, nfe=8, seed=seed, metric_set="oracle_ppl", num_samples=4,
                metrics={"oracle_nll": {"value": value if sampler == "euler" else 2.0, "interval": None}}))
    build_report(tmp_path / "records", tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", dtype={"seeds": str, "seeds_without_value": str})
    euler = summary[summary["sampler"] == "euler"].iloc[0]
    assert euler["mean"] == pytest.approx(2.0) and euler["n_seeds"] == 2
    assert euler["seeds"] == "0 2" and euler["seeds_without_value"] == "1"
    other = summary[summary["sampler"] == "lsd"].iloc[0]
    assert other["seeds"] == "0 1 2" and other["n_seeds"] == 3
    table = (tmp_path / "out" / "tables" / "toy__oracle_nll.tex").read_text()
    assert "2 of 3 seeds" in table and "fewer seeds" in table
