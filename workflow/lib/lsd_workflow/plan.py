"""The plan of a checked config: the grid backbones x samplers x NFE x seeds, one file per
cell, and its unit of work (backbone, seed): one `lsd schedules`, one `lsd sample` and one
`lsd evaluate` job each, over every (sampler, NFE) pair of the grid."""
from __future__ import annotations

from dataclasses import dataclass

from .checks import SCHEMA, Checks, ConfigError, check_int_list, check_names, fill_defaults, load_schema, precheck
from .commands import CommandLines
from .facts import HUB_REPOS
from .layout import RESULTS_ROOT, Layout, resolve_name
from .stamps import Stamps


@dataclass(frozen=True)
class Cell:
    backbone: str
    sampler: str
    nfe: int
    seed: int

    @property
    def wildcards(self) -> dict:
        return {"backbone": self.backbone, "sampler": self.sampler, "nfe": self.nfe, "seed": self.seed}


class Plan(Checks, Layout, CommandLines, Stamps):
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
        if not config.get("name"):
            raise ConfigError("config.name: not set; call resolve_name(config, configfiles) first")
        self.name = config["name"]
        self.results = f"{RESULTS_ROOT}/{self.name}"
        self.work = f"{config['work_dir']}/{self.name}"  # samples and rerun requests of this config
        self.shared_work = config["work_dir"]  # what every config may share (the digits classifier)
        self._stale = {}

        self.backbones = check_names(config, "backbones", self.known_backbones, "backbone")
        self.samplers = check_names(config, "samplers", self.definitions, "sampler")
        self.nfe = check_int_list(config, "nfe", 1)
        self.seeds = check_int_list(config, "seeds", 0)
        for name in self.definitions:
            self._check_definition(name)
        self._check_metrics()
        self._check_settings()
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


def plan(config: dict, configfiles=(), schema_path=SCHEMA) -> Plan:
    """Every check in order, outside Snakemake (the Snakefile fills defaults with snakemake.utils.validate).
    `configfiles`: the --configfile files (config.yaml is not one of them); they name the config."""
    schema = load_schema(schema_path)
    precheck(config, configfiles, schema)
    fill_defaults(config, schema)
    resolve_name(config, configfiles)
    return Plan(config, schema)
