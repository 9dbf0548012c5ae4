"""Tests of the Snakemake workflow (Snakefile, workflow/, envs/) and of `lsd report`.

- `snakemake --lint` has nothing to say; every shipped config dry-runs (`snakemake -n`),
  also through the SLURM profile;
- wrong configs fail at parse time with one line that names the key;
- the conda environments pin what pyproject.toml pins; the workflow's Hub repositories are
  the registry's;
- `lsd report` on synthetic records: LaTeX tables well formed (one row per sampler, one
  column per NFE) whose numbers are summary.csv's, which are metrics.csv's over seeds;
- each config writes its own folders (results/<name>/, <work_dir>/<name>/): in a copy of a
  fresh clone (committed results/default/ included) every shipped config plans its grid's jobs,
  the embedded default only what is not committed (sampling, evaluation, report);
- settings stamps: a changed setting reruns exactly the jobs it affects, a no-op run nothing;
- every LaTeX table compiles with pdflatex (booktabs): synthetic ones, the committed default's and
  the smoke run's (a failure under CI=true when pdflatex is missing; .ci/run installs it);
- end to end: the smoke config runs; a backbone that does not load fails it (never a skip).
Snakemake runs in a scratch copy of the workflow, never in the checkout. The tests that run
Snakemake are marked `slow` (`pytest -m "not slow"` leaves them out; `make test` runs them).
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config
from workflow_support import WORKFLOW_FILES, assert_refused_in_one_line, copy_workflow, snakemake

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "lib"))
import lsd_workflow  # noqa: E402

# every shipped config: the embedded default and workflow/configs/*.yaml (smoke, paper, cifar10, ...)
SHIPPED = {"default": None, **{p.stem: f"workflow/configs/{p.name}"
                               for p in sorted((REPO / "workflow" / "configs").glob("*.yaml"))}}
assert {"smoke", "paper", "cifar10"} <= set(SHIPPED)


def clone_like_copy(src: Path, dst: Path, names) -> Path:
    """Copy `names` (files or folders under src) as `git clone` checks them out: file by file in
    path order, each with a new modification time (nothing of .snakemake/, nothing unlisted, nothing
    the repository's .gitignore leaves out, such as run logs)."""
    files = []
    for name in names:
        path = src / name
        files += [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    relative = "\n".join(f.relative_to(src).as_posix() for f in files)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input=relative,
                             capture_output=True, text=True).stdout.split("\n")
    files = [f for f in files if f.relative_to(src).as_posix() not in set(ignored)]
    for f in sorted(files, key=lambda f: f.relative_to(src).as_posix().encode()):
        if "__pycache__" in f.parts:
            continue
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)
    return dst


def shipped_plan(name: str, root: Path = REPO):
    """The plan of a shipped config, merged as Snakemake merges --configfile (lists replaced,
    mappings merged) and named as the Snakefile names it."""
    config = yaml.safe_load((root / "config.yaml").read_text())
    files = [SHIPPED[name]] if SHIPPED[name] else []
    for f in files:
        update_config(config, yaml.safe_load((root / f).read_text()))
    return lsd_workflow.plan(config, files)


def job_counts(output: str) -> dict:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts = {}
    block = output.split("Job stats:", 1)[1]
    for line in block.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


# ---------------------------------------------------------------------------------------
# Lint and dry runs
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lint_has_nothing_to_say(workdir):
    out = snakemake(workdir, "--lint")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Lints for" not in text, text
    assert "Congratulations" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_dry_runs(workdir, name):
    args = ["-n", "-p"] + (["--configfile", SHIPPED[name]] if SHIPPED[name] else [])
    out = snakemake(workdir, *args)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    counts = job_counts(text)
    plan = shipped_plan(name, workdir)
    assert plan.name == name and plan.results == f"results/{name}"
    # one job per (backbone, seed) and step, whatever the number of samplers and NFE
    units = len(plan.backbones) * len(plan.seeds)
    assert counts["schedules"] == counts["sample"] == counts["evaluate"] == units == len(plan.units)
    assert counts["report"] == 1 and counts["all"] == 1
    assert len(plan.cells) == units * len(plan.unit_cells)
    if name == "default":
        assert counts == {"schedules": 18, "sample": 18, "evaluate": 18, "report": 1, "all": 1}
        assert len(plan.cells) == 6 * 3 * (13 * 4 + 1)  # 13 samplers x 4 NFE + the teacher
    if name == "smoke":
        assert counts == {"schedules": 2, "sample": 2, "evaluate": 2, "report": 1, "all": 1}
    if name == "cifar10":
        # the FID reference statistics: one job, an input of the evaluation; the images folder is
        # absent here, so the job is planned without it and would fail with a one-line hint
        assert counts["fid_stats"] == 1 and counts["schedules"] == 1
        assert "fid-stats --images data/cifar10-train --out work/fid/cifar10-train.npz --device cuda" in text
        assert "--metrics fid entropy --fid-stats work/fid/cifar10-train.npz" in text
    if name == "paper":
        # sedd-small, sedd-medium, radd, their gpt2 tokenizer and gpt2-large, each downloaded once
        assert counts["download"] == 5 and counts["schedules"] == 9
        assert "--device cuda" in text and "HF_HUB_OFFLINE=1" in text
    else:
        assert "download" not in counts
    # every job of a unit lists every cell of it: the record of each (sampler, NFE) is an output
    evaluate = text.split("rule evaluate:", 1)[1].split("\n\n", 1)[0]
    outputs = re.search(r"output: (.*)", evaluate).group(1).split(", ")
    assert len(outputs) == len(plan.unit_cells) + 1  # and the settings stamp
    # every output of every job is in this config's own folders
    for job_outputs in re.findall(r"^    output: (.*)$", text, re.M):
        for path in job_outputs.split(", "):
            assert path.startswith((f"results/{name}/", f"work/{name}/", "work/hf-hub/", "work/fid/")), path


