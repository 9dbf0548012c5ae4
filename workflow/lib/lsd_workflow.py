"""The workflow's planning helper: checks a config and lays out the jobs of the grid.

The grid is backbones x samplers x NFE x seeds, one file per cell; the unit of work is
(backbone, seed): one `lsd schedules`, one `lsd sample` and one `lsd evaluate` job each, over
every (sampler, NFE) pair of the grid (one process start-up, one shared teacher rollout).

Plain Python for the Snakefile and the tests; it never imports the `lsd` package (the
CLI is the only seam between workflow and library). Everything the workflow knows about
names lives in the config schema's enums (workflow/schemas/config.schema.json), except
the Hub repositories of the download rules, listed here (a test checks them against
lsd.backbones.registry).

A bad config fails at parse time with one line naming the key:
- `schema_check`: the JSON schema (types, enums of known names, NFE >= 1, ...);
- `duplicate_key_check`: a key written twice in one mapping of a YAML file (YAML keeps
  the last one silently);
- `Plan(config)`: what a schema cannot say: names that must refer to each other, repeated
  grid entries (duplicate cells), files a `file` sampler points to, NFE that LSD, LSD+ or
  JYS cannot reach with the configured candidate times or fine grid, knobs given to a
  method that does not read them.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.json"

# Output layout (relative to the working directory): one file per cell (backbone, sampler,
# NFE, seed); one job, log and benchmark per unit of work (backbone, seed) and rule.
RESULTS = "results"
SCHEDULE_DIR = RESULTS + "/schedules/{backbone}"
SCHEDULE = RESULTS + "/schedules/{backbone}/{sampler}/nfe{nfe}/seed{seed}.json"
RECORD = RESULTS + "/records/{backbone}/{sampler}/nfe{nfe}/seed{seed}.json"
SAMPLES = "{work}/samples/{backbone}/{sampler}/nfe{nfe}/seed{seed}.safetensors"
LOG = RESULTS + "/logs/{rule}/{backbone}/seed{seed}.log"
BENCHMARK = RESULTS + "/benchmarks/{rule}/{backbone}/seed{seed}.tsv"
DOWNLOAD_LOG = RESULTS + "/logs/download/{repo_dir}.log"
REPORT_LOG = RESULTS + "/logs/report.log"
REPORT_BENCHMARK = RESULTS + "/benchmarks/report.tsv"
FID_STATS_LOG = RESULTS + "/logs/fid_stats.log"
FID_STATS_BENCHMARK = RESULTS + "/benchmarks/fid_stats.tsv"
REPORT_OUTPUTS = {
    "csv": RESULTS + "/metrics.csv",
    "summary": RESULTS + "/summary.csv",
    "precision": RESULTS + "/precision.csv",
    "tables": RESULTS + "/tables",
    "figures": RESULTS + "/figures",
    "readme": RESULTS + "/README.md",
}

# Hub repositories of the named Hub backbones (mirrors lsd.backbones.registry.HUB_IDS),
# the tokenizer their tokens are in, and which files each download needs.
HUB_REPOS = {
    "sedd-small": "louaaron/sedd-small",
    "sedd-medium": "louaaron/sedd-medium",
    "radd": "JingyangOu/radd-t-dce",
    "radd-lambda": "JingyangOu/radd-lambda-dce",
}
HUB_TOKENIZER = "gpt2"
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.bin", "*.txt")
TOKENIZER_FILES = ("*.json", "*.txt")
EVALUATOR_FILES = ("*.json", "*.txt", "model.safetensors")  # not the TF/Flax/ONNX copies

DISTILLED = ("jys", "lsd", "lsd+", "spread")
NEEDS_BASE = ("uniform", "teacher") + DISTILLED
# What `lsd schedules --distill-json` takes from the config (batch_size comes from backbone_settings).
DISTILL_KEYS = ("teacher_steps", "zeta", "trajectories", "coupling", "candidates")
# Sampler definition keys that only some methods read (the others ignore them).
METHOD_KEYS = {"fine_steps": ("jys",), "quadrature": ("jys",), "iterations": ("jys", "temperature"),
               "num_samples": ("temperature",)}
JYS_FINE_STEPS = 1024  # lsd.optimize.jys.jys_schedule's default fine grid
# Registered backbones not on the absorbing graph (lsd.backbones.registry): the spread rule
# needs an absorbing graph, tau-leaping an ordinal one (the CTMC image graphs).
GRAPH_OF = {"tiny-sedd-digits": "uniform", "tiny-tauldr-digits": "gaussian", "tauldr-cifar10": "gaussian"}
ORDINAL_GRAPHS = ("gaussian",)
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class ConfigError(ValueError):
    """A bad config: the message is one line that starts with the offending key."""


def load_schema(path=SCHEMA) -> dict:
    return json.loads(Path(path).read_text())


def _key(path) -> str:
    """config.a.b[2] from a sequence of keys and indices."""
    out = "config"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _one_line(text) -> str:
    return " ".join(str(text).split())


def schema_check(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError for the most relevant schema violation (jsonschema's best_match)."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        message = error.message
        if error.validator == "enum" and len(message) > 300:
            message = f"{error.instance!r} is not one of the allowed values"
        raise ConfigError(f"{_key(error.absolute_path)}: {_one_line(message)}")


def duplicate_key_check(paths) -> None:
    """Raise ConfigError when a YAML file repeats a key inside one mapping."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{key_node.start_mark.name} line {key_node.start_mark.line + 1}: key {key!r} "
                                  f"appears twice in one mapping (first on line {seen[key]}): a duplicate entry")
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    for path in paths:
        path = Path(path)
        if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
            continue
        with open(path) as f:
            yaml.load(f, Loader=StrictLoader)


