# SlowFast training, one job per (run, T): every method of train.methods and every sweep value
# of train.sweeps, at every T of train.T. A run name is a method plus sweep parameters
# (flowguide.utils.runs): "rrr_ogl", "ogl_dice-alpha0.25".
# Outputs: the final checkpoint (model, optimiser, scheduler, RNG and method state, metrics),
# per-epoch metrics.csv, timing.json. A killed or requeued job keeps <out>/last.pt (not an
# output, so Snakemake leaves it) and the rerun resumes from it.
from flowguide.train.methods import needs_masks
from flowguide.utils.runs import RUN_NAME_PATTERN, parse_run_name, run_name


wildcard_constraints:
    run=RUN_NAME_PATTERN,
    T=r"\d+",


TRAIN_DIR = f"{RESULTS}/train/{{run}}/T{{T}}"


def train_runs():
    """Run names: the configured methods, then one per sweep value."""
    runs = list(config["train"]["methods"])
    for sweep in config["train"]["sweeps"]:
        runs += [run_name(sweep["method"], {sweep["param"]: v}) for v in sweep["values"]]
    return list(dict.fromkeys(runs))


def eval_runs():
    """(run, T) pairs that are trained, evaluated and reported."""
    return [(run, T) for run in train_runs() for T in config["train"]["T"]]


def run_options(run):
    """The train section as this run sees it: only its own method's options (with the sweep
    value applied), without the lists of methods, T and sweeps, so that adding a method or a
    T reruns nothing that exists."""
    method, params = parse_run_name(run)
    train = {k: v for k, v in config["train"].items() if k not in ("methods", "T", "sweeps")}
    own = {**config["train"]["method_options"].get(method, {}), **params}
    train["method_options"] = {method: own} if own else {}
    return json.dumps(train, sort_keys=True)


def train_masks(wildcards):
    """Mask methods read every mask shard; the others need none (no flow/segment upstream)."""
    if needs_masks(parse_run_name(wildcards.run)[0]):
        return shard_targets(f"{RESULTS}/masks/{{shard}}.h5")(wildcards)
    return []


def train_targets():
    return [f"{RESULTS}/train/{run}/T{T}/checkpoint.pt" for run, T in eval_runs()]


rule train:
    input:
        manifest=f"{RESULTS}/manifest.csv",
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
        gres=gres_resource("train"),
    params:
        options=lambda wildcards: run_options(wildcards.run),
        method=lambda wildcards: parse_run_name(wildcards.run)[0],
        masks_dir=f"{RESULTS}/masks",
        out_dir=lambda wildcards, output: os.path.dirname(output.checkpoint),
        device=config["device"],
    shell:
        "python -m flowguide train --manifest {input.manifest:q} --masks-dir {params.masks_dir:q}"
        " --method {params.method} --T {wildcards.T} --out-dir {params.out_dir:q}"
        " --options {params.options:q} --device {params.device:q} > {log:q} 2>&1"
