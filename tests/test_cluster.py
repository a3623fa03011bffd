"""Requests checked against the largest SLURM node before submitting (flowguide.utils.cluster)."""

from __future__ import annotations

import pytest

from flowguide.utils.cluster import NodeSize, check_requests, node_gpus
from flowguide.utils.failures import FlowguideError


@pytest.mark.parametrize(
    ("gres", "model", "expected"),
    [
        ("(null)", None, 0),
        ("gpu:2", None, 2),
        ("gpu:a100:4(S:0-1),shard:8", None, 4),
        ("gpu:a100:4(S:0-1),gpu:v100:2", "v100", 2),
        ("gpu:a100:4(S:0-1),gpu:v100:2", None, 6),
        ("gpu:a100:4", "h100", 0),
    ],
)
def test_gpus_of_a_node_from_sinfo(gres: str, model: str | None, expected: int) -> None:
    assert node_gpus(gres, model) == expected


def test_a_request_no_node_can_satisfy_names_its_key() -> None:
    node = NodeSize(cpus=8, mem_mb=8000, gpus=2)
    fits = {"train": {"gpus": 2, "mem_mb": 8000, "cpus_per_task": 8}}
    check_requests(fits, node, None)  # exactly the largest node: fine
    with pytest.raises(FlowguideError, match=r"cluster\.rules\.train\.gpus = 4, .* 2 GPUs"):
        check_requests({"train": {"gpus": 4, "mem_mb": 1, "cpus_per_task": 1}}, node, None)
    with pytest.raises(FlowguideError, match=r"cluster\.rules\.flow\.mem_mb = 16000, .* 8000 MB"):
        check_requests({"flow": {"gpus": 0, "mem_mb": 16000, "cpus_per_task": 1}}, node, None)
    with pytest.raises(FlowguideError, match=r"a100 GPUs.*or change cluster\.gpu_model"):
        check_requests({"train": {"gpus": 3, "mem_mb": 1, "cpus_per_task": 1}}, node, "a100")


@pytest.mark.parametrize(("required", "outcome"), [("0", "1 skipped"), ("1", "1 error")])
def test_the_real_slurm_test_skips_without_slurm_unless_ci_requires_it(
    tmp_path, required: str, outcome: str
) -> None:
    """tests/test_slurm.py where no SLURM command is on PATH: skipped with its reason, but a
    failure under FLOWGUIDE_REQUIRE_SLURM=1 (.ci/slurm), so CI cannot pass by skipping it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    env = {**os.environ, "PATH": str(tmp_path), "FLOWGUIDE_REQUIRE_SLURM": required}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "--runslow", "-p", "no:cacheprovider",
         str(tests / "test_slurm.py"), "-k", "declared_resources"],
        cwd=tests.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert outcome in proc.stdout, proc.stdout[-3000:]
    assert (proc.returncode == 0) == (required == "0")  # CI's step fails on the error
    assert "SLURM is not installed here (missing munged" in proc.stdout
