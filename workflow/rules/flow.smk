# flow.temporary: Snakemake deletes a shard's flow file once every job that reads it is done.
# Not a result-changing setting, so it stays out of the rule's params.
FLOW_FILE = f"{RESULTS}/flow/{{shard}}.h5"
FLOW_PARAMS = json.dumps(
    {k: v for k, v in config["flow"].items() if k != "temporary"}, sort_keys=True
)


rule flow:
    input:
        shard=f"{RESULTS}/shards/{{shard}}.csv",
        videos=shard_videos,
    output:
        flow=temp(FLOW_FILE) if config["flow"]["temporary"] else FLOW_FILE,
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
        options=FLOW_PARAMS,
    shell:
        "python -m flowguide flow --shard {input.shard:q} --out {output.flow:q}"
        " --failures {output.failures:q} --options {params.options:q}"
        ' --device "$FLOWGUIDE_DEVICE" $FLOWGUIDE_FAIL_FAST > {log:q} 2>&1'
