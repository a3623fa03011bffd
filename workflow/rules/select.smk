rule select:
    input:
        candidates=f"{RESULTS}/candidates/{{shard}}.h5",
        flow=f"{RESULTS}/flow/{{shard}}.h5",
    output:
        masks=f"{RESULTS}/masks/{{shard}}.h5",
        failures=f"{RESULTS}/failures/select/{{shard}}.csv",
    log:
        f"{LOGS}/select/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/select/{{shard}}.tsv"
    conda:
        "../../envs/segment.yaml"
    resources:
        mem_mb=res("select", "mem_mb"),
        runtime=res("select", "runtime"),
        cpus_per_task=res("select", "cpus_per_task"),
    params:
        options=options("select"),
    shell:
        "python -m flowguide select --candidates {input.candidates:q} --flow {input.flow:q}"
        " --out {output.masks:q}"
        " --failures {output.failures:q} --options {params.options:q} $FLOWGUIDE_FAIL_FAST"
        " > {log:q} 2>&1"


rule mask_quality:
    input:
        masks=shard_targets(f"{RESULTS}/masks/{{shard}}.h5"),
        truth=f"{RESULTS}/synthdive/true_masks.h5",
    output:
        quality=f"{RESULTS}/masks/quality.csv",
    log:
        f"{LOGS}/mask_quality.log",
    benchmark:
        f"{LOGS}/benchmarks/mask_quality.tsv"
    conda:
        "../../envs/segment.yaml"
    resources:
        mem_mb=res("mask_quality", "mem_mb"),
        runtime=res("mask_quality", "runtime"),
        cpus_per_task=res("mask_quality", "cpus_per_task"),
    shell:
        "python -m flowguide mask-quality --truth {input.truth:q} --out {output.quality:q}"
        " {input.masks:q} > {log:q} 2>&1"
