import json

from flowguide.config import validate_config

# One validator for the workflow, the CLI and the tests; unknown keys stop with their name.
validate_config(config)

RESULTS = config["results"]
LOGS = "logs"


wildcard_constraints:
    shard=r"(train|test)\d{4}",


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


def fail_fast_flag():
    return "--fail-fast" if config["fail_fast"] else ""


def shards():
    """Shard names, known once the manifest checkpoint has run."""
    shards_dir = checkpoints.manifest.get().output.shards
    return sorted(
        f.removesuffix(".csv") for f in os.listdir(shards_dir) if f.endswith(".csv")
    )


def shard_targets(pattern):
    def _targets(wildcards):
        return expand(pattern, shard=shards())

    return _targets


def all_targets(wildcards):
    """The report, which pulls in every stage; explanations are listed too."""
    targets = [f"{RESULTS}/report/index.html"]
    targets += [f"{RESULTS}/explain/{run}/T{T}/summary.csv" for run, T in explain_runs()]
    return targets


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


def gres_resource(rule):
    n = rule_gpus(rule)
    if config["cluster"]["gpu_request"] != "gres" or n == 0:
        return ""
    model = config["cluster"]["gpu_model"]
    return f"gpu:{model}:{n}" if model else f"gpu:{n}"


def res(rule, key):
    return config["cluster"]["rules"][rule][key]