@pytest.mark.slow
def test_paper_config_dry_runs_through_the_slurm_profile(workdir):
    out = snakemake(workdir, "-n", "--profile", "workflow/profiles/slurm", "--configfile", SHIPPED["paper"])
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for rule in ("schedules", "sample", "evaluate"):
        job = text.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
        resources = re.search(r"resources: (.*)", job).group(1)
        assert "gpu=1" in resources and "slurm_partition=gpu" in resources and "mem_mb=32000" in resources, rule
    report = text.split("rule report:", 1)[1].split("\n\n", 1)[0]
    resources = re.search(r"resources: (.*)", report).group(1)
    assert "gpu=" not in resources and "slurm_partition=cpu" in resources


def test_rules_are_thin_calls_of_the_cli():
    """Every rule declares threads, log, conda and benchmark (cached downloads may not), and passes
    its threads to `lsd --threads`."""
    rules = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), re.S | re.M):
            rules[m.group(1)] = m.group(2)
    assert set(rules) == {"download", "schedules", "sample", "evaluate", "fid_stats", "report"}
    for name, body in rules.items():
        for directive in ("threads:", "log:", "conda:", "shell:"):
            assert directive in body, f"rule {name}: no {directive}"
        if name == "download":
            assert "cache:" in body and "benchmark:" not in body  # Snakemake forbids both
            assert "{params.hf} download" in body
        else:
            assert "benchmark:" in body, f"rule {name}: no benchmark:"
            assert "{params.lsd} --threads {threads} " in body, f"rule {name}: threads not passed to lsd"
        assert "import lsd" not in body


