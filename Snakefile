# The benchmark: backbones x samplers x NFE x seeds -> schedules -> samples -> records -> results/<name>/.
# Each config writes its own folders: results/<name>/ and <work_dir>/<name>/, where <name> is
# config.name, or the file name of the last --configfile (paper.yaml -> paper), or `default`.
# One job per (backbone, seed) and step (schedules, sample, evaluate): each is one process
# over every (sampler, NFE) of the grid; the files stay one per cell.
#
#   snakemake --cores all                                   # the embedded default (config.yaml), on a laptop
#   snakemake --cores all --configfile workflow/configs/smoke.yaml
#   snakemake --profile workflow/profiles/slurm --use-conda --configfile workflow/configs/paper.yaml
#
# Every rule is a thin call of the `lsd` command line (workflow/rules/*.smk); the config is
# checked against workflow/schemas/config.schema.json (where every key and default is
# documented) and by workflow/lib/lsd_workflow/ (checks, layout, command lines, settings stamps), and
# fails in one line naming the key.
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "lib"))
import lsd_workflow  # noqa: E402


configfile: "config.yaml"


try:
    lsd_workflow.precheck(config, workflow.configfiles)  # one line naming the key, before the schema's own message
    validate(config, "workflow/schemas/config.schema.json")  # fills the defaults
    lsd_workflow.resolve_name(config, workflow.config_settings.configfiles)  # results/<name>/
    PLAN = lsd_workflow.Plan(config)  # names that refer to each other, duplicate cells, missing files
except lsd_workflow.ConfigError as err:
    sys.exit(f"lsd workflow: {err}")

USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
LSD = lsd_workflow.lsd_command(USES_CONDA, sys.executable, workflow.basedir)
HF = lsd_workflow.hf_command(USES_CONDA, sys.executable)
CONDA_CPU = str(Path(workflow.basedir) / "envs" / "cpu.yaml")
CONDA_NET = str(Path(workflow.basedir) / "envs" / ("cuda.yaml" if config["device"] == "cuda" else "cpu.yaml"))
GPUS = 1 if config["device"] == "cuda" else 0
THREADS = config["threads"]


wildcard_constraints:
    backbone="[^/]+",
    seed="[0-9]+",


localrules:
    all,


rule all:
    input:
        **PLAN.report_outputs(),
    default_target: True


include: "workflow/rules/download.smk"
include: "workflow/rules/schedules.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/fid.smk"
include: "workflow/rules/report.smk"
