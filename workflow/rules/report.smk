# The report: `lsd report` reads every record of the grid and the learned schedules and
# writes results/<name>/metrics.csv (tidy, one row per metric value), summary.csv (mean and 95%
# interval over seeds), LaTeX tables in the layout of the paper's Table 1, figures and
# results/<name>/README.md indexing them. `snakemake --report report.html` gathers them too.


rule report:
    input:
        records=PLAN.records(),
        schedules=PLAN.learned_schedules(),
        rerun=PLAN.rerun_request("report"),
    output:
        csv=report(
            PLAN.report_outputs()["csv"],
            caption="../report/metrics.rst",
            category="Metrics",
        ),
        summary=report(
            PLAN.report_outputs()["summary"],
            caption="../report/summary.rst",
            category="Metrics",
        ),
        precision=report(
            PLAN.report_outputs()["precision"],
            caption="../report/precision.rst",
            category="Metrics",
        ),
        tables=report(
            directory(PLAN.report_outputs()["tables"]),
            patterns=["{name}.tex"],
            caption="../report/tables.rst",
            category="Tables",
        ),
        figures=report(
            directory(PLAN.report_outputs()["figures"]),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        readme=PLAN.report_outputs()["readme"],
        stamp=PLAN.stamp_path("report"),
    params:
        lsd=LSD,
        records=lambda wildcards, output: str(Path(output.csv).parent / "records"),
        schedules=lambda wildcards, output: str(Path(output.csv).parent / "schedules"),
        out=lambda wildcards, output: str(Path(output.csv).parent),
        flags=PLAN.report_flags(),
        stamp=PLAN.stamp_param("report"),
    log:
        PLAN.path(lsd_workflow.REPORT_LOG),
    benchmark:
        PLAN.path(lsd_workflow.REPORT_BENCHMARK)
    threads: THREADS["report"]
    conda:
        CONDA_CPU
    shell:
        "{params.lsd} --threads {threads} report --records {params.records:q} --schedules {params.schedules:q}"
        " {params.flags} --out {params.out:q} > {log:q} 2>&1"
        " && printf '%s\\n' {params.stamp:q} > {output.stamp:q}.tmp && mv {output.stamp:q}.tmp {output.stamp:q}"
