"""GPU claiming: concurrent jobs get distinct physical GPUs; a finished job frees its GPU; jobs of
a scheduler claim nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowguide.utils.device import SCHEDULER_JOB_VARS, claim_gpu, resolve_device
from flowguide.utils.failures import FlowguideError

CLAIM = (
    "import sys; from pathlib import Path; from flowguide.utils.device import claim_gpu; "
    "ids = [f'GPU-{i}' for i in range(int(sys.argv[1]))]; "
    "print(claim_gpu(ids, Path(sys.argv[2])), flush=True); sys.stdin.read()"
)

# A job that sees the fake CUDA devices named in argv[1] (comma-separated UUIDs), resolves its
# device through the real claim code, prints it and holds it until stdin closes.
FAKE_GPU_JOB = """
import sys, types, torch
uuids = sys.argv[1].split(",")
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: len(uuids)
torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(uuid=uuids[i])
from flowguide.utils.device import resolve_device
from flowguide.utils.failures import FlowguideError
try:
    print(resolve_device("auto"), flush=True)
except FlowguideError as exc:
    print("error:", exc, flush=True)
sys.stdin.read()
"""


def _jobs(views: list[str], env: dict[str, str]) -> list[str]:
    """Start one fake-GPU job per view at once; each one's printed device, all held together."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FAKE_GPU_JOB, view],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        for view in views
    ]  # fmt: skip
    lines = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.communicate("", timeout=60)
    return lines


def _job_env(locks: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULER_JOB_VARS}
    env.pop("FLOWGUIDE_GPU_CLAIM", None)
    return {**env, "FLOWGUIDE_GPU_LOCKS": str(locks), **extra}


def test_concurrent_processes_claim_distinct_gpus(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, "3", str(tmp_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]  # fmt: skip
    claimed = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.communicate("")
    assert sorted(claimed) == ["0", "1", "2", "None"]
    # All four ended, so their locks are gone and GPU 0 is free again.
    assert claim_gpu(["GPU-0", "GPU-1", "GPU-2"], tmp_path) == 0


def test_two_jobs_each_seeing_one_gpu_both_run(tmp_path: Path) -> None:
    """Two jobs on one machine, each shown a different GPU as its index 0 (e.g.
    CUDA_VISIBLE_DEVICES=0 and =1): the locks name the physical GPU, so both get cuda:0."""
    env = _job_env(tmp_path)
    assert _jobs(["GPU-aaaa", "GPU-bbbb"], env) == ["cuda:0", "cuda:0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GPU-aaaa.lock", "GPU-bbbb.lock"]
    # The same physical GPU seen by two jobs is still exclusive: the second one is refused.
    first, second = _jobs(["GPU-aaaa", "GPU-aaaa"], env)
    assert sorted([first, second])[0] == "cuda:0"
    assert "all 1 visible GPUs are held" in sorted([first, second])[1]


def test_scheduler_jobs_trust_their_allocation(tmp_path: Path) -> None:
    """Two SLURM jobs on one node, each allocated one GPU that it sees as index 0 (here even the
    same fake UUID): both use cuda:0 and neither takes a lock."""
    env = _job_env(tmp_path / "locks", SLURM_JOB_ID="47")
    assert _jobs(["GPU-aaaa", "GPU-aaaa"], env) == ["cuda:0", "cuda:0"]
    assert not (tmp_path / "locks").exists()
    # FLOWGUIDE_GPU_CLAIM=always restores claiming inside an allocation (one salloc, many jobs).
    env["FLOWGUIDE_GPU_CLAIM"] = "always"
    assert sorted(_jobs(["GPU-aaaa", "GPU-aaaa"], env))[0] == "cuda:0"
    assert (tmp_path / "locks" / "GPU-aaaa.lock").exists()


def test_a_refused_claim_keeps_the_holders_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM, "1", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "0"
    try:
        assert claim_gpu(["GPU-0"], tmp_path) is None
        assert (tmp_path / "GPU-0.lock").read_text().strip() == str(holder.pid)
    finally:
        holder.communicate("", timeout=60)


def test_cpu_when_no_cuda() -> None:
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_or_unavailable_device_is_an_error() -> None:
    with pytest.raises(FlowguideError, match="'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(FlowguideError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_visible_devices_follow_the_jobs_own_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowguide.utils.device import visible_devices_env

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_devices_env([1, 3]) == "1,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # e.g. what SLURM gave the job
    assert visible_devices_env([0, 2]) == "4,6"
