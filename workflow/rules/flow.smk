rule flow:
    input:
        shard=f"{RESULTS}/shards/{{shard}}.csv",
        videos=shard_videos,
    output:
        flow=f"{RESULTS}/flow/{{shard}}.h5",
        failures=f"{RESULTS}/failures/flow/{{shard}}.csv",
    log:
        f"{LOGS}/flow/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/flow/{{shard}}.tsv"
    conda:
        "../../envs/flow.yaml"
    resources:
        mem_mb=res("flow", "mem_mb"),
        runtime=res("flow", "runtime"),
        cpus_per_task=res("flow", "cpus_per_task"),
        gpu=gpu_resource("flow"),
        gpu_model=gpu_model_resource("flow"),
        gres=gres_resource("flow"),
    params:
        options=options("flow"),
    shell:
        "python -m flowguide flow --shard {input.shard:q} --out {output.flow:q}"
        " --failures {output.failures:q} --options {params.options:q}"
        ' --device "$FLOWGUIDE_DEVICE" $FLOWGUIDE_FAIL_FAST > {log:q} 2>&1'
