"""The workflow's planning helper: checks a config and lays out the jobs of the grid.

The grid is backbones x samplers x NFE x seeds, one file per cell; the unit of work is
(backbone, seed): one `lsd schedules`, one `lsd sample` and one `lsd evaluate` job each, over
every (sampler, NFE) pair of the grid (one process start-up, one shared teacher rollout).
`Plan(config)` is the checked config and its jobs, one concern per module:

- `checks`: the config checks (schema, duplicate YAML keys, what a schema cannot say), each
  failing in one line that names the key (`ConfigError`);
- `layout`: where every file goes (results/<name>/, <work_dir>/<name>/, the Hub cache) and the
  config's name;
- `commands`: the command lines of the rules (`lsd`, `hf` and each job's arguments);
- `stamps`: the settings stamps and the rerun requests of the jobs;
- `facts`: what the checks know about the library's backbones and defaults, read from the
  library's torch-free leaf lsd/workflow_facts.py (the CLI stays the only seam that runs code
  of the library; everything else the workflow knows about names is in the config schema's
  enums, workflow/schemas/config.schema.json).

Plain Python for the Snakefile and the tests.
"""
from .checks import (DISTILLED, METHOD_KEYS, METRIC_BACKBONES, NEEDS_BASE, SCHEMA, ConfigError, duplicate_key_check,
                     fill_defaults, load_schema, precheck, schema_check)
from .commands import DISTILL_KEYS, hf_command, lsd_command
from .facts import GRAPH_OF, HUB_REPOS, HUB_TOKENIZER, IMAGE_BACKBONES, JYS_FINE_STEPS, ORDINAL_GRAPHS, TASK_OF
from .layout import (BENCHMARK, DOWNLOAD_LOG, FID_STATS_BENCHMARK, FID_STATS_LOG, LOG, RECORD, REPORT_BENCHMARK,
                     REPORT_LOG, REPORT_OUTPUTS, REPORT_STAMP, RERUN, RESULTS_ROOT, SAMPLES, SCHEDULE, SCHEDULE_DIR,
                     STAMP, resolve_name, write_text_atomic)
from .plan import Cell, Plan, plan
from .stamps import SETTLED, STAMP_FORMAT, STEPS, first_difference, settings_hash

__all__ = ["BENCHMARK", "Cell", "ConfigError", "DISTILLED", "DISTILL_KEYS", "DOWNLOAD_LOG", "FID_STATS_BENCHMARK",
           "FID_STATS_LOG", "GRAPH_OF", "HUB_REPOS", "HUB_TOKENIZER", "IMAGE_BACKBONES", "JYS_FINE_STEPS", "LOG",
           "METHOD_KEYS", "METRIC_BACKBONES", "NEEDS_BASE", "ORDINAL_GRAPHS", "Plan", "RECORD", "REPORT_BENCHMARK",
           "REPORT_LOG", "REPORT_OUTPUTS", "REPORT_STAMP", "RERUN", "RESULTS_ROOT", "SAMPLES", "SCHEDULE",
           "SCHEDULE_DIR", "SCHEMA", "SETTLED", "STAMP", "STAMP_FORMAT", "STEPS", "TASK_OF", "duplicate_key_check",
           "fill_defaults", "first_difference", "hf_command", "load_schema", "lsd_command", "plan", "precheck",
           "resolve_name", "schema_check", "settings_hash", "write_text_atomic"]
