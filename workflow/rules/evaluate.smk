# Evaluation: one `lsd evaluate` job per (backbone, seed) writes a result record
# (lsd-result/1) per cell, labelled with the sampler name and NFE its samples record (the
# schedules made by `lsd schedules` carry the sampler's name) and the unit's seed: the rows
# of results/metrics.csv.


rule evaluate:
    input:
        downloads=PLAN.evaluate_downloads,
        checkpoint=PLAN.checkpoint_files,
        samples=PLAN.unit_samples(),
        fid_stats=PLAN.fid_inputs,
    output:
        PLAN.unit_records(),
    params:
        lsd=LSD,
        flags=PLAN.evaluate_flags,
        env=PLAN.env(),
    log:
        lsd_workflow.LOG.replace("{rule}", "evaluate"),
    benchmark:
        lsd_workflow.BENCHMARK.replace("{rule}", "evaluate")
    threads: THREADS["evaluate"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.env} {params.lsd} --threads {threads} evaluate --backbone {wildcards.backbone}"
        " --samples {input.samples} {params.flags} --seed {wildcards.seed} --out {output} > {log} 2>&1"
