import json

from flowguide.config import validate_config
from flowguide.train.methods import needs_masks, training_set
from flowguide.train.options import EXECUTION_OPTIONS, resolve_loader_batch_size
from flowguide.utils.cluster import check_requests, largest_node
from flowguide.utils.manifest import read_manifest
from flowguide.utils.runs import RUN_NAME_PATTERN, parse_run_name, run_name

# One validator for the workflow, the CLI and the tests; unknown keys stop with their name.
validate_config(config)

RESULTS = config["results"]
# Logs and benchmarks live with the results they describe: two configs with different
# `results:` folders run in one directory never share (or overwrite) each other's logs.
LOGS = f"{RESULTS}/logs"


wildcard_constraints:
    shard=r"(train|test)\d{4}",
    run=RUN_NAME_PATTERN,
    T=r"\d+",


def options(*keys):
    """A config section as canonical JSON: the rule's hyperparameters, passed through params."""
    section = config
    for key in keys:
        section = section[key]
    return json.dumps(section, sort_keys=True)


def dataset_root():
    if config["dataset"]["kind"] == "synthdive":
        return f"{RESULTS}/synthdive"
    return config["dataset"]["root"]


def dataset_inputs():
    """The dataset files the manifest reads; for SynthDive they are the synth rule's outputs."""
    d = config["dataset"]
    root = dataset_root()
    files = [
        f"{root}/{d['train_json']}",
        f"{root}/{d['test_json']}",
        f"{root}/{d['vocab_json']}",
    ]
    return files


def shards():
    """Shard names, known once the manifest checkpoint has run."""
    shards_dir = checkpoints.manifest.get().output.shards
    return sorted(
        f.removesuffix(".csv") for f in os.listdir(shards_dir) if f.endswith(".csv")
    )


def shard_videos(wildcards):
    """The video files of a shard (its CSV is written by the manifest checkpoint)."""
    shards_dir = checkpoints.manifest.get().output.shards
    return read_manifest(f"{shards_dir}/{wildcards.shard}.csv")["path"].tolist()


def shard_targets(pattern):
    def _targets(wildcards):
        return expand(pattern, shard=shards())

    return _targets


def all_targets(wildcards):
    """The report, which pulls in every stage; explanations are listed too."""
    targets = [f"{RESULTS}/report/index.html"]
    targets += [
        f"{RESULTS}/explain/{run}/T{T}/summary.csv" for run, T in explain_runs()
    ]
    return targets


# --- train ---


def train_runs():
    """Run names: the configured methods, then one per sweep value; with train.seeds, each of
    them once per training seed (run-name parameter "seed": vanilla-seed1)."""
    runs = [(m, {}) for m in config["train"]["methods"]]
    for sweep in config["train"]["sweeps"]:
        runs += [(sweep["method"], {sweep["param"]: v}) for v in sweep["values"]]
    seeds = config["train"]["seeds"]
    if seeds:
        runs = [(m, {**p, "seed": s}) for m, p in runs for s in seeds]
    return list(dict.fromkeys(run_name(m, p) for m, p in runs))


def eval_runs():
    """(run, T) pairs that are trained, evaluated and reported."""
    return [(run, T) for run in train_runs() for T in config["train"]["T"]]


def run_options(run, T):
    """The train section as this run sees it: only its own method's options (with the sweep
    value applied), its own loader batch size (the per-(method, T) overrides resolved), without
    the lists of methods, T and sweeps, so that adding a method or a T, or an override for
    another (method, T), reruns nothing that exists, and without the execution settings
    (execution.smk)."""
    method, params = parse_run_name(run)
    not_options = ("methods", "T", "sweeps", "seeds", *EXECUTION_OPTIONS)
    train = {k: v for k, v in config["train"].items() if k not in not_options}
    train = resolve_loader_batch_size(train, method, int(T))
    if "seed" in params:  # a training seed, not a method option
        train["seed"] = int(params.pop("seed"))
    own = {**config["train"]["method_options"].get(method, {}), **params}
    train["method_options"] = {method: own} if own else {}
    return json.dumps(train, sort_keys=True)


def train_masks(wildcards):
    """Mask methods read every mask shard; with train.clip_set common every method does (it
    trains on the clips that have masks); otherwise the others need none."""
    common = config["train"]["clip_set"] == "common"
    if common or needs_masks(parse_run_name(wildcards.run)[0]):
        return shard_targets(f"{RESULTS}/masks/{{shard}}.h5")(wildcards)
    return []


def train_manifest(wildcards):
    """The no_cue control trains on its own manifest (SynthDive's cue-independent twin split)."""
    if training_set(parse_run_name(wildcards.run)[0]) == "no_cue":
        return f"{RESULTS}/no_cue/manifest.csv"
    return f"{RESULTS}/manifest.csv"


