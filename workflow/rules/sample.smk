# Sampling: one `lsd sample` job per (backbone, seed) draws num_samples sequences with every
# schedule of the grid (a .safetensors and a .json record per cell, each written atomically
# as soon as it is drawn). The tokens are large (paper: 1024 x 1024 int64 = 8 MiB a cell),
# so they live under <work_dir>/<name>/samples/, outside results/; keep_samples: false makes
# them temp(), deleted once evaluated. The settings stamp records num_samples, length, device.


rule sample:
    input:
        downloads=PLAN.backbone_downloads,
        checkpoint=PLAN.checkpoint_files,
        schedules=PLAN.unit_sample_schedules(),
        rerun=PLAN.rerun_request("sample"),
    output:
        samples=PLAN.unit_samples() if config["keep_samples"] else temp(PLAN.unit_samples()),
        meta=PLAN.unit_sample_records() if config["keep_samples"] else temp(PLAN.unit_sample_records()),
        stamp=PLAN.stamp_path("sample", "{backbone}", "{seed}"),
    params:
        lsd=LSD,
        flags=PLAN.sample_flags,
        env=PLAN.env(),
        stamp=PLAN.stamp_param("sample"),
    log:
        PLAN.log("sample"),
    benchmark:
        PLAN.benchmark("sample")
    threads: THREADS["sample"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.env} {params.lsd} --threads {threads} sample --backbone {wildcards.backbone:q}"
        " --schedule {input.schedules:q} --seed {wildcards.seed:q} {params.flags} --quiet"
        " --out {output.samples:q} > {log:q} 2>&1"
        " && printf '%s\\n' {params.stamp:q} > {output.stamp:q}.tmp && mv {output.stamp:q}.tmp {output.stamp:q}"
