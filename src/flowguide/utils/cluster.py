"""What a SLURM cluster can give a job, checked once when the workflow starts.

A request no node can satisfy (GPUs, memory, CPUs) is refused by ``sbatch`` at submission; the
executor reports that as a failed job and Snakemake retries it (``retries`` in the profile), so
the same refusal would come three times per job, late in the run. Checking the rules' requests
against ``sinfo`` when the run starts under the SLURM executor stops it once, before anything is
submitted, with the config key to change.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from flowguide.utils.failures import FlowguideError

# One gres entry of `sinfo -o %G`: gpu[:type]:count, then an optional "(S:0-1)" socket binding.
_GPU_GRES = re.compile(r"^gpu(?::(?P<model>[^:(]+))?:(?P<count>\d+)")


@dataclass(frozen=True)
class NodeSize:
    cpus: int
    mem_mb: int
    gpus: int


def node_gpus(gres: str, model: str | None = None) -> int:
    """GPUs (of ``model`` when given) in one node's ``sinfo -o %G`` field, e.g.
    ``gpu:a100:4(S:0-1),shard:8`` -> 4; ``(null)`` -> 0."""
    total = 0
    for entry in re.split(r",(?![^()]*\))", gres.strip()):
        match = _GPU_GRES.match(entry.strip())
        if match and (model is None or match["model"] == model):
            total += int(match["count"])
    return total


def largest_node(model: str | None = None, timeout: float = 30) -> NodeSize | None:
    """The most CPUs, memory and GPUs any one node has (each maximised separately), from
    ``sinfo``; None when sinfo is missing or cannot reach the controller (nothing to check
    against, e.g. a laptop)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%c|%m|%G"],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    nodes = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0].isdigit() and parts[1].rstrip("+").isdigit():
            nodes.append(
                NodeSize(int(parts[0]), int(parts[1].rstrip("+")), node_gpus(parts[2], model))
            )
    if not nodes:
        return None
    return NodeSize(
        max(n.cpus for n in nodes), max(n.mem_mb for n in nodes), max(n.gpus for n in nodes)
    )


def check_requests(
    requests: Mapping[str, Mapping[str, int]], largest: NodeSize, model: str | None
) -> None:
    """Stop with the config key when a rule asks for more than any node has.
    ``requests``: rule -> {"gpus", "mem_mb", "cpus_per_task"} as the rule declares them."""
    gpus = f"{model} GPUs" if model else "GPUs"
    limits = {"gpus": (largest.gpus, gpus), "mem_mb": (largest.mem_mb, "MB"),
              "cpus_per_task": (largest.cpus, "CPUs")}  # fmt: skip
    for rule, wanted in requests.items():
        for key, value in wanted.items():
            available, unit = limits[key]
            if value > available:
                raise FlowguideError(
                    f"cluster.rules.{rule}.{key} = {value}, but no node of this SLURM cluster "
                    f"has more than {available} {unit} (sinfo): sbatch would refuse the {rule} "
                    f"jobs. Lower cluster.rules.{rule}.{key}"
                    + (" or change cluster.gpu_model" if key == "gpus" and model else "")
                )
