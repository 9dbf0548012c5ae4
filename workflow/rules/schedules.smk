# Schedules: every sampler of the grid is a schedule JSON (lsd.schedule/1). One
# `lsd schedules` job per (backbone, seed) writes all of them: uniform and teacher grids,
# JYS, LSD and LSD+ (every student of the seed shares ONE teacher rollout) and the
# temperature-matched baselines (made after the sampler they match, which is scheduled even
# when it is not in the grid). A `file` sampler's schedule is copied, labelled with the
# sampler's name (the label the records carry); the file it points to is an input.
# `lsd schedules` writes its files only once all of them are made, each atomically; then the
# job writes its settings stamp (the sampler definitions, distill settings, NFE and device it
# ran with), which a later config is compared with (workflow/rules/settings.smk).


rule schedules:
    input:
        downloads=PLAN.backbone_downloads,
        checkpoint=PLAN.checkpoint_files,
        files=PLAN.file_inputs,
        rerun=PLAN.rerun_request("schedules"),
    output:
        schedules=PLAN.unit_schedules(),
        stamp=PLAN.stamp_path("schedules", "{backbone}", "{seed}"),
    params:
        lsd=LSD,
        flags=PLAN.schedules_flags,
        out_dir=PLAN.schedule_dir,
        env=PLAN.env(),
        stamp=PLAN.stamp_param("schedules"),
    log:
        PLAN.log("schedules"),
    benchmark:
        PLAN.benchmark("schedules")
    threads: THREADS["schedules"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.env} {params.lsd} --threads {threads} schedules --backbone {wildcards.backbone:q}"
        " --seed {wildcards.seed:q} {params.flags} --out-dir {params.out_dir:q} > {log:q} 2>&1"
        " && printf '%s\\n' {params.stamp:q} > {output.stamp:q}.tmp && mv {output.stamp:q}.tmp {output.stamp:q}"
