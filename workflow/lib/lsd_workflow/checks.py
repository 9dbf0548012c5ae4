"""Checks of a config: a bad one fails at parse time with one line naming the key.

- `schema_check`: the JSON schema (types, enums of known names, NFE >= 1, ...);
- `duplicate_key_check`: a key written twice in one mapping of a YAML file (YAML keeps the
  last one silently);
- `Checks` (run by `Plan(config)`): what a schema cannot say: names that must refer to each
  other, repeated grid entries (duplicate cells), NFE that LSD, LSD+ or JYS cannot reach with
  the configured candidate times or fine grid, knobs given to a method that does not read them,
  samplers a backbone's graph does not allow, metric families a backbone's task cannot be
  measured by.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .facts import GRAPH_OF, HUB_REPOS, IMAGE_BACKBONES, JYS_FINE_STEPS, ORDINAL_GRAPHS, TASK_OF

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.json"

DISTILLED = ("jys", "lsd", "lsd+", "spread")
NEEDS_BASE = ("uniform", "teacher") + DISTILLED
# Sampler definition keys that only some methods read (the others ignore them).
METHOD_KEYS = {"fine_steps": ("jys",), "quadrature": ("jys",), "iterations": ("jys", "temperature"),
               "num_samples": ("temperature",), "temperature": ("uniform",), "coefficient": ("uniform",),
               **{key: ("lsd", "lsd+") for key in ("fit", "lr", "epochs", "minibatch", "space", "entries", "start",
                                                   "start_candidates")}}
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
# Which backbones each metric family can measure (entropy: any): what `lsd evaluate` would
# otherwise find out only after sampling, or not at all (countdown rules on other data).
METRIC_BACKBONES = {
    "oracle_ppl": ("the oracle-text task", lambda b: TASK_OF.get(b) == "oracle-text"),
    "countdown": ("the countdown task", lambda b: TASK_OF.get(b) == "countdown"),
    "frechet": ("the digits task", lambda b: TASK_OF.get(b) == "digits"),
    "gen_ppl": ("GPT-2 tokens (a Hub text backbone)", lambda b: b in HUB_REPOS),
    "fid": ("images (an image backbone)", lambda b: b in IMAGE_BACKBONES),
}


class ConfigError(ValueError):
    """A bad config: the message is one line that starts with the offending key."""


def load_schema(path=SCHEMA) -> dict:
    return json.loads(Path(path).read_text())


def key_text(path) -> str:
    """config.a.b[2] from a sequence of keys and indices."""
    out = "config"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def one_line(text) -> str:
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
        raise ConfigError(f"{key_text(error.absolute_path)}: {one_line(message)}")


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


def precheck(config: dict, configfiles=(), schema: dict | None = None) -> None:
    """The checks that come before the defaults: duplicate YAML keys, then the schema."""
    duplicate_key_check(configfiles)
    schema_check(config, schema)


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


def check_int_list(config: dict, key: str, minimum: int) -> list[int]:
    values = config[key]
    seen = set()
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(f"{key_text([key, i])}: {v!r} must be {what}")
        if v in seen:
            raise ConfigError(f"{key_text([key, i])}: {v} is listed twice (duplicate cells)")
        seen.add(v)
    return list(values)


def check_names(config: dict, key: str, known, what: str) -> list[str]:
    seen = set()
    for i, name in enumerate(config[key]):
        if name not in known:
            raise ConfigError(f"{key_text([key, i])}: unknown {what} {name!r}; choose one of {sorted(known)}")
        if name in seen:
            raise ConfigError(f"{key_text([key, i])}: {what} {name!r} is listed twice (duplicate cells)")
        seen.add(name)
    return list(config[key])


class Checks:
    """The checks of a `Plan` that need the whole config (run by its constructor)."""

    def _check_metrics(self) -> None:
        for name, settings in self.settings.items():
            seen = set()
            for i, metric in enumerate(settings["metrics"]):
                where = key_text(["backbone_settings", name, "metrics", i])
                if metric not in self.known_metrics:
                    raise ConfigError(f"{where}: unknown metric {metric!r}; choose one of {self.known_metrics}")
                if metric in seen:
                    raise ConfigError(f"{where}: metric {metric!r} is listed twice")
                seen.add(metric)
                if name in self.backbones and metric in METRIC_BACKBONES:  # unused entries are ignored
                    needs, supports = METRIC_BACKBONES[metric]
                    if not supports(name):
                        raise ConfigError(f"{where}: metric {metric!r} needs {needs}; backbone {name!r} does not "
                                          f"have it")

    def _check_settings(self) -> None:
        """Every backbone of the grid has settings; the evaluator is a Hub id; downloads have a cache."""
        for i, backbone in enumerate(self.backbones):
            if backbone not in self.settings:
                raise ConfigError(f"{key_text(['backbones', i])}: backbone {backbone!r} has no entry in "
                                  f"config.backbone_settings (metrics, num_samples)")
        if self.uses_metric("gen_ppl") and not REPO_ID.match(self.config["evaluator"]):
            raise ConfigError(f"config.evaluator: {self.config['evaluator']!r} is not a Hub id (owner/name or name)")
        if self.hub["download"] and not self.hub["cache"] and self.downloads():
            raise ConfigError("config.hub.cache: the download rules need a cache folder; set one, or set "
                              "hub.download: false and fill the jobs' default cache yourself")

    def _check_definition(self, name: str) -> None:
        d = self.definitions[name]
        where = key_text(["sampler_definitions", name])
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
                                  f"({one_line(err)})") from None
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
                raise ConfigError(f"{key_text(['sampler_definitions', name, 'fine_steps'])}: "
                                  f"{d.get('fine_steps') or JYS_FINE_STEPS} is fewer than NFE {n} "
                                  f"(JYS picks its times among the fine grid's)")
