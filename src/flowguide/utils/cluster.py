"""What a SLURM cluster can give a job, checked once when the workflow loads.

A GPU request no node can satisfy is refused by ``sbatch`` at submission; the executor reports
that as a failed job and Snakemake retries it (``retries`` in the profile), so the same refusal
would come three times, late in the run. Checking the rules' requests against ``sinfo`` when the
workflow loads with the SLURM executor stops the run once, before anything is submitted, with
the config key to change.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

from flowguide.utils.failures import FlowguideError

# One gres entry of `sinfo -o %G`: gpu[:type]:count, then an optional "(S:0-1)" socket binding.
_GPU_GRES = re.compile(r"^gpu(?::(?P<model>[^:(]+))?:(?P<count>\d+)")


def node_gpus(gres: str, model: str | None = None) -> int:
    """GPUs (of ``model`` when given) in one node's ``sinfo -o %G`` field, e.g.
    ``gpu:a100:4(S:0-1),shard:8`` -> 4; ``(null)`` -> 0."""
    total = 0
    for entry in re.split(r",(?![^()]*\))", gres.strip()):
        match = _GPU_GRES.match(entry.strip())
        if match and (model is None or match["model"] == model):
            total += int(match["count"])
    return total


def largest_node_gpus(model: str | None = None, timeout: float = 30) -> int | None:
    """The most GPUs one node of the cluster has, from ``sinfo``; None when sinfo is missing or
    cannot reach the controller (nothing to check against, e.g. a dry run on a laptop)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%G"],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    counts = [node_gpus(line, model) for line in proc.stdout.splitlines() if line.strip()]
    return max(counts, default=None)


def check_gpu_requests(requests: Mapping[str, int], available: int, model: str | None) -> None:
    """Stop with the config key when a rule asks for more GPUs than any node has."""
    what = f"{model} GPUs" if model else "GPUs"
    for rule, n in requests.items():
        if n > available:
            raise FlowguideError(
                f"cluster.rules.{rule}.gpus = {n}, but no node of this SLURM cluster has more "
                f"than {available} {what} (sinfo): sbatch would refuse the {rule} jobs. "
                f"Lower cluster.rules.{rule}.gpus"
                + (" or change cluster.gpu_model" if model else "")
            )