@dataclass(frozen=True)
class Cell:
    backbone: str
    sampler: str
    nfe: int
    seed: int

    @property
    def wildcards(self) -> dict:
        return {"backbone": self.backbone, "sampler": self.sampler, "nfe": self.nfe, "seed": self.seed}


def _check_int_list(config: dict, key: str, minimum: int) -> list[int]:
    values = config[key]
    seen = set()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(f"{_key([key, i])}: {v!r} must be {what}")
        if v in seen:
            raise ConfigError(f"{_key([key, i])}: {v} is listed twice (duplicate cells)")
        seen.add(v)
    return list(values)


def _check_names(config: dict, key: str, known, what: str) -> list[str]:
    seen = set()
    for i, name in enumerate(config[key]):
        if name not in known:
            raise ConfigError(f"{_key([key, i])}: unknown {what} {name!r}; choose one of {sorted(known)}")
        if name in seen:
            raise ConfigError(f"{_key([key, i])}: {what} {name!r} is listed twice (duplicate cells)")
        seen.add(name)
    return list(config[key])


class Plan:
    """A checked config and the jobs it implies. Construct after the schema check and defaults."""

    def __init__(self, config: dict, schema: dict | None = None):
        schema = schema if schema is not None else load_schema()
        self.config = config
        self.known_backbones = list(schema["$defs"]["backbone_name"]["enum"])
        self.known_metrics = list(schema["$defs"]["metric_name"]["enum"])
        self.definitions = config["sampler_definitions"]
        self.settings = config["backbone_settings"]
        self.distill = config["distill"]
        self.hub = config["hub"]
        self.work = config["work_dir"]

        self.backbones = _check_names(config, "backbones", self.known_backbones, "backbone")
        self.samplers = _check_names(config, "samplers", self.definitions, "sampler")
        self.nfe = _check_int_list(config, "nfe", 1)
        self.seeds = _check_int_list(config, "seeds", 0)
        for name in self.definitions:
            self._check_definition(name)
        for name, settings in self.settings.items():
            seen = set()
            for i, metric in enumerate(settings["metrics"]):
                where = _key(["backbone_settings", name, "metrics", i])
                if metric not in self.known_metrics:
                    raise ConfigError(f"{where}: unknown metric {metric!r}; choose one of {self.known_metrics}")
                if metric in seen:
                    raise ConfigError(f"{where}: metric {metric!r} is listed twice")
                seen.add(metric)
        for i, backbone in enumerate(self.backbones):
            if backbone not in self.settings:
                raise ConfigError(f"{_key(['backbones', i])}: backbone {backbone!r} has no entry in "
                                  f"config.backbone_settings (metrics, num_samples)")
        if self.uses_metric("gen_ppl") and not REPO_ID.match(config["evaluator"]):
            raise ConfigError(f"config.evaluator: {config['evaluator']!r} is not a Hub id (owner/name or name)")
        if self.hub["download"] and not self.hub["cache"] and self.downloads():
            raise ConfigError("config.hub.cache: the download rules need a cache folder; set one, or set "
                              "hub.download: false and fill the jobs' default cache yourself")
        self.cells = [Cell(b, s, n, seed) for b in self.backbones for s in self.samplers
                      for n in self.sampler_nfe(s) for seed in self.seeds]
        # The unit of work is (backbone, seed): one `lsd schedules`, one `lsd sample` and one
        # `lsd evaluate` job each, over these (sampler, NFE) pairs.
        self.units = [(b, seed) for b in self.backbones for seed in self.seeds]
        self.unit_cells = [(s, n) for s in self.samplers for n in self.sampler_nfe(s)]
        self.schedule_samplers = self._with_matches(self.samplers)
        self.schedule_cells = [(s, n) for s in self.schedule_samplers for n in self.sampler_nfe(s)]
        for name in self.schedule_samplers:
            self._check_nfe(name)
            self._check_graphs(name)
        for b, seed in self.units:  # every file a `file` sampler points to must exist
            for s, n in self.schedule_cells:
                if self.method(s) == "file":
                    self.file_source(b, s, n, seed)

    # checks ---------------------------------------------------------------------------
    def _check_definition(self, name: str) -> None:
        d = self.definitions[name]
        where = _key(["sampler_definitions", name])
        method = d["method"]
        if method in NEEDS_BASE and d.get("base") is None:
            raise ConfigError(f"{where}.base: required for method {method!r} (euler, tweedie or tauleap)")
        if method == "teacher" and d.get("nfe") is not None:
            raise ConfigError(f"{where}.nfe: a teacher runs distill.teacher_steps steps; set teacher_steps instead")
        if d.get("nfe") is not None:
            seen = set()
            for i, n in enumerate(d["nfe"]):
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    raise ConfigError(f"{where}.nfe[{i}]: {n!r} must be a positive integer")
                if n in seen:
                    raise ConfigError(f"{where}.nfe[{i}]: {n} is listed twice (duplicate cells)")
                seen.add(n)
        if method in DISTILLED and self.teacher_steps(name) % self.distill["candidates"]:
            raise ConfigError(f"config.distill.candidates: {self.distill['candidates']} must divide the teacher "
                              f"steps of {name!r} ({self.teacher_steps(name)})")
        if method == "temperature":
            match = d.get("match")
            if match is None:
                raise ConfigError(f"{where}.match: required for method 'temperature' (the sampler to match)")
            if match not in self.definitions:
                raise ConfigError(f"{where}.match: unknown sampler {match!r}; choose one of "
                                  f"{sorted(self.definitions)}")
            if self.definitions[match]["method"] in ("temperature", "teacher"):
                raise ConfigError(f"{where}.match: cannot match a {self.definitions[match]['method']} sampler "
                                  f"({match!r})")
            missing = sorted(set(self.sampler_nfe(name)) - set(self.sampler_nfe(match)))
            if missing:
                raise ConfigError(f"{where}.match: {match!r} has no schedule at NFE {missing}")
        if method == "file":
            path = d.get("path")
            if not path:
                raise ConfigError(f"{where}.path: required for method 'file' (a schedule JSON per cell)")
            try:
                path.format(backbone="b", nfe=1, seed=0)
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(f"{where}.path: only {{backbone}}, {{nfe}} and {{seed}} may be filled in "
                                  f"({_one_line(err)})") from None
        for key, methods in METHOD_KEYS.items():
            if d.get(key) is not None and method not in methods:
                raise ConfigError(f"{where}.{key}: only read by method {' and '.join(methods)}, not {method!r}")

    def _check_graphs(self, name: str) -> None:
        """Samplers that only some graphs allow, against the grid's backbones, before any job runs."""
        d = self.definitions[name]
        for i, b in enumerate(self.backbones):
            graph = GRAPH_OF.get(b, "absorbing")
            if d["method"] == "spread" and graph != "absorbing":
                raise ConfigError(f"config.samplers: {name!r} (method spread) needs an absorbing graph; backbone "
                                  f"{b!r} (config.backbones[{i}]) is on the {graph} graph")
            if d.get("base") == "tauleap" and graph not in ORDINAL_GRAPHS:
                raise ConfigError(f"config.samplers: {name!r} (base tauleap) needs an ordinal graph; backbone "
                                  f"{b!r} (config.backbones[{i}]) is on the {graph} graph")

    def _check_nfe(self, name: str) -> None:
        """NFE a sampler in use cannot reach, before any job runs (not only at the job's end)."""
        d = self.definitions[name]
        method, candidates = d["method"], self.distill["candidates"]
        for n in self.sampler_nfe(name):
            if method == "lsd" and candidates % n:
                raise ConfigError(f"config.distill.candidates: {candidates} is not a multiple of NFE {n} of "
                                  f"{name!r} (LSD spaces its steps evenly over the teacher's candidate times)")
            if method in ("lsd+", "spread") and n > candidates:
                raise ConfigError(f"config.distill.candidates: {candidates} is fewer than NFE {n} of {name!r} "
                                  f"(LSD+ picks its times among the teacher's candidate times)")
            if method == "jys" and n > (d.get("fine_steps") or JYS_FINE_STEPS):
                raise ConfigError(f"{_key(['sampler_definitions', name, 'fine_steps'])}: "
                                  f"{d.get('fine_steps') or JYS_FINE_STEPS} is fewer than NFE {n} "
                                  f"(JYS picks its times among the fine grid's)")

    # the grid -------------------------------------------------------------------------
    def method(self, sampler: str) -> str:
        return self.definitions[sampler]["method"]

    def teacher_steps(self, sampler: str) -> int:
        return self.definitions[sampler].get("teacher_steps") or self.distill["teacher_steps"]

    def sampler_nfe(self, sampler: str) -> list[int]:
        d = self.definitions[sampler]
        if d["method"] == "teacher":
            return [self.teacher_steps(sampler)]
        return list(d.get("nfe") or self.config["nfe"])

    def all_nfe(self) -> list[int]:
        return sorted({c.nfe for c in self.cells})

    def needs_hub(self) -> bool:
        """Whether any job reads a Hub checkpoint (a Hub backbone, or the gen_ppl evaluator)."""
        return any(b in HUB_REPOS for b in self.backbones) or self.uses_metric("gen_ppl")

    def uses_metric(self, metric: str) -> bool:
        return any(metric in self.settings[b]["metrics"] for b in self.backbones if b in self.settings)

    def _with_matches(self, samplers) -> list[str]:
        """`samplers` and, after them, every sampler a temperature sampler among them matches
        (scheduled, not sampled: the temperature search needs its schedule)."""
        out = list(samplers)
        for name in out:  # grows while iterating: matches of matches
            match = self.definitions[name].get("match") if self.method(name) == "temperature" else None
            if match is not None and match not in out:
                out.append(match)
        return out

    # paths: one per cell --------------------------------------------------------------
    def records(self) -> list[str]:
        return [RECORD.format(**c.wildcards) for c in self.cells]

    def learned_schedules(self) -> list[str]:
        return [SCHEDULE.format(**c.wildcards) for c in self.cells if self.method(c.sampler) in DISTILLED]

    def file_source(self, backbone: str, sampler: str, nfe: int, seed: int) -> str:
        """The schedule JSON a `file` sampler points to for this cell (it must exist)."""
        path = self.definitions[sampler]["path"].format(backbone=backbone, nfe=nfe, seed=seed)
        if not Path(path).is_file():
            raise ConfigError(f"{_key(['sampler_definitions', sampler, 'path'])}: schedule file {path!r} "
                              f"(backbone {backbone}, NFE {nfe}, seed {seed}) does not exist")
        return path

    # paths: the files of one unit (backbone, seed), as patterns of those two wildcards -----
    @staticmethod
    def _unit(pattern: str, sampler: str, nfe: int) -> str:
        return pattern.format(backbone="{backbone}", sampler=sampler, nfe=nfe, seed="{seed}", work="{work}")

    def unit_schedules(self) -> list[str]:
        """What `lsd schedules` writes for a unit: every sampler of the grid (file samplers: a copy
        labelled with their name) and the samplers temperature samplers match."""
        return [self._unit(SCHEDULE, s, n) for s, n in self.schedule_cells]

    def unit_sample_schedules(self) -> list[str]:
        """The schedules `lsd sample` reads, in the order of `unit_samples`."""
        return [self._unit(SCHEDULE, s, n) for s, n in self.unit_cells]

    def unit_samples(self) -> list[str]:
        return [self._unit(SAMPLES, s, n).replace("{work}", self.work) for s, n in self.unit_cells]

    def unit_sample_records(self) -> list[str]:
        """The JSON `lsd sample` writes beside each samples file."""
        return [path + ".json" for path in self.unit_samples()]

    def unit_records(self) -> list[str]:
        return [self._unit(RECORD, s, n) for s, n in self.unit_cells]

    def file_inputs(self, wildcards) -> list[str]:
        """The schedule files the unit's `file` samplers point to (inputs of its schedules job)."""
        return [self.file_source(wildcards.backbone, s, n, int(wildcards.seed))
                for s, n in self.schedule_cells if self.method(s) == "file"]

    # command-line pieces --------------------------------------------------------------
    def samplers_json(self) -> str:
        """`lsd schedules --samplers-json`: the definitions of the unit's samplers, unset keys left out."""
        chosen = {s: {k: v for k, v in self.definitions[s].items() if v is not None} for s in self.schedule_samplers}
        return json.dumps(chosen, separators=(",", ":"), sort_keys=True)

    def distill_json(self, backbone: str) -> str:
        """`lsd schedules --distill-json`: config.distill and the backbone's batch size."""
        settings = {k: self.distill[k] for k in DISTILL_KEYS}
        settings["batch_size"] = self.settings[backbone]["batch_size"]
        return json.dumps(settings, separators=(",", ":"), sort_keys=True)

    def schedules_flags(self, wildcards) -> str:
        """`lsd schedules` arguments besides --backbone, --seed and --out-dir."""
        nfe = " ".join(str(n) for n in self.config["nfe"])  # samplers with an `nfe` list of their own use theirs
        return (f"--nfe {nfe} --samplers-json {shlex.quote(self.samplers_json())} "
                f"--distill-json {shlex.quote(self.distill_json(wildcards.backbone))} "
                f"--device {self.config['device']} --quiet")

    def schedule_dir(self, wildcards) -> str:
        return SCHEDULE_DIR.format(backbone=wildcards.backbone)

    def sample_flags(self, wildcards) -> str:
        s = self.settings[wildcards.backbone]
        flags = f"--num-samples {s['num_samples']} --batch-size {s['batch_size']} --device {self.config['device']}"
        if s.get("length"):
            flags += f" --length {s['length']}"
        return flags

    def evaluate_flags(self, wildcards) -> str:
        metrics = self.settings[wildcards.backbone]["metrics"]
        flags = "--metrics " + " ".join(metrics)
        if "gen_ppl" in metrics:
            flags += f" --evaluator {shlex.quote(self.config['evaluator'])}"
        if "frechet" in metrics:  # the digits classifier, trained once and cached
            flags += f" --cache {shlex.quote(self.work + '/cache/digits-classifier.safetensors')}"
        if "fid" in metrics:
            flags += f" --fid-stats {shlex.quote(self.config['fid']['stats'])}"
        if self.config["device"] != "cpu":
            flags += f" --device {self.config['device']}"
        return flags

    def fid_inputs(self, wildcards) -> list[str]:
        """The reference statistics a backbone's evaluation reads (metric fid), made by rule fid_stats."""
        return [self.config["fid"]["stats"]] if "fid" in self.settings[wildcards.backbone]["metrics"] else []

    def fid_images(self, wildcards) -> list[str]:
        """The training images of rule fid_stats, when they are there; when they are not, the job runs
        anyway and `lsd fid-stats` says in one line how to provide them (a dry run still plans it)."""
        folder = self.config["fid"]["images"]
        return [folder] if Path(folder).is_dir() else []

    def env(self) -> str:
        """Environment prefix of a network job: the Hub cache (when a Hub checkpoint is needed) and offline mode."""
        parts = []
        if self.hub["cache"] and self.needs_hub():
            parts.append(f"HF_HUB_CACHE={shlex.quote(self.hub['cache'])}")
        if self.hub["offline"]:
            parts.append("HF_HUB_OFFLINE=1")
        return " ".join(parts)

    def report_flags(self) -> str:
        def q(values) -> str:
            return " ".join(shlex.quote(str(v)) for v in values)

        return (f"--backbones {q(self.backbones)} --samplers {q(self.samplers)} --nfe {q(self.all_nfe())} "
                f"--seeds {q(self.seeds)}")

    # downloads ------------------------------------------------------------------------
    @staticmethod
    def hub_dir_name(repo: str) -> str:
        """The folder huggingface_hub gives a model repository inside its cache."""
        return "models--" + repo.replace("/", "--")

    def downloads(self) -> dict:
        """{cache folder name: (repo id, file patterns)} of every download the config needs."""
        if not self.hub["download"]:
            return {}
        out = {}
        for b in self.backbones:
            if b in HUB_REPOS:
                out[self.hub_dir_name(HUB_REPOS[b])] = (HUB_REPOS[b], CHECKPOINT_FILES)
                out[self.hub_dir_name(HUB_TOKENIZER)] = (HUB_TOKENIZER, TOKENIZER_FILES)
        if self.uses_metric("gen_ppl"):
            out[self.hub_dir_name(self.config["evaluator"])] = (self.config["evaluator"], EVALUATOR_FILES)
        return out

    def hub_path(self, repo: str) -> str:
        return f"{self.download_root()}/{self.hub_dir_name(repo)}"

    def download_root(self) -> str:
        """Where downloads go: hub.cache (required when a download is needed; the default otherwise)."""
        return self.hub["cache"] or "work/hf-hub"

    def download_flags(self, wildcards) -> str:
        repo, patterns = self.downloads()[wildcards.repo_dir]
        include = " ".join(f"--include {shlex.quote(p)}" for p in patterns)
        return f"{shlex.quote(repo)} {include} --cache-dir {shlex.quote(self.download_root())}"

    def backbone_downloads(self, wildcards) -> list[str]:
        """Download folders the network jobs of a backbone read (none for embedded backbones)."""
        if not self.hub["download"] or wildcards.backbone not in HUB_REPOS:
            return []
        return [self.hub_path(HUB_REPOS[wildcards.backbone])]

    def checkpoint_files(self, wildcards) -> list[str]:
        """The committed checkpoint files of a trained backbone (checkpoints/<name>/, none for the
        others): inputs of its jobs, so that a retrained checkpoint reruns its cells."""
        folder = Path(os.environ.get("LSD_CHECKPOINTS", "checkpoints")) / wildcards.backbone
        files = [folder / "config.json", folder / "model.safetensors"]
        return [str(f) for f in files] if all(f.exists() for f in files) else []

    def evaluate_downloads(self, wildcards) -> list[str]:
        paths = self.backbone_downloads(wildcards)
        if paths:
            paths.append(self.hub_path(HUB_TOKENIZER))
        if self.hub["download"] and "gen_ppl" in self.settings[wildcards.backbone]["metrics"]:
            paths.append(self.hub_path(self.config["evaluator"]))
        return paths

    def download_output(self) -> str:
        return self.download_root() + "/{repo_dir}"

    def download_regex(self) -> str:
        names = list(self.downloads())
        return "|".join(re.escape(n) for n in names) if names else "(?!)"


