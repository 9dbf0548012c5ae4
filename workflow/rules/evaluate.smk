# Evaluation: one `lsd evaluate` job per (backbone, seed) writes a result record
# (lsd-result/1) per cell, labelled with the sampler name and NFE its samples record (the
# schedules made by `lsd schedules` carry the sampler's name) and the unit's seed: the rows
# of results/<name>/metrics.csv. The settings stamp records the metrics (and evaluator, FID
# statistics, device).


rule evaluate:
    input:
        downloads=PLAN.evaluate_downloads,
        checkpoint=PLAN.checkpoint_files,
        samples=PLAN.unit_samples(),
        fid_stats=PLAN.fid_inputs,
        rerun=PLAN.rerun_request("evaluate"),
    output:
        records=PLAN.unit_records(),
        stamp=PLAN.stamp_path("evaluate", "{backbone}", "{seed}"),
    params:
        lsd=LSD,
        flags=PLAN.evaluate_flags,
        env=PLAN.env(),
        stamp=PLAN.stamp_param("evaluate"),
    log:
        PLAN.log("evaluate"),
    benchmark:
        PLAN.benchmark("evaluate")
    threads: THREADS["evaluate"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.env} {params.lsd} --threads {threads} evaluate --backbone {wildcards.backbone:q}"
        " --samples {input.samples:q} {params.flags} --seed {wildcards.seed:q} --out {output.records:q}"
        " > {log:q} 2>&1"
        " && printf '%s\\n' {params.stamp:q} > {output.stamp:q}.tmp && mv {output.stamp:q}.tmp {output.stamp:q}"
