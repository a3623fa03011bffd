# SlowFast training, one job per (run, T): every method of train.methods and every sweep value
# of train.sweeps, at every T of train.T. A run name is a method plus sweep parameters
# (flowguide.utils.runs): "rrr_ogl", "ogl_dice-ce_weight0.25".
# Outputs: the final checkpoint (model, optimiser, scheduler, RNG and method state, metrics),
# per-epoch metrics.csv, timing.json. A killed or requeued job keeps <out>/last.pt (not an
# output, so Snakemake leaves it) and the rerun resumes from it.
# The job's whole output goes to its log; its per-epoch progress lines ("train <run> T=<T>: epoch
# i/N loss ... (s)", flowguide.train.outputs.progress_line) and the final summary are also passed
# to Snakemake's terminal (locally; under SLURM, to the job's SLURM log).


TRAIN_DIR = f"{RESULTS}/train/{{run}}/T{{T}}"

check_no_cue()


rule train:
    input:
        manifest=train_manifest,
        masks=train_masks,
    output:
        checkpoint=f"{TRAIN_DIR}/checkpoint.pt",
        metrics=f"{TRAIN_DIR}/metrics.csv",
        timing=f"{TRAIN_DIR}/timing.json",
    log:
        f"{LOGS}/train/{{run}}/T{{T}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train/{{run}}/T{{T}}.tsv"
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        cpus_per_task=res("train", "cpus_per_task"),
        gpu=gpu_resource("train"),
        gpu_model=gpu_model_resource("train"),
        gres=gres_resource("train"),
    params:
        options=lambda wildcards: run_options(wildcards.run, wildcards.T),
        method=lambda wildcards: parse_run_name(wildcards.run)[0],
        masks_dir=f"{RESULTS}/masks",
        out_dir=lambda wildcards, output: os.path.dirname(output.checkpoint),
    shell:
        "python -m flowguide train --manifest {input.manifest:q} --masks-dir {params.masks_dir:q}"
        " --method {params.method} --T {wildcards.T} --out-dir {params.out_dir:q}"
        ' --options {params.options:q} --device "$FLOWGUIDE_DEVICE" --gpus $FLOWGUIDE_TRAIN_GPUS'
        " --num-workers $FLOWGUIDE_NUM_WORKERS --tensorboard $FLOWGUIDE_TENSORBOARD"
        " --prefetch-factor $FLOWGUIDE_PREFETCH_FACTOR --cudnn-benchmark $FLOWGUIDE_CUDNN_BENCHMARK"
        " 2>&1 | tee {log:q} | sed -un '\\%^train [^ ]* T=[0-9]*: %p' >&2"
