"""Settings stamps: what each job was run with, and which jobs a changed config reruns.

A settings stamp per unit and step (and one for the report) is written by the job after its
command succeeded and committed with the results. Every job also has a rerun request, a small
file under work/<name>/rerun/ that is always one of its inputs (so the set of a job's inputs
never changes between runs, which Snakemake's own records in .snakemake/ would take as a
reason to rerun). While the job's stamp agrees with the config, the request says so and is
dated 1970, older than any output; when the config asks for other settings, parsing the
workflow rewrites it with the reason and the time, newer than the job's outputs, so Snakemake
reruns the job, in a fresh clone too (.snakemake/ is not committed, and Snakemake does not
remake a missing input of a job whose outputs exist). Once the stamp agrees again, the next
parse dates the request back to 1970.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .checks import one_line
from .commands import DISTILL_KEYS
from .layout import REPORT_STAMP, RERUN, STAMP, write_text_atomic

STAMP_FORMAT = "lsd-workflow-settings/1"
STEPS = ("schedules", "sample", "evaluate")
# A rerun request while the stamp agrees with the config.
SETTLED = "settings as stamped: nothing to rerun\n"


class Stamps:
    """The settings stamps and rerun requests of a `Plan`'s jobs."""

    def step_settings(self, step: str, backbone: str | None = None) -> dict:
        """What a job's results depend on beyond its input files (whose changes Snakemake sees by
        their times): the settings its command gets. Left out: batch sizes (they split the work,
        the results do not depend on them: per-sample generators) and the NFE grid (an NFE added
        is a missing output, an NFE dropped changes no other cell)."""
        device = self.config["device"]
        if step == "schedules":
            distill = {k: self.distill[k] for k in DISTILL_KEYS}
            return {"samplers": json.loads(self.samplers_json()), "distill": distill, "device": device}
        if step == "sample":
            s = self.settings[backbone]
            return {"num_samples": s["num_samples"], "length": s.get("length"),
                    "coupling": self.config["sample_coupling"], "device": device}
        if step == "evaluate":
            metrics = list(self.settings[backbone]["metrics"])
            out = {"metrics": metrics, "device": device}
            if "gen_ppl" in metrics:
                out["evaluator"] = self.config["evaluator"]
            if "fid" in metrics:
                out["fid_stats"] = self.config["fid"]["stats"]
            return out
        if step == "report":
            return {"backbones": self.backbones, "samplers": self.samplers, "nfe": self.all_nfe(), "seeds": self.seeds}
        raise ValueError(f"unknown step {step!r}")

    def stamp_path(self, step: str, backbone: str | None = None, seed=None) -> str:
        if step == "report":
            return self.path(REPORT_STAMP)
        return self.path(STAMP, step=step, backbone=backbone, seed=seed)

    def stamp_text(self, step: str, backbone: str | None = None, seed=None) -> str:
        """The stamp a job writes once its command succeeded (one line of JSON)."""
        settings = self.step_settings(step, backbone)
        stamp = {"format": STAMP_FORMAT, "step": step, "config": self.name, "hash": settings_hash(settings),
                 "settings": settings}
        if step != "report":
            stamp.update(backbone=backbone, seed=int(seed))
        return json.dumps(stamp, sort_keys=True, separators=(",", ":"))

    def stamp_param(self, step: str):
        """params: of a rule: the stamp text of the job's unit (also a rerun trigger of Snakemake's own)."""
        if step == "report":
            return self.stamp_text("report")
        return lambda wildcards: self.stamp_text(step, wildcards.backbone, wildcards.seed)

    def stale(self, step: str, backbone: str | None = None, seed=None) -> str | None:
        """Why a job's existing stamp does not match the settings the config asks for, in one line,
        or None (also None when there is no stamp: the job's own missing output reruns it)."""
        key = (step, backbone, None if seed is None else int(seed))
        if key not in self._stale:
            path = Path(self.stamp_path(step, backbone, seed))
            reason = None
            if path.is_file():
                try:
                    recorded = json.loads(path.read_text())["settings"]
                    difference = first_difference(recorded, self.step_settings(step, backbone),
                                                  only_wanted=("samplers",) if step == "schedules" else ())
                except (OSError, ValueError, KeyError, TypeError) as err:
                    difference = f"unreadable ({one_line(err)})"
                if difference:
                    reason = f"{path}: made with other settings than the config asks for: {difference}"
                elif step in ("sample", "evaluate"):
                    # the step it used lost its stamp (an interrupted run deletes the outputs of its
                    # running jobs, stamp included): what this job used is of unknown settings, and
                    # Snakemake would not remake those missing files while this job's outputs exist
                    before = STEPS[STEPS.index(step) - 1]
                    if not Path(self.stamp_path(before, backbone, seed)).is_file():
                        reason = (f"{path}: the {before} step it used has no settings stamp "
                                  f"({self.stamp_path(before, backbone, seed)} missing)")
            self._stale[key] = reason
        return self._stale[key]

    def rerun_request(self, step: str):
        """input: of a rule: the job's rerun request (see the module's docstring), written now."""
        def request(wildcards=None):
            backbone, seed = (None, None) if step == "report" else (wildcards.backbone, wildcards.seed)
            what = "report" if step == "report" else f"{step}/{backbone}/seed{seed}"
            path = Path(self.path(RERUN, what=what))
            reason = self.stale(step, backbone, seed)
            if reason is not None:
                # the time makes each request's content new: Snakemake skips an input whose checksum it saw before
                write_text_atomic(path, f"{reason} (noted at {time.time_ns()})\n")
            else:
                if not path.is_file() or path.read_text() != SETTLED:
                    write_text_atomic(path, SETTLED)
                if path.stat().st_mtime != 0:
                    os.utime(path, (0, 0))
            return [str(path)]

        return request


def first_difference(recorded, wanted, where: str = "", only_wanted=()) -> str | None:
    """The first setting (a dotted key) whose recorded value differs from the wanted one, or None.
    Under the keys `only_wanted` only the wanted entries count (a schedules job makes each
    sampler on its own: dropping one from the grid leaves the others as they were)."""
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        keys = list(wanted) if where.lstrip(".") in only_wanted else sorted(set(recorded) | set(wanted), key=str)
        for k in keys:
            if k not in recorded or k not in wanted:
                missing = "not recorded" if k not in recorded else "not asked for"
                return f"{where.lstrip('.')}.{k}: {missing}".lstrip(".")
            found = first_difference(recorded[k], wanted[k], f"{where}.{k}", only_wanted)
            if found:
                return found
        return None
    if recorded != wanted or type(recorded) is not type(wanted):
        return f"{where.lstrip('.')}: {json.dumps(recorded)} recorded, {json.dumps(wanted)} asked for"
    return None


def settings_hash(settings: dict) -> str:
    """A short hash of settings (canonical JSON): what a stamp records and a config asks for."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
