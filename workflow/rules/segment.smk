from flowguide.segment.weights import check_workflow_weights

# Every missing RAFT / SAM / FlowSAM file is listed in one error when the workflow loads,
# before any job runs.
check_workflow_weights(config)


rule segment:
    input:
        shard=f"{RESULTS}/shards/{{shard}}.csv",
        videos=shard_videos,
        flow=f"{RESULTS}/flow/{{shard}}.h5",
    output:
        candidates=f"{RESULTS}/candidates/{{shard}}.h5",
        failures=f"{RESULTS}/failures/segment/{{shard}}.csv",
    log:
        f"{LOGS}/segment/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/segment/{{shard}}.tsv"
    conda:
        "../../envs/segment.yaml"
    resources:
        mem_mb=res("segment", "mem_mb"),
        runtime=res("segment", "runtime"),
        cpus_per_task=res("segment", "cpus_per_task"),
        gpu=gpu_resource("segment"),
        gpu_model=gpu_model_resource("segment"),
        gres=gres_resource("segment"),
    params:
        options=options("segment"),
        root=dataset_root(),
    shell:
        "python -m flowguide segment --shard {input.shard:q} --flow {input.flow:q}"
        " --out {output.candidates:q} --failures {output.failures:q}"
        ' --options {params.options:q} --device "$FLOWGUIDE_DEVICE" $FLOWGUIDE_FAIL_FAST'
        " --dataset-root {params.root:q}"
        " > {log:q} 2>&1"
