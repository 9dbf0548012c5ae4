"""Facts about the registered backbones and the optimisers' defaults that the workflow checks a
config against when it is parsed, before any job runs.

A leaf that imports nothing, not even the rest of `lsd`: the workflow loads this file by its
path (workflow/lib/lsd_workflow/facts.py), so parsing a workflow does not pay for importing
torch. The library reads the same names from here (`lsd.backbones.registry.HUB_IDS`,
`lsd.optimize.jys.jys_schedule`'s fine grid); tests/test_workflow.py checks the graphs and tasks
below against the backbones as `load_backbone` loads them.
"""

# The paper's Hub checkpoints by name, and the tokenizer their tokens are in.
HUB_IDS = {
    "sedd-small": "louaaron/sedd-small",
    "sedd-medium": "louaaron/sedd-medium",
    "radd": "JingyangOu/radd-t-dce",
    "radd-lambda": "JingyangOu/radd-lambda-dce",
}
HUB_TOKENIZER = "gpt2"

# The graph of each registered backbone not on the absorbing graph (every other one is): the
# spread rule needs an absorbing graph, the tau-leaping rule an ordinal one (values that can be
# added and clamped: the Gaussian-rate image graphs).
GRAPH_OF = {"tiny-sedd-digits": "uniform", "tiny-tauldr-digits": "gaussian", "tauldr-cifar10": "gaussian"}
ORDINAL_GRAPHS = ("gaussian",)

# The task whose data each embedded backbone models (its info["task"]); the Hub text backbones
# speak GPT-2 tokens, the image backbones make images.
TASK_OF = {"oracle-exact": "oracle-text", "tiny-sedd-text": "oracle-text", "tiny-radd-text": "oracle-text",
           "tiny-sedd-countdown": "countdown", "tiny-sedd-digits": "digits", "tiny-tauldr-digits": "digits"}
IMAGE_BACKBONES = ("tauldr-cifar10",)

# The fine grid JYS picks its times among, when a sampler sets none (`jys_schedule(fine_steps=...)`).
JYS_FINE_STEPS = 1024

# The distillation settings of `lsd schedules` / `lsd distill` when a config or the command line
# sets none (the paper's: a 1024-step Euler teacher, zeta 0.05, 64 trajectories, coupled noise,
# 128 candidate times); batch_size splits the work and changes no result.
DISTILL_DEFAULTS = {"teacher_steps": 1024, "zeta": 0.05, "trajectories": 64, "coupling": "coupled",
                    "candidates": 128, "batch_size": 64}
