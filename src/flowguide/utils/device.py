"""Choosing the torch device of a job, and giving each concurrent GPU job its own GPU.

Snakemake counts GPUs (``--resources gpu=N``) but does not say which GPU a job should use. On one
machine, each GPU job therefore claims a free GPU by taking an exclusive lock on
``$FLOWGUIDE_GPU_LOCKS/gpu<i>.lock`` (default ``.snakemake/gpu-locks``) and keeps it for its
lifetime; the lock is released when the process ends, even if it is killed. Under SLURM the job
sees only its allocated GPUs (``CUDA_VISIBLE_DEVICES``), so the claim picks among those.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from flowguide.utils.failures import FlowguideError

_held_locks: list[IO[str]] = []  # kept open for the life of the process


def lock_dir() -> Path:
    return Path(os.environ.get("FLOWGUIDE_GPU_LOCKS", ".snakemake/gpu-locks"))


def claim_gpu(n_visible: int, directory: Path | None = None) -> int | None:
    """Index of a GPU no other flowguide process holds, or None when all are taken."""
    directory = directory or lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(n_visible):
        handle = open(directory / f"gpu{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.write(str(os.getpid()))
        handle.flush()
        _held_locks.append(handle)
        return index
    return None


def resolve_device(name: str = "auto"):
    """``auto``: a claimed free CUDA device when CUDA is available, else the CPU."""
    import torch

    if name not in ("auto", "cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        if name == "cuda":
            raise FlowguideError("device 'cuda' requested but no CUDA device is available")
        return torch.device("cpu")
    index = claim_gpu(torch.cuda.device_count())
    if index is None:
        raise FlowguideError(
            f"all {torch.cuda.device_count()} visible GPUs are held by other flowguide jobs "
            f"(locks in {lock_dir()}); run with --resources gpu=N to cap concurrent GPU jobs"
        )
    return torch.device("cuda", index)
