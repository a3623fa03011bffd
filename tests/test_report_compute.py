"""The report's compute cost: Snakemake's benchmark files summed per stage, the elapsed span from
the files' times, and the FLOP-based one-GPU estimate, each against arithmetic done here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flowguide.report import compute
from flowguide.utils.failures import FlowguideError

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
# job -> (wall s, cpu s, end time in seconds after T0)
JOBS = {
    "synth": (10.0, 9.5, 10.0),
    "flow/train0000": (20.0, 30.0, 30.0),
    "flow/test0000": (15.0, 14.0, 28.0),
    "train/vanilla/T8": (100.0, 150.0, 130.0),
    "train/no_cue/T8": (90.0, 120.0, 125.0),
    "evaluate/vanilla/T8": (5.0, 4.0, 136.0),
    "report": (3.0, 2.5, 140.0),
}
T0 = 1_700_000_000.0


def write_jobs(results: Path, jobs: dict, t0: float = T0) -> None:
    for job, (wall, cpu, end) in jobs.items():
        path = results / "logs" / "benchmarks" / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + f"{wall}\t0:00:00\t1\t1\t1\t1\t0\t0\t1\t{cpu}\n")
        os.utime(path, (t0 + end, t0 + end))


def test_stage_sums_and_elapsed_span(tmp_path: Path):
    write_jobs(tmp_path / "d0", JOBS)
    write_jobs(tmp_path / "d1", {"synth": (4.0, 3.0, 4.0), "train/vanilla/T8": (50.0, 60.0, 60.0)})
    folders = {name: compute.load_job_times(tmp_path / name) for name in ("d0", "d1")}
    table = compute.time_table(folders).set_index("stage")
    assert list(table.index) == ["evaluate", "flow", "report", "synth", "train", "total"]
    assert table.loc["flow", "jobs"] == 2
    assert table.loc["flow", "wall_s"] == pytest.approx(35.0)
    assert table.loc["train", "wall_s"] == pytest.approx(100 + 90 + 50)
    assert table.loc["train", "cpu_s"] == pytest.approx(150 + 120 + 60)
    assert table.loc["synth", "cpu_s"] == pytest.approx(9.5 + 3.0)
    assert table.loc["total", "jobs"] == 9
    assert table.loc["total", "wall_s"] == pytest.approx(sum(v[0] for v in JOBS.values()) + 54)
    assert table.loc["total", "cpu_s"] == pytest.approx(sum(v[1] for v in JOBS.values()) + 63)
    # d0: first start = synth at 10 - 10 = 0, last end = 140 -> 140 s; d1: 60 - (4 - 4) = 60 s.
    assert table.loc["total", "elapsed_s"] == pytest.approx(140.0 + 60.0, abs=0.01)
    assert table.drop(index="total")["elapsed_s"].isna().all()


def test_a_file_without_the_columns_is_named(tmp_path: Path):
    bad = tmp_path / "logs" / "benchmarks" / "train" / "x" / "T8.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("seconds\n1\n")
    with pytest.raises(FlowguideError, match="T8.tsv"):
        compute.load_job_times(tmp_path)


def test_gpu_estimate_is_the_flop_arithmetic(tmp_path: Path):
    write_jobs(tmp_path, JOBS)
    jobs = compute.load_job_times(tmp_path)
    runs = pd.DataFrame(
        [
            # 0.002 GMACs per clip, 30 epochs of 128 clips (hours_per_epoch / seconds_per_clip).
            {"run": "vanilla", "T": 8, "gflops": 0.002, "epochs": 30,
             "hours_per_epoch": 128 * 0.5 / 3600, "seconds_per_clip": 0.5},
            {"run": "no_cue", "T": 8, "gflops": 0.002, "epochs": 30,
             "hours_per_epoch": 64 * 0.25 / 3600, "seconds_per_clip": 0.25},
            {"run": "kinetics", "T": 8, "gflops": float("nan"), "epochs": 30,
             "hours_per_epoch": 1.0, "seconds_per_clip": 1.0},  # no FLOP count: left out
        ]
    )  # fmt: skip
    estimate = compute.gpu_estimate(runs, jobs, tflops=4.0).set_index("run")
    assert list(estimate.index) == ["vanilla", "no_cue"]
    flops_vanilla = 0.002e9 * 2 * 3 * 30 * 128
    assert estimate.loc["vanilla", "train_clips_seen"] == 30 * 128
    assert estimate.loc["vanilla", "gpu_s"] == pytest.approx(flops_vanilla / 4e12)
    assert estimate.loc["no_cue", "gpu_s"] == pytest.approx(0.002e9 * 6 * 30 * 64 / 4e12)
    assert estimate.loc["vanilla", "measured_s"] == 100.0
    times = compute.time_table({"r": jobs})
    total, speedup = compute.one_gpu_total(times, estimate.reset_index())
    gpu = flops_vanilla / 4e12 + 0.002e9 * 6 * 30 * 64 / 4e12
    assert speedup == pytest.approx((100 + 90) / gpu)
    on_cpu = 10 + 20 + 15 + 3  # synth, flow x2, report
    on_gpu = 100 + 90 + 5  # train x2, evaluate
    assert total == pytest.approx(on_cpu + on_gpu / speedup)
    with pytest.raises(FlowguideError, match="gpu_tflops"):
        compute.gpu_estimate(runs, jobs, tflops=0.0)


def test_report_cli_prints_and_writes_the_times(tmp_path: Path):
    write_jobs(tmp_path / "d0", JOBS)
    write_jobs(tmp_path / "d1", {"synth": (4.0, 3.0, 4.0)})
    (tmp_path / "d1" / "eval").mkdir()  # a pooled folder must hold evaluations (here none)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "flowguide", "report", "--results", str(tmp_path / "d0"),
         "--out", str(tmp_path / "report"), "--pool", str(tmp_path / "d1"),
         "--options", '{"gallery_renderer": "report"}'],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    wall = sum(v[0] for v in JOBS.values()) + 4.0
    cpu = sum(v[1] for v in JOBS.values()) + 3.0
    assert f"time total: jobs 8 wall_s {wall:.0f} cpu_s {cpu:.0f} elapsed_s 144" in done.stdout
    assert "time train: jobs 2 wall_s 190 cpu_s 270\n" in done.stdout
    table = pd.read_csv(tmp_path / "report" / "tables" / "compute_time.csv")
    assert table["wall_s"].iloc[-1] == pytest.approx(wall)
    page = (tmp_path / "report" / "report.md").read_text()
    assert "Compute cost: measured on this machine, estimated for one GPU" in page