# ---------------------------------------------------------------------------------------
# Wrong configs: one line naming the key
# ---------------------------------------------------------------------------------------
BAD = {
    "unknown backbone": ("backbones: [oracle-exact, gpt5]\n", "config.backbones[1]: unknown backbone 'gpt5'"),
    "backbone without settings": ("backbones: [sedd-small]\nbackbone_settings: {}\n",
                                  "config.backbones[0]: backbone 'sedd-small' has no entry"),
    "unknown sampler": ("samplers: [euler, lsd++]\n", "config.samplers[1]: unknown sampler 'lsd++'"),
    "spread on the uniform graph": ("backbones: [oracle-exact, tiny-sedd-digits]\nsamplers: [euler, lsd-spread]\n",
                                    "config.samplers: 'lsd-spread' (method spread) needs an absorbing graph; "
                                    "backbone 'tiny-sedd-digits' (config.backbones[1]) is on the uniform graph"),
    "tauleap on the absorbing graph": ("samplers: [euler, tauleap]\n",
                                       "config.samplers: 'tauleap' (base tauleap) needs an ordinal graph; backbone "
                                       "'oracle-exact' (config.backbones[0]) is on the absorbing graph"),
    "unknown metric": ("backbone_settings:\n  oracle-exact: {metrics: [oracle_ppl, bleu]}\n",
                       "config.backbone_settings.oracle-exact.metrics[1]: unknown metric 'bleu'"),
    "nfe 0": ("nfe: [0, 8]\n", "config.nfe[0]: 0 is less than the minimum of 1"),
    "nfe string": ("nfe: ['8']\n", "config.nfe[0]: '8' is not of type 'integer'"),
    "nfe float": ("nfe: [8.0]\n", "config.nfe[0]: 8.0 must be a positive integer"),
    "duplicate nfe": ("nfe: [8, 16, 8]\n", "config.nfe[2]: 8 is listed twice (duplicate cells)"),
    "duplicate seed": ("seeds: [0, 0]\n", "config.seeds[1]: 0 is listed twice (duplicate cells)"),
    "duplicate sampler": ("samplers: [euler, tweedie, euler]\n",
                          "config.samplers[2]: sampler 'euler' is listed twice (duplicate cells)"),
    "duplicate yaml key": ("sampler_definitions:\n  mine: {method: uniform, base: euler}\n"
                           "  mine: {method: uniform, base: tweedie}\n", "bad.yaml line 4: key 'mine' appears twice"),
    "missing schedule file": ("samplers: [euler, mine]\nsampler_definitions:\n"
                              "  mine: {method: file, path: 'my/{backbone}/nfe{nfe}.json'}\n",
                              "config.sampler_definitions.mine.path: schedule file 'my/oracle-exact/nfe8.json'"),
    "temperature of nothing": ("sampler_definitions:\n  t: {method: temperature, match: lsd+++}\n",
                               "config.sampler_definitions.t.match: unknown sampler 'lsd+++'"),
    "learned without base": ("sampler_definitions:\n  mine: {method: lsd}\n",
                             "config.sampler_definitions.mine.base: required for method 'lsd'"),
    "unknown key": ("nfes: [8]\n", "config: Additional properties are not allowed ('nfes' was unexpected)"),
    "unknown device": ("device: tpu\n", "config.device: 'tpu' is not one of ['cpu', 'cuda']"),
    "old threads key": ("threads: {distill: 2}\n",
                        "config.threads: Additional properties are not allowed ('distill' was unexpected)"),
    "lsd nfe not dividing the candidates": ("nfe: [8, 48]\ndistill: {teacher_steps: 1024, candidates: 128}\n",
                                            "config.distill.candidates: 128 is not a multiple of NFE 48 of 'lsd-euler'"),
    "lsd+ nfe above the candidates": ("samplers: [lsd+-euler]\nnfe: [8, 256]\n"
                                      "distill: {teacher_steps: 1024, candidates: 128}\n",
                                      "config.distill.candidates: 128 is fewer than NFE 256 of 'lsd+-euler'"),
    "jys nfe above its fine grid": ("samplers: [jys-euler]\nsampler_definitions:\n"
                                    "  jys-euler: {method: jys, base: euler, fine_steps: 32}\n",
                                    "config.sampler_definitions.jys-euler.fine_steps: 32 is fewer than NFE 64"),
    "knob of another method": ("sampler_definitions:\n  lsd-euler: {method: lsd, base: euler, fine_steps: 256}\n",
                               "config.sampler_definitions.lsd-euler.fine_steps: only read by method jys, not 'lsd'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD)
def test_wrong_config_fails_in_one_line_naming_the_key(workdir, case):
    text, expected = BAD[case]
    (workdir / "bad.yaml").write_text("# a wrong config\n" + text)
    assert_refused_in_one_line(snakemake(workdir, "-n", "--configfile", "bad.yaml"), expected)


@pytest.mark.slow
def test_file_sampler_is_an_input_of_the_schedules_job(workdir):
    """A file sampler's schedule is read by `lsd schedules` (copied, labelled with the sampler's name);
    a temperature sampler matching a sampler outside the grid gets that schedule made too."""
    (workdir / "my" / "oracle-exact").mkdir(parents=True, exist_ok=True)
    (workdir / "my" / "oracle-exact" / "nfe8.json").write_text("{}")
    (workdir / "mine.yaml").write_text(
        "backbones: [oracle-exact]\nsamplers: [mine, temp@lsd+-euler-power]\nnfe: [8]\nseeds: [0]\n"
        "sampler_definitions:\n  mine: {method: file, path: 'my/{backbone}/nfe{nfe}.json'}\n")
    out = snakemake(workdir, "-n", "-p", "--configfile", "mine.yaml")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    assert job_counts(text) == {"schedules": 1, "sample": 1, "evaluate": 1, "report": 1, "all": 1}
    job = text.split("rule schedules:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"input: .*my/oracle-exact/nfe8\.json", job), job
    outputs = set(re.search(r"output: (.*)", job).group(1).split(", "))
    assert outputs == {f"results/mine/schedules/oracle-exact/{s}/nfe8/seed0.json"
                       for s in ("mine", "temp@lsd+-euler-power", "lsd+-euler-power")} | {
                           "results/mine/settings/schedules/oracle-exact/seed0.json"}
    samplers = json.loads(re.search(r"--samplers-json '([^']*)'", text).group(1))
    assert samplers["mine"] == {"method": "file", "path": "my/{backbone}/nfe{nfe}.json", "convention": "scale"}
    assert set(samplers) == {"mine", "temp@lsd+-euler-power", "lsd+-euler-power"}
    sample = text.split("rule sample:", 1)[1].split("\n\n", 1)[0]
    assert "lsd+-euler-power/" not in re.search(r"output: (.*)", sample).group(1).replace("temp@lsd+-euler-power", "")


def test_schema_documents_every_key_with_a_default():
    schema = lsd_workflow.load_schema()

    def resolve(node):
        if "$ref" in node:
            target = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            sub = resolve(sub)
            assert "description" in sub, f"{where}.{key}: no description"
            if key not in node.get("required", []):
                assert "default" in sub, f"{where}.{key}: no default"
            walk(sub, f"{where}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{where}.*")

    walk(schema, "config")


def test_plan_defaults_and_layout():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    plan = lsd_workflow.plan(config)
    assert config["hub"] == {"download": True, "cache": "work/hf-hub", "offline": True}
    teacher = [c for c in plan.cells if c.sampler == "teacher"]
    assert {c.nfe for c in teacher} == {config["distill"]["teacher_steps"]}
    assert plan.env() == "HF_HUB_OFFLINE=1"  # embedded backbones: no Hub cache to point at
    assert plan.units == [(b, s) for b in config["backbones"] for s in config["seeds"]]
    # the files of a unit: patterns of {backbone} and {seed}, one per (sampler, NFE), in the same order
    schedules, samples, records = plan.unit_sample_schedules(), plan.unit_samples(), plan.unit_records()
    assert len(schedules) == len(samples) == len(records) == len(plan.unit_cells)
    assert plan.name == "default"
    assert schedules[0] == "results/default/schedules/{backbone}/euler/nfe8/seed{seed}.json"
    assert samples[0] == "work/default/samples/{backbone}/euler/nfe8/seed{seed}.safetensors"
    assert records[-1] == (f"results/default/records/{{backbone}}/teacher/nfe{config['distill']['teacher_steps']}"
                           "/seed{seed}.json")
    assert set(plan.unit_schedules()) == set(schedules)  # every matched sampler is in the grid
    w = type("W", (), {"backbone": "oracle-exact", "seed": "2"})()
    flags = plan.schedules_flags(w)
    assert flags.startswith("--nfe 8 16 32 64 --samplers-json ") and "--device cpu" in flags
    samplers = json.loads(re.search(r"--samplers-json '([^']*)'", flags).group(1))
    assert set(samplers) == set(config["samplers"])
    assert samplers["lsd+-euler-power"] == {"method": "lsd+", "base": "euler", "convention": "power"}
    assert samplers["temp@lsd+-euler"]["match"] == "lsd+-euler"
    assert samplers["lsd+-euler-exact"] == {"method": "lsd+", "base": "euler", "convention": "scale", "fit": "exact",
                                            "start": "marginal"}
    assert samplers["euler-T0.7"] == {"method": "uniform", "base": "euler", "convention": "scale", "temperature": 0.7}
    assert not any(v is None for d in samplers.values() for v in d.values())  # unset keys left out
    distill = json.loads(re.search(r"--distill-json '([^']*)'", flags).group(1))
    assert distill == {**{k: config["distill"].get(k, 128) for k in lsd_workflow.DISTILL_KEYS},
                       "batch_size": config["backbone_settings"]["oracle-exact"]["batch_size"]}
    assert plan.schedule_dir(w) == "results/default/schedules/oracle-exact"


def test_a_sampler_with_its_own_nfe_list():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, {"backbones": ["oracle-exact"], "samplers": ["euler", "fine"], "nfe": [8], "seeds": [0],
                           "sampler_definitions": {"fine": {"method": "lsd+", "base": "euler", "nfe": [16, 32]}}})
    plan = lsd_workflow.plan(config)
    assert plan.unit_cells == [("euler", 8), ("fine", 16), ("fine", 32)]
    w = type("W", (), {"backbone": "oracle-exact", "seed": "0"})()
    assert plan.schedules_flags(w).startswith("--nfe 8 --samplers-json ")  # the grid's; `fine` keeps its own
    samplers = json.loads(re.search(r"--samplers-json '([^']*)'", plan.schedules_flags(w)).group(1))
    assert samplers["fine"]["nfe"] == [16, 32]


# ---------------------------------------------------------------------------------------
# Each config its own folders; settings stamps
# ---------------------------------------------------------------------------------------
def test_a_config_is_named_by_its_file():
    assert lsd_workflow.resolve_name({}, []) == "default"
    assert lsd_workflow.resolve_name({}, [Path("workflow/configs/paper.yaml")]) == "paper"
    assert lsd_workflow.resolve_name({}, ["smoke.yaml", "only.yml"]) == "only"  # the last file given
    assert lsd_workflow.resolve_name({"name": "mine"}, ["smoke.yaml"]) == "mine"
    with pytest.raises(lsd_workflow.ConfigError, match=r"^config.name \(from my config.yaml\): 'my config'"):
        lsd_workflow.resolve_name({}, ["my config.yaml"])
    with pytest.raises(lsd_workflow.ConfigError, match=r"^config.name: '\.\.' is not a folder name"):
        lsd_workflow.resolve_name({"name": ".."}, [])


def test_committed_default_results_carry_the_stamps_the_default_asks_for(monkeypatch):
    """What `make run` reuses: every committed schedules and evaluate job of the embedded default,
    and the report, were made with the settings config.yaml asks for."""
    monkeypatch.chdir(REPO)
    plan = shipped_plan("default")
    for backbone, seed in plan.units:
        for step in ("schedules", "evaluate"):
            assert Path(plan.stamp_path(step, backbone, seed)).is_file(), (step, backbone, seed)
            assert plan.stale(step, backbone, seed) is None
    assert plan.stale("report") is None
    for path in plan.records() + plan.learned_schedules() + list(plan.report_outputs().values()):
        assert Path(path).exists(), path


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A copy of a fresh clone: the workflow, the checkpoints and the committed results."""
    return clone_like_copy(REPO, tmp_path_factory.mktemp("clone"), WORKFLOW_FILES + ("checkpoints", "results"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_config_plans_its_grid_in_a_clone_with_committed_results(clone, name):
    """Committed results of one config never stand in for another's; the embedded default reuses
    its committed schedules and records and reruns only what is not committed (the samples)."""
    out = snakemake(clone, "-n", *(["--configfile", SHIPPED[name]] if SHIPPED[name] else []))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    counts = job_counts(text)
    plan = shipped_plan(name, clone)
    units = len(plan.units)
    if name == "default":
        assert counts == {"sample": units, "evaluate": units, "report": 1, "all": 1}
        assert "schedules" not in counts
    else:
        assert counts["schedules"] == counts["sample"] == counts["evaluate"] == units
        assert counts["report"] == counts["all"] == 1
    assert_nothing_stale(clone / "work" / name)


def assert_nothing_stale(work: Path) -> None:
    """Every rerun request of a config says its settings agree with the stamps, dated 1970."""
    requests = list((work / "rerun").rglob("*.txt"))
    assert requests
    for request in requests:
        assert request.read_text() == lsd_workflow.SETTLED and request.stat().st_mtime == 0, request


def _unit(backbone, seed):
    return type("W", (), {"backbone": backbone, "seed": str(seed)})()


def test_stamps_mark_exactly_the_jobs_a_change_affects(tmp_path, monkeypatch):
    """Stamps written for one config; each change marks exactly the jobs whose settings it changes."""
    monkeypatch.chdir(tmp_path)
    base = {"backbones": ["oracle-exact", "tiny-sedd-text"], "samplers": ["euler", "lsd+-euler"], "nfe": [8],
            "seeds": [0, 1], "name": "t"}

    def plan_of(change):
        config = yaml.safe_load((REPO / "config.yaml").read_text())
        update_config(config, base)
        update_config(config, change)
        return lsd_workflow.plan(config)

    made = plan_of({})
    for step in lsd_workflow.STEPS:
        for b, seed in made.units:
            lsd_workflow.write_text_atomic(Path(made.stamp_path(step, b, seed)), made.stamp_text(step, b, seed))
    lsd_workflow.write_text_atomic(Path(made.stamp_path("report")), made.stamp_text("report"))

    def stale(change) -> set:
        plan = plan_of(change)
        out = {(step, b, seed) for step in lsd_workflow.STEPS for b, seed in plan.units
               if plan.stale(step, b, seed)}
        return out | ({"report"} if plan.stale("report") else set())

    units = made.units
    assert stale({}) == set()
    assert stale({"distill": {"zeta": 0.1}}) == {("schedules", b, s) for b, s in units}
    assert stale({"sampler_definitions": {"lsd+-euler": {"convention": "power"}}}) == {
        ("schedules", b, s) for b, s in units}
    assert stale({"backbone_settings": {"tiny-sedd-text": {"num_samples": 7}}}) == {
        ("sample", "tiny-sedd-text", 0), ("sample", "tiny-sedd-text", 1)}
    assert stale({"backbone_settings": {"oracle-exact": {"metrics": ["entropy"]}}}) == {
        ("evaluate", "oracle-exact", 0), ("evaluate", "oracle-exact", 1)}
    assert stale({"backbone_settings": {"oracle-exact": {"batch_size": 3}}}) == set()  # splits work only
    assert stale({"sample_coupling": "independent"}) == {("sample", b, s) for b, s in units}
    assert stale({"device": "cuda"}) == {(step, b, s) for step in lsd_workflow.STEPS for b, s in units}
    assert stale({"seeds": [0]}) == {"report"}
    assert stale({"samplers": ["lsd+-euler"]}) == {"report"}  # the other schedules stay what they were
    assert stale({"nfe": [8, 16]}) == {"report"}  # NFE 16: missing outputs, which rerun the jobs anyway
    # every job has a rerun request among its inputs: dated 1970 while its settings agree; for a
    # stale job it is rewritten now and says why in one line
    changed = plan_of({"distill": {"zeta": 0.1}})
    settled = changed.rerun_request("sample")(_unit("oracle-exact", 0))
    assert settled == ["work/t/rerun/sample/oracle-exact/seed0.txt"]
    assert Path(settled[0]).read_text() == lsd_workflow.SETTLED and Path(settled[0]).stat().st_mtime == 0
    stale_request = changed.rerun_request("schedules")(_unit("oracle-exact", 0))
    assert stale_request == ["work/t/rerun/schedules/oracle-exact/seed0.txt"]
    assert Path(stale_request[0]).stat().st_mtime > time.time() - 60
    text = Path(stale_request[0]).read_text()
    assert text.count("\n") == 1
    assert text.startswith("results/t/settings/schedules/oracle-exact/seed0.json: made with other settings than "
                           "the config asks for: distill.zeta: 0.05 recorded, 0.1 asked for")
    # an unreadable stamp is stale too
    Path(made.stamp_path("evaluate", "oracle-exact", 0)).write_text("{not json")
    assert ("evaluate", "oracle-exact", 0) in stale({})
    # a step whose predecessor lost its stamp (an interrupted run) is stale: its inputs' settings are unknown
    Path(made.stamp_path("sample", "oracle-exact", 1)).unlink()
    assert stale({}) == {("evaluate", "oracle-exact", 0), ("evaluate", "oracle-exact", 1)}


# ---------------------------------------------------------------------------------------
# Environments and names agree with the package
# ---------------------------------------------------------------------------------------
def _requirement(text: str):
    from packaging.requirements import Requirement

    r = Requirement(text)
    return r.name.lower().replace("_", "-"), str(r.specifier)


@pytest.mark.parametrize("env", ["cpu.yaml", "cuda.yaml"])
def test_conda_env_pins_what_pyproject_pins(env):
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_requirement(d) for d in project["dependencies"])
    driver = {n for n in wanted if n.startswith("snakemake")}  # run Snakemake itself, not the rules
    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    deps = spec["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert len(python) == 1
    version = python[0].split("=", 1)[1].lstrip("=")
    assert version in SpecifierSet(project["requires-python"])
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    have = dict(_requirement(d) for d in pip)
    assert have == {n: s for n, s in wanted.items() if n not in driver}


def test_workflow_names_are_the_registry_names():
    from lsd.backbones.registry import HUB_IDS, backbone_names

    assert lsd_workflow.HUB_REPOS == HUB_IDS
    schema = lsd_workflow.load_schema()
    assert set(schema["$defs"]["backbone_name"]["enum"]) <= set(backbone_names())
    from lsd.evaluate import METRIC_SETS

    assert set(schema["$defs"]["metric_name"]["enum"]) == set(METRIC_SETS)
    # the graphs the parse-time sampler checks assume are the ones the embedded backbones load with
    from lsd.backbones.registry import TRAINED, load_backbone

    for name in ("oracle-exact", *TRAINED):
        graph = load_backbone(name).graph
        kind = "absorbing" if graph.absorbing else graph.name
        assert lsd_workflow.GRAPH_OF.get(name, "absorbing") == kind, name
        assert (kind in lsd_workflow.ORDINAL_GRAPHS) == bool(getattr(graph, "ordinal", False)), name
    for name, task in lsd_workflow.TASK_OF.items():
        assert load_backbone(name).info["task"] == task, name
    import inspect

    from lsd.optimize.jys import jys_schedule

    assert inspect.signature(jys_schedule).parameters["fine_steps"].default == lsd_workflow.JYS_FINE_STEPS


def test_distillation_defaults_are_one_table():
    """The schema's distill defaults and `lsd distill`'s are lsd/workflow_facts.py's DISTILL_DEFAULTS."""
    from lsd.cli import build_parser
    from lsd.workflow_facts import DISTILL_DEFAULTS

    schema = lsd_workflow.load_schema()["properties"]["distill"]["properties"]
    assert {k: schema[k]["default"] for k in lsd_workflow.DISTILL_KEYS} == {
        k: DISTILL_DEFAULTS[k] for k in lsd_workflow.DISTILL_KEYS}
    args = build_parser().parse_args(["distill", "--backbone", "oracle-exact", "--method", "lsd", "--nfe", "8",
                                      "--out", "s.json"])
    cli = {k: getattr(args, k) for k in DISTILL_DEFAULTS}
    assert {**cli, "zeta": float(cli["zeta"])} == DISTILL_DEFAULTS


def test_planning_a_config_reads_the_library_facts_without_importing_the_library():
    """The Snakefile's Python stays quick: the facts come from lsd/workflow_facts.py, loaded by its
    path, not from the `lsd` package (which imports torch)."""
    code = ("import sys, yaml; sys.path.insert(0, 'workflow/lib'); import lsd_workflow; "
            "lsd_workflow.plan(yaml.safe_load(open('config.yaml'))); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lsd', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------
# lsd report
# ---------------------------------------------------------------------------------------
SAMPLERS = ["euler", "lsd+-euler", "teacher"]
NFES = [8, 16, 32]


def make_records(folder: Path, seeds=(0, 1, 2)) -> None:
    """Synthetic records: a perplexity (lower is better, with intervals), an entropy and a floor."""
    from lsd.metrics.records import make_record, write_record
    from lsd.schedule import Schedule

    rng = np.random.default_rng(0)
    for backbone in ("oracle-exact", "tiny-sedd-text"):
        for sampler in SAMPLERS:
            for nfe in ([1024] if sampler == "teacher" else NFES):
                for seed in seeds:
                    ppl = 300 / math.sqrt(nfe) * (0.5 if sampler == "lsd+-euler" else 1) + rng.random()
                    metrics = {"oracle_ppl_corpus": {"value": ppl, "interval": (ppl - 1, ppl + 1.5)},
                               "entropy": {"value": 3 + rng.random() / 10, "interval": (2.9, 3.2)},
                               "oracle_ppl_floor": 4.5}
                    record = make_record(backbone=backbone, sampler=sampler, nfe=nfe, seed=seed,
                                         metric_set="oracle_ppl+entropy", metrics=metrics, num_samples=64)
                    write_record(folder / "records" / backbone / sampler / f"nfe{nfe}" / f"seed{seed}.json", record)
                    if sampler == "lsd+-euler":
                        times = [1 - (1 - 1e-5) * (k / nfe) ** 1.5 for k in range(nfe + 1)]
                        coefficients = list(1 + 0.1 * rng.random(nfe))
                        schedule = Schedule(base="euler", times=times, coefficients=coefficients)
                    else:
                        schedule = Schedule.uniform("euler", nfe)
                    schedule.save(folder / "schedules" / backbone / sampler / f"nfe{nfe}" / f"seed{seed}.json")


def parse_table(tex: str):
    """(header cells, {row label: [cell text]}) of a table written by lsd report."""
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}")
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    body = tex.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    head, rows = body.split(r"\midrule")
    header = [c.strip() for c in head.strip().removesuffix(r"\\").split("&")]
    assert len(header) == len(spec)
    table = {}
    for line in rows.strip().splitlines():
        cells = [c.strip() for c in line.strip().removesuffix(r"\\").split("&")]
        assert len(cells) == len(spec), line
        table[cells[0].replace(r"\_", "_")] = cells[1:]
    return header, table


CELL = re.compile(r"^(?:\\textbf\{)?(?P<mean>[-0-9.]+)(?: \{\\scriptsize \[(?P<low>[-0-9.]+), (?P<high>[-0-9.]+)\]\})?\}?$")


def test_report_tables_equal_the_csv(tmp_path):
    from lsd.cli import main
    from lsd.metrics.intervals import seed_interval
    from lsd.report import format_number, metric_domain

    make_records(tmp_path)
    out = tmp_path / "results"
    assert main(["--threads", "1", "report", "--records", str(tmp_path / "records"), "--schedules",
                 str(tmp_path / "schedules"), "--samplers", *SAMPLERS, "--out", str(out)]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert len(metrics) == 2 * (2 * 3 + 1) * 3 * 3  # backbones x cells x seeds x metrics
    # summary = metrics over seeds
    for key, g in metrics.groupby(["backbone", "sampler", "nfe", "metric"]):
        row = summary[(summary[["backbone", "sampler", "nfe", "metric"]] == pd.Series(dict(zip(
            ["backbone", "sampler", "nfe", "metric"], key)))).all(axis=1)]
        assert len(row) == 1
        iv = seed_interval(g["value"].to_numpy(), domain=metric_domain(key[3]))
        assert np.isclose(row["mean"].iloc[0], g["value"].mean())
        assert np.isclose(row["low"].iloc[0], iv.low) and np.isclose(row["high"].iloc[0], iv.high)
    tables = sorted(p.name for p in (out / "tables").glob("*.tex") if not p.name.endswith("__vs_euler.tex"))
    # one table per backbone and metric; the floor is a reference, not a table
    assert tables == [f"{b}__{m}.tex" for b in ("oracle-exact", "tiny-sedd-text")
                      for m in ("entropy", "oracle_ppl_corpus")]
    for name in tables:
        backbone, metric = name.removesuffix(".tex").split("__")
        header, rows = parse_table((out / "tables" / name).read_text())
        assert header == ["Sampler"] + [f"NFE={n}" for n in NFES + [1024]]  # one column per NFE
        assert list(rows) == SAMPLERS  # one row per sampler, in the order asked for
        bold = {}
        for sampler, cells in rows.items():
            for nfe, cell in zip(NFES + [1024], cells):
                s = summary[(summary["backbone"] == backbone) & (summary["metric"] == metric)
                            & (summary["sampler"] == sampler) & (summary["nfe"] == nfe)]
                if s.empty:
                    assert cell == "--"
                    continue
                m = CELL.match(cell)
                assert m, cell
                assert m["mean"] == format_number(s["mean"].iloc[0])
                assert m["low"] == format_number(s["low"].iloc[0])
                assert m["high"] == format_number(s["high"].iloc[0])
                if cell.startswith(r"\textbf"):
                    bold.setdefault(nfe, []).append(sampler)
        if metric == "entropy":
            assert bold == {}  # no best entropy
        else:
            assert bold == {n: ["lsd+-euler"] for n in NFES}  # lowest perplexity per column
        if metric == "oracle_ppl_corpus":
            assert "oracle\\_ppl\\_floor = 4.500" in (out / "tables" / name).read_text()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == sorted(f"{b}__{x}.png" for b in ("oracle-exact", "tiny-sedd-text")
                             for x in ("metrics_vs_nfe", "oracle_ppl_corpus_vs_entropy", "lsd+-euler__schedule"))
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.md").read_text()
    for name in tables + figures:
        assert name in readme
    assert "oracle_ppl_floor = 4.500" in readme
    # precision: the gap (Euler at the smallest NFE vs teacher) against the widest interval
    precise = pd.read_csv(out / "precision.csv")
    assert sorted(precise["metric"]) == ["oracle_ppl_corpus"] * 2  # entropy has no direction
    for _, r in precise.iterrows():
        cells = summary[(summary["backbone"] == r["backbone"]) & (summary["metric"] == r["metric"])]
        euler = cells[(cells["sampler"] == "euler") & (cells["nfe"] == min(NFES))]["mean"].iloc[0]
        teacher = cells[cells["sampler"] == "teacher"]["mean"].iloc[0]
        assert r["gap"] == pytest.approx(abs(euler - teacher))
        others = cells[cells["sampler"] != "teacher"]
        widths = others["high"] - others["low"]
        assert r["widest_interval"] == pytest.approx(widths.max())
        assert r["cells_wider_than_tenth"] == int((widths > r["gap"] / 10).sum())
    assert "## Precision" in readme
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob(".*.png"))  # atomic writes left nothing


def compile_tables(tables, scratch: Path) -> None:
    """Compile each LaTeX table (a booktabs `table` environment) in a minimal article with pdflatex;
    a table that breaks LaTeX fails, naming the table. Without pdflatex: a failure under CI (.ci/run
    installs it from the Debian packages), a skip elsewhere."""
    tables = sorted(Path(t) for t in tables)
    assert tables, "no tables to compile"
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is not installed: CI compiles every table (.ci/run installs texlive)")
        pytest.skip("pdflatex not installed (CI installs it and compiles the tables)")
    scratch.mkdir(parents=True, exist_ok=True)
    for tex in tables:
        doc = scratch / f"{tex.parent.parent.name}-{tex.stem}.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
                       + tex.read_text() + "\\end{document}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=scratch,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{tex}: pdflatex failed\n{run.stdout[-2000:]}"
        assert (scratch / f"{doc.stem}.pdf").is_file(), tex


def test_report_tables_compile(tmp_path):
    from lsd.report import build_report

    make_records(tmp_path, seeds=(0, 1))
    build_report(tmp_path / "records", tmp_path / "out", samplers=SAMPLERS)
    compile_tables((tmp_path / "out" / "tables").glob("*.tex"), tmp_path / "latex")


def test_committed_default_tables_compile(tmp_path):
    tables = list((REPO / "results" / "default" / "tables").glob("*.tex"))
    assert len(tables) == len(set(tables)) > 0
    compile_tables(tables, tmp_path / "latex")


def test_report_filters_single_seed_and_duplicates(tmp_path):
    from lsd.metrics.records import make_record, write_record
    from lsd.report import ReportError, build_report

    make_records(tmp_path, seeds=(0,))
    out = tmp_path / "one"
    build_report(tmp_path / "records", out, samplers=["euler"], nfe=[8, 16], backbones=["tiny-sedd-text"])
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["sampler"]) == {"euler"} and set(summary["nfe"]) == {8, 16}
    assert set(summary["backbone"]) == {"tiny-sedd-text"}
    # one seed: the record's own interval over samples
    ppl = summary[summary["metric"] == "oracle_ppl_corpus"]
    assert (ppl["interval"] == "samples").all()
    assert np.allclose(ppl["high"] - ppl["mean"], 1.5)
    tex = (out / "tables" / "tiny-sedd-text__oracle_ppl_corpus.tex").read_text()
    assert "One seed" in tex
    header, rows = parse_table(tex)
    assert header == ["Sampler", "NFE=8", "NFE=16"] and list(rows) == ["euler"]
    # the same metric of the same cell in two records is an error naming both files
    record = make_record(backbone="tiny-sedd-text", sampler="euler", nfe=8, seed=0, metric_set="again",
                         metrics={"entropy": 3.0}, num_samples=1)
    write_record(tmp_path / "records" / "extra.json", record)
    with pytest.raises(ReportError, match=r"metric 'entropy' of tiny-sedd-text/euler/NFE 8/seed 0 .*extra.json"):
        build_report(tmp_path / "records", tmp_path / "dup")
    with pytest.raises(ReportError, match="no result records"):
        build_report(tmp_path / "records", tmp_path / "none", samplers=["nothing"])


# ---------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------
def load_all(backbones) -> None:
    """Load each backbone of a smoke run first: a broken loader fails the test here, naming the backbone."""
    from lsd.backbones.registry import load_backbone

    for name in backbones:
        assert load_backbone(name).name == name


SMOKE_BACKBONES = yaml.safe_load((REPO / SHIPPED["smoke"]).read_text())["backbones"]


def run_smoke(tmp_path: Path, backbones) -> Path:
    """The smoke config (restricted to `backbones`) with 2 cores; returns the results folder."""
    workdir = copy_workflow(tmp_path)
    (workdir / "only.yaml").write_text(yaml.safe_dump({"backbones": list(backbones)}))
    args = ["--configfile", SHIPPED["smoke"], "only.yaml"]
    out = snakemake(workdir, "--cores", "2", *args, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-5000:]
    results = workdir / "results" / "only"  # named by the last config file
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["only"]
    metrics = pd.read_csv(results / "metrics.csv")
    assert set(metrics["backbone"]) == set(backbones)
    assert set(metrics["sampler"]) == {"euler", "lsd+-euler", "lsd-spread"}
    assert set(metrics["nfe"]) == {8} and set(metrics["seed"]) == {0}
    assert len(metrics.groupby(["backbone", "sampler"])) == 3 * len(backbones)
    assert (results / "README.md").is_file() and list((results / "tables").glob("*.tex"))
    # the learned ones: lsd+ and lsd-spread (a selection rule counts as learned even on a uniform grid)
    assert len(list((results / "figures").glob("*__schedule.png"))) == 2 * len(backbones)
    for record in (results / "records").rglob("*.json"):
        assert json.loads(record.read_text())["schema"] == "lsd-result/1"
    assert list((results / "benchmarks").rglob("*.tsv")) and list((results / "logs").rglob("*.log"))
    again = snakemake(workdir, "-n", *args)  # a second run has nothing to do
    assert "Nothing to be done" in again.stdout + again.stderr
    assert_nothing_stale(workdir / "work" / "only")
    return results


def check_reruns(workdir: Path) -> None:
    """After a completed run of smoke.yaml + only.yaml: what each change of settings replans (dry runs),
    from the settings stamps alone: without Snakemake's own records (.snakemake/, never committed),
    whose params trigger would otherwise rerun a job whose command line changed."""
    shutil.rmtree(workdir / ".snakemake")

    def planned(change: str) -> dict:
        (workdir / "change.yaml").write_text("name: only\n" + change)  # same folders as the run
        out = snakemake(workdir, "-n", "--configfile", SHIPPED["smoke"], "only.yaml", "change.yaml")
        text = out.stdout + out.stderr
        assert out.returncode == 0, text[-3000:]
        return {} if "Nothing to be done" in text else job_counts(text)

    assert planned("") == {}
    assert planned("distill: {zeta: 0.1}\n") == {"schedules": 1, "sample": 1, "evaluate": 1, "report": 1, "all": 1}
    assert planned("backbone_settings:\n  oracle-exact: {num_samples: 8}\n") == {
        "sample": 1, "evaluate": 1, "report": 1, "all": 1}
    assert planned("backbone_settings:\n  oracle-exact: {metrics: [entropy]}\n") == {
        "evaluate": 1, "report": 1, "all": 1}
    assert planned("samplers: [euler, lsd+-euler]\n") == {"report": 1, "all": 1}
    assert planned("") == {}  # the requests of the dry runs above are dated back once settings agree again
    # a copy of a fresh clone of the results (no .snakemake/, no samples): the schedules are reused
    fresh = clone_like_copy(workdir, workdir.parent / "fresh", WORKFLOW_FILES + ("only.yaml", "results"))
    out = snakemake(fresh, "-n", "--configfile", SHIPPED["smoke"], "only.yaml")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert job_counts(text) == {"sample": 1, "evaluate": 1, "report": 1, "all": 1}
    # a run made because of a stamp, then the same config again: nothing to do, although Snakemake
    # now remembers the run (its "set of input files changed" trigger sees the same inputs)
    (workdir / "change.yaml").write_text("name: only\nbackbone_settings:\n  oracle-exact: {metrics: [entropy]}\n")
    args = ["--configfile", SHIPPED["smoke"], "only.yaml", "change.yaml"]
    out = snakemake(workdir, "--cores", "2", *args, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert (workdir / ".snakemake").is_dir()
    again = snakemake(workdir, "-n", *args)
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
    assert_nothing_stale(workdir / "work" / "only")


@pytest.mark.slow
def test_smoke_workflow_end_to_end_on_the_exact_backbone(tmp_path):
    load_all(["oracle-exact"])
    (tmp_path / "run").mkdir()
    results = run_smoke(tmp_path / "run", ["oracle-exact"])
    compile_tables((results / "tables").glob("*.tex"), tmp_path / "latex")
    check_reruns(tmp_path / "run")


@pytest.mark.slow
def test_smoke_workflow_end_to_end(tmp_path):
    load_all(SMOKE_BACKBONES)
    (tmp_path / "run").mkdir()
    results = run_smoke(tmp_path / "run", SMOKE_BACKBONES)
    compile_tables((results / "tables").glob("*.tex"), tmp_path / "latex")


# ---------------------------------------------------------------------------------------
# What the workflow passes to `lsd schedules` reaches the optimisers (lsd.optimize.plan)
# ---------------------------------------------------------------------------------------
def test_make_schedules_reads_the_knobs_of_a_definition(tmp_path):
    from lsd.backbones.registry import load_backbone
    from lsd.optimize.plan import make_schedules
    from lsd.schedule import Schedule

    bb = load_backbone("toy-absorbing")
    for nfe in (2, 4):
        Schedule.uniform("tweedie", nfe).save(tmp_path / f"mine-{bb.name}-{nfe}-1.json")
    samplers = {
        "jys": {"method": "jys", "base": "euler", "fine_steps": 16, "iterations": 2, "quadrature": 1,
                "trajectories": 8},
        "lsd": {"method": "lsd", "base": "euler", "nfe": [4]},
        "mine": {"method": "file", "path": str(tmp_path / "mine-{backbone}-{nfe}-{seed}.json")},
        "temp@lsd": {"method": "temperature", "match": "lsd", "nfe": [4], "num_samples": 8, "iterations": 2},
    }
    made = make_schedules(bb, samplers, [2, 4], 1, {"teacher_steps": 32, "trajectories": 8, "candidates": 16,
                                                    "batch_size": 8},
                          data_fn=lambda n, seed: bb.model.dist.sample(n, seed=seed), log=lambda *a: None)
    assert set(made) == {("jys", 2), ("jys", 4), ("lsd", 4), ("mine", 2), ("mine", 4), ("temp@lsd", 4)}
    jys = made[("jys", 4)].metadata
    assert (jys["fine_steps"], jys["iterations"], jys["quadrature"], jys["data_size"]) == (16, 2, 1, 8)
    temp = made[("temp@lsd", 4)].metadata
    assert temp["num_samples"] == 8 and len(temp["search"]) <= 2 + 2
    assert made[("mine", 4)].base == "tweedie" and made[("mine", 4)].nfe == 4
    assert {s.metadata["sampler"] for s in made.values()} == {"jys", "lsd", "mine", "temp@lsd"}
