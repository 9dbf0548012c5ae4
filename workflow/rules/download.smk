# Downloads of Hub checkpoints (sedd-small, sedd-medium, radd), their tokenizer and the
# gen_ppl evaluator into the Hugging Face cache folder hub.cache, which every other job
# reads (HF_HUB_CACHE) offline. Each is one repository's cache folder, eligible for
# between-workflow caching: `snakemake --cache` with $SNAKEMAKE_OUTPUT_CACHE set downloads
# a checkpoint once for every workflow on the machine. (Snakemake forbids benchmark: on a
# cached rule, so these rules have a log only.) Run them on a node with network: they are
# local rules, executed by the Snakemake process itself, not submitted to SLURM.


localrules:
    download,


rule download:
    output:
        directory(PLAN.download_output()),
    wildcard_constraints:
        repo_dir=PLAN.download_regex(),
    params:
        hf=HF,
        flags=PLAN.download_flags,
    log:
        PLAN.path(lsd_workflow.DOWNLOAD_LOG),
    cache: "omit-software"
    threads: THREADS["download"]
    conda:
        CONDA_CPU
    shell:
        "{params.hf} download {params.flags} > {log:q} 2>&1"
