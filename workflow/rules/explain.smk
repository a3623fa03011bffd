# Post-hoc explanations of one trained run (papers 002-004): results/explain/{run}/T{T}/.


EXPLAIN_DIR = f"{RESULTS}/explain/{{run}}/T{{T}}"


rule explain:
    input:
        checkpoint=f"{RESULTS}/train/{{run}}/T{{T}}/checkpoint.pt",
        manifest=f"{RESULTS}/manifest.csv",
        masks=shard_targets(f"{RESULTS}/masks/{{shard}}.h5"),
        flow=shard_targets(f"{RESULTS}/flow/{{shard}}.h5"),
    output:
        scores=f"{EXPLAIN_DIR}/scores.csv",
        summary=report(
            f"{EXPLAIN_DIR}/summary.csv",
            category="Explanations",
            subcategory="{run}",
            labels={"run": "{run}", "T": "{T}", "file": "summary.csv"},
        ),
        maps=f"{EXPLAIN_DIR}/maps.h5",
    log:
        f"{LOGS}/explain/{{run}}/T{{T}}.log",
    benchmark:
        f"{LOGS}/benchmarks/explain/{{run}}/T{{T}}.tsv"
    conda:
        "../../envs/explain.yaml"
    resources:
        mem_mb=res("explain", "mem_mb"),
        runtime=res("explain", "runtime"),
        cpus_per_task=res("explain", "cpus_per_task"),
        gpu=gpu_resource("explain"),
        gpu_model=gpu_model_resource("explain"),
        gres=gres_resource("explain"),
    params:
        options=explain_options(),
        masks_dir=f"{RESULTS}/masks",
        flow_dir=f"{RESULTS}/flow",
        out=lambda wildcards, output: os.path.dirname(output.scores),
    shell:
        "python -m flowguide explain --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --masks-dir {params.masks_dir:q}"
        " --flow-dir {params.flow_dir:q} --out-dir {params.out:q}"
        ' --options {params.options:q} --device "$FLOWGUIDE_DEVICE" $FLOWGUIDE_FAIL_FAST'
        " > {log:q} 2>&1"