def no_cue_synth_options():
    """synth's options for the no_cue twin: cue independent of the label, train split only."""
    synth = dict(config["synth"])
    synth["confounder"] = {**synth.get("confounder", {}), "train_p": None}
    synth["splits"] = ["train"]
    return json.dumps(synth, sort_keys=True)


def check_no_cue():
    runs = [parse_run_name(r)[0] for r in train_runs()]
    if config["dataset"]["kind"] != "synthdive" and any(
        training_set(m) == "no_cue" for m in runs
    ):
        raise ValueError(
            "train.methods: the no_cue control needs dataset.kind synthdive (it trains on "
            "SynthDive's cue-independent twin split)"
        )


def train_targets():
    return [f"{RESULTS}/train/{run}/T{T}/checkpoint.pt" for run, T in eval_runs()]


# --- evaluate ---


def synth_clips():
    """SynthDive's clips.csv (cue reliance); nothing on Diving48."""
    if config["dataset"]["kind"] == "synthdive":
        return [f"{RESULTS}/synthdive/clips.csv"]
    return []


# --- explain ---


def explain_runs():
    runs = config["explain"]["runs"]
    if runs is None:
        runs = config["train"]["methods"]
        seeds = config["train"]["seeds"]
        if seeds:  # explain the first training seed's runs
            runs = [run_name(m, {"seed": seeds[0]}) for m in runs]
    return [(run, T) for run in runs for T in config["train"]["T"]]


def explain_options():
    """The explain section minus the list of runs (adding a run reruns nothing else)."""
    section = {k: v for k, v in config["explain"].items() if k != "runs"}
    return json.dumps(section, sort_keys=True)


# --- report ---


def report_inputs(wildcards):
    inputs = [f"{RESULTS}/eval/{run}/T{t}/metrics.json" for run, t in eval_runs()]
    inputs += [f"{RESULTS}/explain/{run}/T{t}/summary.csv" for run, t in explain_runs()]
    inputs += [f"{RESULTS}/manifest.csv"]
    inputs += expand(f"{RESULTS}/masks/{{shard}}.h5", shard=shards())
    if config["dataset"]["kind"] == "synthdive":
        inputs.append(f"{RESULTS}/masks/quality.csv")
    return inputs


# --- resources -------------------------------------------------------------------------------
# Every rule declares mem_mb, runtime, cpus_per_task and, for GPU rules, a GPU request in the
# form the cluster wants (config cluster.gpu_request). Locally, `--resources gpu=N` caps GPU jobs.

CPU_ONLY_BACKENDS = {"flow": {"dis", "farneback"}, "segment": {"motion"}}


def rule_gpus(rule):
    backend = config.get(rule, {}).get("backend")
    if backend in CPU_ONLY_BACKENDS.get(rule, ()):
        return 0
    return config["cluster"]["rules"][rule]["gpus"]


def gpu_resource(rule):
    """`gpu: N` (Snakemake's and the SLURM plugin's GPU resource) unless gres is asked for."""
    n = rule_gpus(rule)
    return n if config["cluster"]["gpu_request"] == "gpu" else 0


def gpu_model_resource(rule):
    """`gpu_model` next to `gpu` (the plugin then sends --gpus=<model>:N); empty without GPUs."""
    model = config["cluster"]["gpu_model"]
    if config["cluster"]["gpu_request"] != "gpu" or rule_gpus(rule) == 0 or not model:
        return ""
    return model


def gres_resource(rule):
    n = rule_gpus(rule)
    if config["cluster"]["gpu_request"] != "gres" or n == 0:
        return ""
    model = config["cluster"]["gpu_model"]
    return f"gpu:{model}:{n}" if model else f"gpu:{n}"


def res(rule, key):
    return config["cluster"]["rules"][rule][key]


GPU_RULES = ("flow", "segment", "train", "evaluate", "explain")


def check_cluster_requests():
    """Under the SLURM executor, refuse requests (GPUs, memory, CPUs) no node can satisfy,
    once, before submitting: sbatch's refusal would count as a failed job and be retried.
    Called when the run starts: the executor is not known while the Snakefile is parsed.
    """
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return
    model = config["cluster"]["gpu_model"]
    largest = largest_node(model)
    if largest is None:
        return
    requests = {}
    for rule, declared in config["cluster"]["rules"].items():
        requests[rule] = {
            "gpus": rule_gpus(rule) if rule in GPU_RULES else 0,
            "mem_mb": declared["mem_mb"],
            "cpus_per_task": declared["cpus_per_task"],
        }
    check_requests(requests, largest, model)


onstart:
    check_cluster_requests()
