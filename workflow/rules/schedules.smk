# Schedules: every sampler of the grid is a schedule JSON (lsd.schedule/1). One
# `lsd schedules` job per (backbone, seed) writes all of them: uniform and teacher grids,
# JYS, LSD and LSD+ (every student of the seed shares ONE teacher rollout) and the
# temperature-matched baselines (made after the sampler they match, which is scheduled even
# when it is not in the grid). A `file` sampler's schedule is copied, labelled with the
# sampler's name (the label the records carry); the file it points to is an input.
# `lsd schedules` writes its files only once all of them are made, each atomically.


rule schedules:
    input:
        downloads=PLAN.backbone_downloads,
        checkpoint=PLAN.checkpoint_files,
        files=PLAN.file_inputs,
    output:
        PLAN.unit_schedules(),
    params:
        lsd=LSD,
        flags=PLAN.schedules_flags,
        out_dir=PLAN.schedule_dir,
        env=PLAN.env(),
    log:
        lsd_workflow.LOG.replace("{rule}", "schedules"),
    benchmark:
        lsd_workflow.BENCHMARK.replace("{rule}", "schedules")
    threads: THREADS["schedules"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.env} {params.lsd} --threads {threads} schedules --backbone {wildcards.backbone}"
        " --seed {wildcards.seed} {params.flags} --out-dir {params.out_dir} > {log} 2>&1"
