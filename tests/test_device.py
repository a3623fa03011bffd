"""GPU slot claiming: concurrent jobs get distinct GPUs; a finished job frees its GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowguide.utils.device import claim_gpu, resolve_device
from flowguide.utils.failures import FlowguideError

CLAIM = (
    "import sys; from pathlib import Path; from flowguide.utils.device import claim_gpu; "
    "print(claim_gpu(int(sys.argv[1]), Path(sys.argv[2])), flush=True); sys.stdin.read()"
)


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
    assert claim_gpu(3, tmp_path) == 0


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
