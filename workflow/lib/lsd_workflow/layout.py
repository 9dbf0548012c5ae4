"""Where things go: the output layout of a config (results/<name>/, <work_dir>/<name>/), the
name of a config, the Hub cache folders and atomic writes. Patterns of {results} and {work},
filled by `Layout.path`."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .checks import DISTILLED, ConfigError, key_text
from .facts import HUB_REPOS, HUB_TOKENIZER

# Output layout (relative to the working directory). Each config has a name (config.name, or
# the file name of the last --configfile, or `default` for config.yaml alone) and its own
# folders: results/<name>/ (committed for the embedded default) and <work_dir>/<name>/ (samples,
# rerun requests). One file per cell (backbone, sampler, NFE, seed); one job, log, benchmark and
# settings stamp per unit of work (backbone, seed) and rule. Patterns of {results} and {work}.
RESULTS_ROOT = "results"
SCHEDULE_DIR = "{results}/schedules/{backbone}"
SCHEDULE = "{results}/schedules/{backbone}/{sampler}/nfe{nfe}/seed{seed}.json"
RECORD = "{results}/records/{backbone}/{sampler}/nfe{nfe}/seed{seed}.json"
SAMPLES = "{work}/samples/{backbone}/{sampler}/nfe{nfe}/seed{seed}.safetensors"
LOG = "{results}/logs/{rule}/{backbone}/seed{seed}.log"
BENCHMARK = "{results}/benchmarks/{rule}/{backbone}/seed{seed}.tsv"
DOWNLOAD_LOG = "{results}/logs/download/{repo_dir}.log"
REPORT_LOG = "{results}/logs/report.log"
REPORT_BENCHMARK = "{results}/benchmarks/report.tsv"
FID_STATS_LOG = "{results}/logs/fid_stats.log"
FID_STATS_BENCHMARK = "{results}/benchmarks/fid_stats.tsv"
REPORT_OUTPUTS = {
    "csv": "{results}/metrics.csv",
    "summary": "{results}/summary.csv",
    "precision": "{results}/precision.csv",
    "tables": "{results}/tables",
    "figures": "{results}/figures",
    "readme": "{results}/README.md",
}
# What each job was run with, and each job's rerun request (stamps.py).
STAMP = "{results}/settings/{step}/{backbone}/seed{seed}.json"
REPORT_STAMP = "{results}/settings/report.json"
RERUN = "{work}/rerun/{what}.txt"
# A config's name becomes a folder name (the schema's pattern for config.name).
NAME_TEXT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")

# Which files each Hub download needs.
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.bin", "*.txt")
TOKENIZER_FILES = ("*.json", "*.txt")
EVALUATOR_FILES = ("*.json", "*.txt", "model.safetensors")  # not the TF/Flax/ONNX copies


class Layout:
    """The paths of a `Plan`: its folders (self.results, self.work), one file per cell, the files
    of one unit (backbone, seed) as patterns of those two wildcards, and the Hub downloads."""

    def path(self, pattern: str, **fill) -> str:
        """A layout pattern in this config's folders (results/<name>, <work_dir>/<name>); other
        fields are filled from `fill`, or left as wildcards."""
        fields = {"results": self.results, "work": self.work, "backbone": "{backbone}", "seed": "{seed}",
                  "rule": "{rule}", "repo_dir": "{repo_dir}", "step": "{step}", "what": "{what}"}
        return pattern.format(**{**fields, **fill})

    def log(self, rule: str) -> str:
        return self.path(LOG, rule=rule)

    def benchmark(self, rule: str) -> str:
        return self.path(BENCHMARK, rule=rule)

    def report_outputs(self) -> dict:
        return {key: self.path(pattern) for key, pattern in REPORT_OUTPUTS.items()}

    # paths: one per cell --------------------------------------------------------------
    def records(self) -> list[str]:
        return [self.path(RECORD, **c.wildcards) for c in self.cells]

    def learned_schedules(self) -> list[str]:
        return [self.path(SCHEDULE, **c.wildcards) for c in self.cells if self.method(c.sampler) in DISTILLED]

    def file_source(self, backbone: str, sampler: str, nfe: int, seed: int) -> str:
        """The schedule JSON a `file` sampler points to for this cell (it must exist)."""
        path = self.definitions[sampler]["path"].format(backbone=backbone, nfe=nfe, seed=seed)
        if not Path(path).is_file():
            raise ConfigError(f"{key_text(['sampler_definitions', sampler, 'path'])}: schedule file {path!r} "
                              f"(backbone {backbone}, NFE {nfe}, seed {seed}) does not exist")
        return path

    # paths: the files of one unit (backbone, seed), as patterns of those two wildcards -----
    def _unit(self, pattern: str, sampler: str, nfe: int) -> str:
        return self.path(pattern, sampler=sampler, nfe=nfe)

    def unit_schedules(self) -> list[str]:
        """What `lsd schedules` writes for a unit: every sampler of the grid (file samplers: a copy
        labelled with their name) and the samplers temperature samplers match."""
        return [self._unit(SCHEDULE, s, n) for s, n in self.schedule_cells]

    def unit_sample_schedules(self) -> list[str]:
        """The schedules `lsd sample` reads, in the order of `unit_samples`."""
        return [self._unit(SCHEDULE, s, n) for s, n in self.unit_cells]

    def unit_samples(self) -> list[str]:
        return [self._unit(SAMPLES, s, n) for s, n in self.unit_cells]

    def unit_sample_records(self) -> list[str]:
        """The JSON `lsd sample` writes beside each samples file."""
        return [path + ".json" for path in self.unit_samples()]

    def unit_records(self) -> list[str]:
        return [self._unit(RECORD, s, n) for s, n in self.unit_cells]

    def file_inputs(self, wildcards) -> list[str]:
        """The schedule files the unit's `file` samplers point to (inputs of its schedules job)."""
        return [self.file_source(wildcards.backbone, s, n, int(wildcards.seed))
                for s, n in self.schedule_cells if self.method(s) == "file"]

    def schedule_dir(self, wildcards) -> str:
        return self.path(SCHEDULE_DIR, backbone=wildcards.backbone)

    # inputs that are no outputs of the grid --------------------------------------------
    def fid_inputs(self, wildcards) -> list[str]:
        """The reference statistics a backbone's evaluation reads (metric fid), made by rule fid_stats."""
        return [self.config["fid"]["stats"]] if "fid" in self.settings[wildcards.backbone]["metrics"] else []

    def fid_images(self, wildcards) -> list[str]:
        """The training images of rule fid_stats, when they are there; when they are not, the job runs
        anyway and `lsd fid-stats` says in one line how to provide them (a dry run still plans it)."""
        folder = self.config["fid"]["images"]
        return [folder] if Path(folder).is_dir() else []

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


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resolve_name(config: dict, configfiles=()) -> str:
    """config.name, or the file name (without .yaml) of the last config file given on the command
    line, or `default` (config.yaml alone); stored in config["name"]."""
    name = config.get("name")
    where = "config.name"
    if not name:
        files = [Path(f) for f in configfiles]
        name = files[-1].stem if files else "default"
        where = f"config.name (from {files[-1].name})" if files else where
    if not isinstance(name, str) or not NAME_TEXT.match(name):
        raise ConfigError(f"{where}: {name!r} is not a folder name (letters, digits, . _ -, not starting with .); "
                          f"set name: to one")
    config["name"] = name
    return name
