rule select:
    input:
        candidates=f"{RESULTS}/candidates/{{shard}}.h5",
    output:
        masks=f"{RESULTS}/masks/{{shard}}.h5",
        failures=f"{RESULTS}/failures/select/{{shard}}.csv",
    params:
        options=options("select"),
        fail_fast=fail_fast_flag(),
    log:
        f"{LOGS}/select/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/select/{{shard}}.tsv"
    shell:
        "flowguide select --candidates {input.candidates:q} --out {output.masks:q}"
        " --failures {output.failures:q} --options {params.options:q} {params.fail_fast}"
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
    shell:
        "flowguide mask-quality --truth {input.truth:q} --out {output.quality:q}"
        " {input.masks:q} > {log:q} 2>&1"
