# SlowFast training, one job per (method, T) from config train.methods x train.T (issue 5).
# Outputs: the final checkpoint (model, optimiser, scheduler, RNG and method state, metrics),
# per-epoch metrics.csv, timing.json. A killed job keeps <out>/last.pt (not an output, so
# Snakemake leaves it) and the rerun resumes from it.
from flowguide.train.methods import needs_masks
from flowguide.utils.runs import METHOD_PATTERN


wildcard_constraints:
    method=METHOD_PATTERN,
    T=r"\d+",


TRAIN_DIR = f"{RESULTS}/train/{{method}}/T{{T}}"


def train_masks(wildcards):
    """Mask methods read every mask shard; the others need none (no flow/segment upstream)."""
    if needs_masks(wildcards.method):
        return shard_targets(f"{RESULTS}/masks/{{shard}}.h5")(wildcards)
    return []


def train_targets():
    return expand(
        f"{RESULTS}/train/{{method}}/T{{T}}/checkpoint.pt",
        method=config["train"]["methods"],
        T=config["train"]["T"],
    )


rule train:
    input:
        manifest=f"{RESULTS}/manifest.csv",
        masks=train_masks,
    output:
        checkpoint=f"{TRAIN_DIR}/checkpoint.pt",
        metrics=f"{TRAIN_DIR}/metrics.csv",
        timing=f"{TRAIN_DIR}/timing.json",
    log:
        f"{LOGS}/train/{{method}}/T{{T}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train/{{method}}/T{{T}}.tsv"
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        cpus_per_task=res("train", "cpus_per_task"),
        gpu=gpu_resource("train"),
        gres=gres_resource("train"),
    params:
        options=options("train"),
        masks_dir=f"{RESULTS}/masks",
        out_dir=TRAIN_DIR,
        device=config["device"],
    shell:
        "python -m flowguide train --manifest {input.manifest:q} --masks-dir {params.masks_dir:q}"
        " --method {wildcards.method} --T {wildcards.T} --out-dir {params.out_dir:q}"
        " --options {params.options:q} --device {params.device:q} > {log:q} 2>&1"
