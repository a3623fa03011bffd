# Evaluation of one trained run: results/eval/{run}/T{T}/ (issue 7).
# {run} is a registry method name, optionally with sweep parameters (flowguide.utils.runs):
# "ogl_dice", "ogl_dice-alpha0.25", "rrr_gradcam-lambda0.01-percentile20".
# The runs to evaluate come from train.smk's eval_runs().

import shlex

EVAL_DIR = f"{RESULTS}/eval/{{run}}/T{{T}}"


rule evaluate:
    input:
        checkpoint=f"{RESULTS}/train/{{run}}/T{{T}}/checkpoint.pt",
        train_log=f"{RESULTS}/train/{{run}}/T{{T}}/metrics.csv",
        manifest=f"{RESULTS}/manifest.csv",
        masks=shard_targets(f"{RESULTS}/masks/{{shard}}.h5"),
        clips=synth_clips(),
    output:
        metrics=report(
            f"{EVAL_DIR}/metrics.json",
            category="Evaluation",
            subcategory="{run}",
            labels={"run": "{run}", "T": "{T}", "file": "metrics.json"},
        ),
        predictions=f"{EVAL_DIR}/predictions.csv",
        confusion=report(
            f"{EVAL_DIR}/confusion.csv",
            category="Evaluation",
            subcategory="{run}",
            labels={"run": "{run}", "T": "{T}", "file": "confusion.csv"},
        ),
        cam_overlap=f"{EVAL_DIR}/cam_overlap.csv",
        cams=f"{EVAL_DIR}/cams.h5",
    log:
        f"{LOGS}/evaluate/{{run}}/T{{T}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate/{{run}}/T{{T}}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        cpus_per_task=res("evaluate", "cpus_per_task"),
        gpu=gpu_resource("evaluate"),
        gpu_model=gpu_model_resource("evaluate"),
        gres=gres_resource("evaluate"),
    params:
        options=options("evaluate"),
        train_dir=lambda wildcards, input: os.path.dirname(input.checkpoint),
        masks_dir=f"{RESULTS}/masks",
        synth=lambda wildcards, input: (
            f"--synth-clips {shlex.quote(input.clips[0])}" if input.clips else ""
        ),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    shell:
        "python -m flowguide evaluate --train-dir {params.train_dir:q} --manifest {input.manifest:q}"
        " --masks-dir {params.masks_dir:q} {params.synth} --run {wildcards.run} --T {wildcards.T}"
        ' --options {params.options:q} --device "$FLOWGUIDE_DEVICE" --out {params.out:q}'
        " > {log:q} 2>&1"