def lsd_command(uses_conda: bool, python: str, repo: str) -> str:
    """How rules call the CLI: the python running Snakemake (whose environment has lsd installed), or,
    inside a rule's conda environment (dependencies only), that environment's python with this
    checkout's lsd package on PYTHONPATH."""
    if uses_conda:
        return f"PYTHONPATH={shlex.quote(repo)} python -m lsd.cli"
    return f"{shlex.quote(python)} -m lsd.cli"


def hf_command(uses_conda: bool, python: str) -> str:
    """The Hugging Face CLI (`hf`, from huggingface_hub) of the same environment as `lsd_command`."""
    if uses_conda:
        return "hf"
    candidate = Path(python).parent / "hf"
    return shlex.quote(str(candidate)) if candidate.exists() else "hf"


def precheck(config: dict, configfiles=(), schema: dict | None = None) -> None:
    """The checks that come before the defaults: duplicate YAML keys, then the schema."""
    duplicate_key_check(configfiles)
    schema_check(config, schema)


def plan(config: dict, configfiles=(), schema_path=SCHEMA) -> Plan:
    """Every check in order, outside Snakemake (the Snakefile fills defaults with snakemake.utils.validate)."""
    schema = load_schema(schema_path)
    precheck(config, configfiles, schema)
    fill_defaults(config, schema)
    return Plan(config, schema)


def fill_defaults(config: dict, schema: dict) -> dict:
    """The schema's defaults, as snakemake.utils.validate sets them (for use outside Snakemake)."""
    import jsonschema
    from jsonschema import validators

    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        for prop, sub in properties.items():
            if "default" in sub and isinstance(instance, dict):
                instance.setdefault(prop, json.loads(json.dumps(sub["default"])))
        yield from validate_properties(validator, properties, instance, subschema)

    validators.extend(base, {"properties": set_defaults})(schema).validate(config)
    return config
