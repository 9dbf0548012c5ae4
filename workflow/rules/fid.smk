# FID reference statistics (metric fid, image backbones such as tauldr-cifar10): the Inception
# mean and covariance of the training images, computed once by `lsd fid-stats` from a folder of
# PNG files (config fid.images) into config fid.stats, which every fid evaluation reads. Without
# the folder the job fails with one line saying how to make it.


rule fid_stats:
    input:
        images=PLAN.fid_images,
    output:
        config["fid"]["stats"],
    params:
        lsd=LSD,
        images=config["fid"]["images"],
        device=config["device"],
    log:
        PLAN.path(lsd_workflow.FID_STATS_LOG),
    benchmark:
        PLAN.path(lsd_workflow.FID_STATS_BENCHMARK)
    threads: THREADS["evaluate"]
    resources:
        gpu=GPUS,
    conda:
        CONDA_NET
    shell:
        "{params.lsd} --threads {threads} fid-stats --images {params.images:q} --out {output:q}"
        " --device {params.device:q} > {log:q} 2>&1"
