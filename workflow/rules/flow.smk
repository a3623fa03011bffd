rule flow:
    input:
        shard=f"{RESULTS}/shards/{{shard}}.csv",
    output:
        flow=f"{RESULTS}/flow/{{shard}}.h5",
        failures=f"{RESULTS}/failures/flow/{{shard}}.csv",
    params:
        options=options("flow"),
        device=config["device"],
        fail_fast=fail_fast_flag(),
    log:
        f"{LOGS}/flow/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/flow/{{shard}}.tsv"
    shell:
        "flowguide flow --shard {input.shard:q} --out {output.flow:q}"
        " --failures {output.failures:q} --options {params.options:q}"
        " --device {params.device:q} {params.fail_fast} > {log:q} 2>&1"
