"""The workflow through a real SLURM: a single-node SLURM 22.05 cluster on loopback, started by
tests/slurm/start.sh (packages: tests/slurm/install.sh), and the repository's `slurm` profile.

Skipped, with the reason, where SLURM is not installed or the test does not run as root (the
daemons and the munge key need it); CI (`.ci/slurm`) installs it and sets FLOWGUIDE_REQUIRE_SLURM=1,
which turns that skip into a failure. Every wait is bounded
and the module stops the cluster it started.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import TINY, jobs_run, write_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

ROOT = Path(__file__).resolve().parents[1]
SLURM_SCRIPTS = ROOT / "tests" / "slurm"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
NEEDED = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "squeue")
RUN_TIMEOUT = 1200  # seconds for one snakemake run through SLURM (the tiny DAG takes a few min)

# Demo-sized jobs, and 1 GPU for training (the node has two fake ones: two training jobs at once).
CLUSTER = {
    "rules": {
        "flow": {"mem_mb": 1000, "runtime": 10, "cpus_per_task": 1},
        "segment": {"mem_mb": 1000, "runtime": 10, "cpus_per_task": 1},
        "train": {"gpus": 1, "mem_mb": 1500, "runtime": 20, "cpus_per_task": 1},
        "evaluate": {"gpus": 0, "mem_mb": 1200, "runtime": 10, "cpus_per_task": 1},
        "explain": {"gpus": 0, "mem_mb": 1200, "runtime": 10, "cpus_per_task": 1},
    }
}


def _why_not() -> str | None:
    missing = [cmd for cmd in NEEDED if shutil.which(cmd) is None]
    if missing:
        return (
            f"SLURM is not installed here (missing {', '.join(missing)}); "
            "tests/slurm/install.sh installs it with apt-get (Debian/Ubuntu, root)"
        )
    if os.geteuid() != 0:
        return "tests/slurm/start.sh must run as root (SLURM daemons, munge key)"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = _why_not()
    if reason and os.environ.get("FLOWGUIDE_REQUIRE_SLURM") == "1":
        pytest.fail(f"FLOWGUIDE_REQUIRE_SLURM=1 (CI, .ci/slurm) but {reason}")
    if reason:
        pytest.skip(reason)
    already_up = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30
    ).stdout.strip() == "idle"  # fmt: skip
    proc = subprocess.run(
        ["bash", str(SLURM_SCRIPTS / "start.sh")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"tests/slurm/start.sh failed:\n{proc.stdout}\n{proc.stderr}"
    yield
    subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=60)
    if not already_up:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop.sh")], capture_output=True, timeout=300)


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}


def _command(*args: str) -> list[str]:
    return [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--profile", str(PROFILE), *args]


def run_slurm(workdir: Path, *args: str, ok: bool = True) -> str:
    proc = subprocess.run(
        _command(*args), cwd=workdir, env=_env(), capture_output=True, text=True,
        timeout=RUN_TIMEOUT,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, output[-6000:]
    else:
        assert proc.returncode != 0, output[-6000:]
    return output


def last_job_id() -> int:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "2000-01-01", "-o", "JobIDRaw"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return max((int(x) for x in out.split() if x.isdigit()), default=0)


def jobs_since(first_id: int) -> list[dict[str, str]]:
    """Accounting rows (sacct) of the jobs submitted after job ``first_id``."""
    fields = "JobIDRaw,Comment%300,State,ReqCPUS,ReqMem,Timelimit,ReqTRES%200,Start,End"
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "2000-01-01", "-o", fields],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    names = [f.split("%")[0] for f in fields.split(",")]
    rows = [dict(zip(names, line.split("|"), strict=True)) for line in out.splitlines() if line]
    return [r for r in rows if r["JobIDRaw"].isdigit() and int(r["JobIDRaw"]) > first_id]


def rule_of(row: dict[str, str]) -> str:
    return re.match(r"rule_([a-z_]+?)(?:_wildcards_|$)", row["Comment"])[1]


def tiny_config() -> dict:
    return {**TINY, "cluster": CLUSTER}


@pytest.fixture(scope="module")
def slurm_dir(cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The tiny DAG through SLURM once: (its folder, the accounting rows of its jobs)."""
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, tiny_config())
    first = last_job_id()
    start = time.monotonic()
    output = run_slurm(workdir)
    wall = time.monotonic() - start
    print(f"tiny DAG through SLURM: {wall:.0f} s wall")
    ran = jobs_run(output)
    assert ran["train"] == 2 and ran["report"] == 1, ran
    return workdir, jobs_since(first)


def test_jobs_run_with_the_declared_resources_and_build_the_report(slurm_dir) -> None:
    workdir, rows = slurm_dir
    assert (workdir / "results" / "report" / "index.html").is_file()
    assert rows and all(r["State"] == "COMPLETED" for r in rows), rows
    by_rule: dict[str, list[dict]] = {}
    for row in rows:
        by_rule.setdefault(rule_of(row), []).append(row)
    assert len(by_rule["train"]) == 2 and len(by_rule["report"]) == 1
    for rule in ("flow", "segment", "train", "evaluate", "explain"):
        want = CLUSTER["rules"][rule]
        for row in by_rule[rule]:
            assert row["ReqCPUS"] == str(want["cpus_per_task"]), row
            assert row["ReqMem"] == f"{want['mem_mb']}M", row
            assert row["Timelimit"] == f"00:{want['runtime']:02d}:00", row
            # flow and segment use DIS and motion layers here: CPU only, no GPU asked for.
            assert ("gres/gpu=1" in row["ReqTRES"]) == (want.get("gpus") == 1), row
    # The other rules get the schema's defaults (4000 MB, 60 min, 2 CPUs, no GPU).
    for row in by_rule["select"] + by_rule["report"]:
        assert (row["ReqCPUS"], row["ReqMem"], row["Timelimit"]) == ("2", "4000M", "01:00:00")
        assert "gres/gpu" not in row["ReqTRES"]


