"""Choosing the torch device of a job, and giving each concurrent GPU job its own GPU.

Under a batch scheduler (SLURM, PBS, LSF, Flux: its job id is in the environment) the job's
``CUDA_VISIBLE_DEVICES`` is its allocation, and no other job sees those GPUs: the job uses them and
claims nothing. On one machine, Snakemake counts GPUs (``--resources gpu=N``) but does not say which
GPU a job should use, so each GPU job claims a free GPU by taking an exclusive lock named after the
GPU's physical identity (UUID, else PCI bus id), not its visible index: two jobs that each see a
different GPU as index 0 do not collide. The locks live in one folder per machine and user
(``$FLOWGUIDE_GPU_LOCKS``, default ``<tmp>/flowguide-gpu-locks-<uid>``), so jobs of several clones
share them; a lock is released when its process ends, even if it is killed.
``FLOWGUIDE_GPU_CLAIM=always|never`` overrides the scheduler detection (e.g. ``always`` for a whole
``snakemake --cores all`` run inside one multi-GPU ``salloc``).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path

from flowguide.utils.failures import FlowguideError

# A job id that a batch scheduler puts in its jobs' environment.
SCHEDULER_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID")

_held_locks: list[int] = []  # file descriptors kept open for the life of the process


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"flowguide-gpu-locks-{os.getuid()}"
    return Path(os.environ.get("FLOWGUIDE_GPU_LOCKS", default))


def scheduler_job() -> str | None:
    """The scheduler variable naming this process' job when its GPUs are a scheduler's
    allocation (nothing to claim), else None."""
    mode = os.environ.get("FLOWGUIDE_GPU_CLAIM", "auto")
    if mode not in ("auto", "always", "never"):
        raise FlowguideError(f"FLOWGUIDE_GPU_CLAIM={mode!r}: expected auto, always or never")
    if mode == "always":
        return None
    if mode == "never":
        return "FLOWGUIDE_GPU_CLAIM"
    return next((var for var in SCHEDULER_JOB_VARS if os.environ.get(var)), None)


def physical_gpu_ids() -> list[str]:
    """One stable identity per visible CUDA device, in visible order: its UUID, else its PCI
    address (both name the physical GPU whatever CUDA_VISIBLE_DEVICES makes its index)."""
    import torch

    ids = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        uuid = str(getattr(props, "uuid", "") or "")
        if uuid:
            ids.append(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        else:
            ids.append(
                f"pci-{props.pci_domain_id:04x}-{props.pci_bus_id:02x}-{props.pci_device_id:02x}"
            )
    return ids


def _lock_name(gpu_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", gpu_id) + ".lock"


def claim_gpu(gpu_ids: list[str], directory: Path | None = None) -> int | None:
    """Visible index of a GPU (given by the physical ids of the visible devices) that no other
    flowguide process holds, or None when all are taken."""
    directory = directory or lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for index, gpu_id in enumerate(gpu_ids):
        # O_CREAT without O_TRUNC: opening must not erase the holder's PID when the lock is taken.
        fd = os.open(directory / _lock_name(gpu_id), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held_locks.append(fd)
        return index
    return None


def resolve_device(name: str = "auto", claim: bool = True):
    """The job's torch device. ``auto`` and ``cuda``: the allocated GPU under a scheduler, else a
    claimed free GPU when CUDA is available (``auto`` falls back to the CPU only when there is no
    CUDA at all); ``cuda:N`` or ``cpu`` as given. An unavailable CUDA device is an error, never a
    silent fallback. ``claim=False`` only checks the name (for jobs that will not use the GPU,
    e.g. OpenCV flow)."""
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
    if device.index is not None or not claim or scheduler_job():
        return device if device.index is not None else torch.device("cuda", 0)
    gpu_ids = physical_gpu_ids()
    index = claim_gpu(gpu_ids)
    if index is None:
        raise FlowguideError(
            f"all {len(gpu_ids)} visible GPUs are held by other flowguide jobs "
            f"(locks in {lock_dir()}); run with --resources gpu=N to cap concurrent GPU jobs"
        )
    return torch.device("cuda", index)


def claim_gpus(count: int) -> list[int]:
    """``count`` GPUs (indices among the visible ones) for a multi-process job: the first
    ``count`` of a scheduler's allocation, else claimed on this machine (the locks are held by
    this process, which outlives its workers)."""
    import torch

    visible = torch.cuda.device_count()
    if scheduler_job():
        if visible < count:
            raise FlowguideError(
                f"needed {count} GPUs, the job's allocation ({scheduler_job()}) shows {visible}"
            )
        return list(range(count))
    gpu_ids = physical_gpu_ids()
    claimed: list[int] = []
    while len(claimed) < count:
        # Indices already claimed by this process are locked too, so the next call skips them.
        index = claim_gpu(gpu_ids)
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
