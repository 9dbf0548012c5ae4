# The report: `lsd report` reads every record of the grid and the learned schedules and
# writes results/metrics.csv (tidy, one row per metric value), summary.csv (mean and 95%
# interval over seeds), LaTeX tables in the layout of the paper's Table 1, figures and
# results/README.md indexing them. `snakemake --report report.html` gathers them too.


rule report:
    input:
        records=PLAN.records(),
        schedules=PLAN.learned_schedules(),
    output:
        csv=report(
            lsd_workflow.REPORT_OUTPUTS["csv"],
            caption="../report/metrics.rst",
            category="Metrics",
        ),
        summary=report(
            lsd_workflow.REPORT_OUTPUTS["summary"],
            caption="../report/summary.rst",
            category="Metrics",
        ),
        precision=report(
            lsd_workflow.REPORT_OUTPUTS["precision"],
            caption="../report/precision.rst",
            category="Metrics",
        ),
        tables=report(
            directory(lsd_workflow.REPORT_OUTPUTS["tables"]),
            patterns=["{name}.tex"],
            caption="../report/tables.rst",
            category="Tables",
        ),
        figures=report(
            directory(lsd_workflow.REPORT_OUTPUTS["figures"]),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        readme=lsd_workflow.REPORT_OUTPUTS["readme"],
    params:
        lsd=LSD,
        records=lambda wildcards, output: str(Path(output.csv).parent / "records"),
        schedules=lambda wildcards, output: str(Path(output.csv).parent / "schedules"),
        out=lambda wildcards, output: str(Path(output.csv).parent),
        flags=PLAN.report_flags(),
    log:
        lsd_workflow.REPORT_LOG,
    benchmark:
        lsd_workflow.REPORT_BENCHMARK
    threads: THREADS["report"]
    conda:
        CONDA_CPU
    shell:
        "{params.lsd} --threads {threads} report --records {params.records} --schedules {params.schedules}"
        " {params.flags} --out {params.out} > {log} 2>&1"
