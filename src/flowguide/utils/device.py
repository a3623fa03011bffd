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


def resolve_device(name: str = "auto", claim: bool = True):
    """The job's torch device. ``auto`` and ``cuda``: a claimed free GPU when CUDA is available
    (``auto`` falls back to the CPU only when there is no CUDA at all); ``cuda:N`` or ``cpu`` as
    given. An unavailable CUDA device is an error, never a silent fallback. ``claim=False``
    only checks the name (for jobs that will not use the GPU, e.g. OpenCV flow)."""
    import torch

    try:
        device = torch.device(name if name != "auto" else "cuda")
    except RuntimeError as exc:
        raise FlowguideError(f"--device {name!r}: {exc}") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        if name == "auto":
            return torch.device("cpu")
        raise FlowguideError(f"--device {name!r}: CUDA is not available on this machine")
    if device.index is not None or not claim:
        return device
    index = claim_gpu(torch.cuda.device_count())
    if index is None:
        raise FlowguideError(
            f"all {torch.cuda.device_count()} visible GPUs are held by other flowguide jobs "
            f"(locks in {lock_dir()}); run with --resources gpu=N to cap concurrent GPU jobs"
        )
    return torch.device("cuda", index)


def claim_gpus(count: int) -> list[int]:
    """``count`` GPUs (indices among the visible ones) for a multi-process job on one machine;
    the locks are held by this process, which outlives its workers."""
    import torch

    visible = torch.cuda.device_count()
    claimed: list[int] = []
    while len(claimed) < count:
        index = claim_gpu(visible)
        if index is None:
            raise FlowguideError(
                f"needed {count} free GPUs, found {len(claimed)} of {visible} "
                f"(locks in {lock_dir()}); run with --resources gpu=N to cap GPU jobs"
            )
        claimed.append(index)
    return claimed


def visible_devices_env(indices: list[int]) -> str:
    """CUDA_VISIBLE_DEVICES for the claimed indices, relative to what this process sees."""
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = current.split(",") if current else [str(i) for i in range(max(indices) + 1)]
    return ",".join(ids[i] for i in indices)
