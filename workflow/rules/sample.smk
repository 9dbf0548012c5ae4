# Sampling: one `lsd sample` job per (backbone, seed) draws num_samples sequences with every
# schedule of the grid (a .safetensors and a .json record per cell, each written atomically
# as soon as it is drawn). The tokens are large (paper: 1024 x 1024 int64 = 8 MiB a cell),
# so they live under work_dir, outside results/; keep_samples: false makes them temp(),
# deleted once evaluated.


rule sample:
    input:
        downloads=PLAN.backbone_downloads,
        checkpoint=PLAN.checkpoint_files,
        schedules=PLAN.unit_sample_schedules(),
    output:
        samples=PLAN.unit_samples() if config["keep_samples"] else temp(PLAN.unit_samples()),
        meta=PLAN.unit_sample_records() if config["keep_samples"] else temp(PLAN.unit_sample_records()),
    params:
        lsd=LSD,
        flags=PLAN.sample_flags,
        env=PLAN.env(),
    log:
        lsd_workflow.LOG.replace("{rule}", "sample"),
    benchmark:
        lsd_workflow.BENCHMARK.replace("{rule}", "sample")
    threads: THREADS["sample"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.env} {params.lsd} --threads {threads} sample --backbone {wildcards.backbone}"
        " --schedule {input.schedules} --seed {wildcards.seed} {params.flags} --quiet"
        " --out {output.samples} > {log} 2>&1"
