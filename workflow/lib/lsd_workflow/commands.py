"""The command lines of the rules: how a rule calls `lsd` and `hf`, and the arguments each
job's command gets from the config (built here, every value through shlex.quote)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

# What `lsd schedules --distill-json` takes from the config (batch_size comes from backbone_settings).
DISTILL_KEYS = ("teacher_steps", "zeta", "trajectories", "coupling", "candidates")


class CommandLines:
    """The command-line pieces of a `Plan`'s jobs."""

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

    def sample_flags(self, wildcards) -> str:
        s = self.settings[wildcards.backbone]
        flags = (f"--num-samples {s['num_samples']} --batch-size {s['batch_size']} --device {self.config['device']} "
                 f"--coupling {self.config['sample_coupling']}")
        if s.get("length"):
            flags += f" --length {s['length']}"
        return flags

    def evaluate_flags(self, wildcards) -> str:
        metrics = self.settings[wildcards.backbone]["metrics"]
        flags = "--metrics " + " ".join(metrics)
        if "gen_ppl" in metrics:
            flags += f" --evaluator {shlex.quote(self.config['evaluator'])}"
        if "frechet" in metrics:  # the digits classifier, trained once and cached
            flags += f" --cache {shlex.quote(self.shared_work + '/cache/digits-classifier.safetensors')}"
        if "fid" in metrics:
            flags += f" --fid-stats {shlex.quote(self.config['fid']['stats'])}"
        if self.config["device"] != "cpu":
            flags += f" --device {self.config['device']}"
        return flags

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

    def download_flags(self, wildcards) -> str:
        repo, patterns = self.downloads()[wildcards.repo_dir]
        include = " ".join(f"--include {shlex.quote(p)}" for p in patterns)
        return f"{shlex.quote(repo)} {include} --cache-dir {shlex.quote(self.download_root())}"


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