def test_changed_training_parameter_resubmits_only_affected_jobs(slurm_dir) -> None:
    workdir, _ = slurm_dir
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["method_options"] = {"ogl_transform": {"p": 0.9}}
    write_config(workdir, config)
    first = last_job_id()
    ran = jobs_run(run_slurm(workdir))
    assert ran == {"train": 1, "evaluate": 1, "report": 1}, ran
    rows = jobs_since(first)
    assert sorted(rule_of(r) for r in rows) == ["evaluate", "report", "train"]
    assert all("ogl_transform" in r["Comment"] for r in rows if rule_of(r) != "report")


def test_scancel_of_a_running_train_job_is_seen_and_the_retry_resumes(slurm_dir) -> None:
    workdir, _ = slurm_dir
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["epochs"] = 25  # long enough to cancel mid-run
    config["train"]["methods"] = ["vanilla"]
    write_config(workdir, config)
    metrics = workdir / "results" / "train" / "vanilla" / "T4" / "metrics.csv"
    started = time.time()
    proc = subprocess.Popen(
        _command(), cwd=workdir, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        job = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            # metrics.csv is rewritten after every epoch (the old one was deleted as an output).
            if metrics.exists() and metrics.stat().st_mtime > started:
                running = subprocess.run(
                    ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"],
                    capture_output=True, text=True, timeout=30,
                ).stdout  # fmt: skip
                job = next(
                    (line.split("|")[0] for line in running.splitlines() if "rule_train" in line),
                    None,
                )
                if job:
                    subprocess.run(["scancel", job], check=True, timeout=30)
                    break
            time.sleep(1)
        assert job, "no running train job to cancel"
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0, output[-6000:]
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in output, output[-6000:]
    logs = [p for p in workdir.rglob("*.log") if "train" in p.parts and "vanilla" in p.parts]
    text = "\n".join(p.read_text() for p in logs)
    resumed = re.search(r"resumed from (\d+)", text)
    assert resumed and int(resumed[1]) >= 1, text[-3000:]
    final = pd_epochs(metrics)
    assert final == list(range(1, 26))


def pd_epochs(path: Path) -> list[int]:
    import pandas as pd

    return pd.read_csv(path)["epoch"].tolist()


def test_unsatisfiable_gpu_request_fails_once_naming_it(slurm_dir) -> None:
    workdir, _ = slurm_dir
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["cluster"]["rules"]["train"]["gpus"] = 4  # the node has 2
    # A valid config otherwise (batch 8 = 4 processes x loader batch 2), so that the node check,
    # not the config's batch check, is what refuses it; train is out of date (lr): it would be
    # submitted.
    config["train"].update(batch_size=8, lr=0.07)
    write_config(workdir, config)
    first = last_job_id()
    output = run_slurm(workdir, ok=False)
    assert "cluster.rules.train.gpus = 4, but no node" in output, output[-4000:]
    assert "has more than 2 GPUs (sinfo)" in output
    assert jobs_since(first) == []  # refused before anything was submitted: not three times


# A job that sees CUDA devices with fake UUIDs (torch.cuda patched: there is no GPU here),
# resolves its device through the real claim code, and reports what SLURM gave it.
FAKE_GPU_JOB = """
import os, time, types, torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(uuid="GPU-same-for-both")
from flowguide.utils.device import resolve_device
device = resolve_device("auto")
time.sleep(8)
print(f"device={device} CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}", flush=True)
"""


def test_two_gpu_jobs_each_with_one_allocated_device_both_run(cluster, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(FAKE_GPU_JOB)
    locks = tmp_path / "locks"
    env = {**_env(), "FLOWGUIDE_GPU_LOCKS": str(locks)}
    ids = []
    for i in range(2):
        proc = subprocess.run(
            ["sbatch", "--parsable", "--gpus=1", "-c1", "--mem=1000", "-t", "5",
             "-o", str(tmp_path / f"job{i}.out"), "--wrap", f"{sys.executable} {script}"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=True,
        )  # fmt: skip
        ids.append(proc.stdout.strip())
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rows = [r for r in jobs_since(int(ids[0]) - 1) if r["JobIDRaw"] in ids]
        if len(rows) == 2 and all(r["State"] not in ("PENDING", "RUNNING") for r in rows):
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", *ids], timeout=30)
        raise AssertionError("the two GPU jobs did not finish in 180 s")
    assert [r["State"] for r in rows] == ["COMPLETED", "COMPLETED"], rows
    a, b = rows
    assert a["Start"] < b["End"] and b["Start"] < a["End"], "the two jobs did not overlap"
    outs = sorted((tmp_path / f"job{i}.out").read_text().strip() for i in range(2))
    assert outs == [
        "device=cuda:0 CUDA_VISIBLE_DEVICES=0",
        "device=cuda:0 CUDA_VISIBLE_DEVICES=1",
    ], outs
    assert not locks.exists()  # under SLURM nothing is claimed
