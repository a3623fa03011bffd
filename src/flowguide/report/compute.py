"""What a results folder cost to compute, measured, and an estimate for one GPU.

Measured: Snakemake writes one benchmark TSV per job (``<results>/logs/benchmarks/**.tsv``,
the ``benchmark:`` of every rule) with the job's wall seconds (``s``) and the CPU seconds of its
process tree (``cpu_time``, psutil's samples). Summed per stage they give the serial cost of the
DAG; with several cores jobs overlap, so the elapsed time is shorter: ``elapsed_span`` takes it
from the files' times (each TSV is written when its job ends, so a job started ``s`` seconds
before its file's modification time).

Estimated (not measured): the training FLOPs of each run, from the evaluation's fvcore count
(``gflops`` in metrics.json: giga multiply-adds of one clip at the evaluation input), times 2
(flops per multiply-add) times 3 (forward and backward, the usual rule of thumb) times the clips
seen in training (epochs x clips per epoch, from the run's training cost), over an assumed
sustained device throughput (report option ``gpu_tflops``). This is a lower bound: small models
at these input sizes are bound by per-step overheads and data loading, not by FLOPs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from flowguide.utils.failures import FlowguideError

BENCHMARKS_DIR = Path("logs") / "benchmarks"
GPU_STAGES = ("train", "evaluate", "explain")  # the rules that run on a GPU when there is one
FLOPS_PER_MAC = 2
TRAIN_PASS_FACTOR = 3  # forward + backward ~ 3 forwards

COMPUTE_TEXT = (
    "Measured by Snakemake's benchmark files (logs/benchmarks/**.tsv, one per job): wall_s is "
    "the sum of the jobs' wall times (the serial cost), cpu_s the sum of their processes' CPU "
    "time; elapsed_s is the time from the first job's start to the last job's end (taken from "
    "the files' times), shorter than wall_s where jobs ran side by side. Pooled data seeds are "
    "separate DAGs run one after the other: their elapsed times add up."
)
GPU_TEXT = (
    "Estimated, not measured, and a lower bound: training FLOPs = GMACs per clip (fvcore, "
    "evaluation input) x {flops_per_mac} x {passes} (forward and backward) x clips seen in "
    "training (epochs x clips per epoch), at an assumed sustained {tflops:g} TFLOP/s (report "
    "option gpu_tflops). The one-GPU total keeps the CPU stages (synth, flow, segment, select, "
    "...) as measured and divides the GPU stages (train, evaluate, explain) by the training "
    "speed-up so estimated ({speedup:.0f}x). Models this small are bound on a GPU by per-step "
    "overheads and by data loading on the CPU, not by FLOPs, so the real time lies above this "
    "bound; the CPU stages set the floor."
)


def _stage(relative: Path) -> str:
    """The rule a benchmark file belongs to: its folder (train/, flow/, ...) or its name."""
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def load_job_times(results: str | os.PathLike) -> pd.DataFrame:
    """One row per job of the results folder: stage, job, s, cpu_time, end (file mtime)."""
    folder = Path(results) / BENCHMARKS_DIR
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        missing = {"s", "cpu_time"} - set(table.columns)
        if missing or table.empty:
            raise FlowguideError(
                f"{path}: not a Snakemake benchmark file (needs a row with {sorted(missing)})"
            )
        relative = path.relative_to(folder)
        for _, row in table.iterrows():  # one row per repeat (benchmark repeats)
            rows.append(
                {
                    "stage": _stage(relative),
                    "job": relative.with_suffix("").as_posix(),
                    "s": float(row["s"]),
                    "cpu_time": float(row["cpu_time"]),
                    "end": path.stat().st_mtime,
                }
            )
    return pd.DataFrame(rows, columns=["stage", "job", "s", "cpu_time", "end"])


def elapsed_span(jobs: pd.DataFrame) -> float:
    """Seconds from the first job's start to the last job's end (nan without jobs)."""
    if jobs.empty:
        return float("nan")
    return float(jobs["end"].max() - (jobs["end"] - jobs["s"]).min())


def time_table(folders: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per stage, summed over the folders (data seeds): jobs, wall_s, cpu_s; then a total row
    with elapsed_s (the folders' elapsed spans added: they run one after the other)."""
    jobs = pd.concat([f for f in folders.values() if len(f)] or [pd.DataFrame()], ignore_index=True)
    columns = ["stage", "jobs", "wall_s", "cpu_s", "elapsed_s"]
    if jobs.empty:
        return pd.DataFrame(columns=columns)
    per_stage = (
        jobs.groupby("stage", sort=True)
        .agg(jobs=("s", "size"), wall_s=("s", "sum"), cpu_s=("cpu_time", "sum"))
        .reset_index()
    )
    per_stage["elapsed_s"] = np.nan
    total = {
        "stage": "total",
        "jobs": int(len(jobs)),
        "wall_s": float(jobs["s"].sum()),
        "cpu_s": float(jobs["cpu_time"].sum()),
        "elapsed_s": float(sum(elapsed_span(f) for f in folders.values() if len(f))),
    }
    return pd.concat([per_stage, pd.DataFrame([total])], ignore_index=True)[columns]


def gpu_estimate(runs: pd.DataFrame, jobs: pd.DataFrame, tflops: float) -> pd.DataFrame:
    """Per training run: clips seen, GMACs per clip, measured train wall s (its benchmark file),
    estimated GPU s from FLOPs at ``tflops``."""
    columns = ["run", "T", "epochs", "train_clips_seen", "gmacs_per_clip", "measured_s", "gpu_s"]
    if tflops <= 0:
        raise FlowguideError(f"report option gpu_tflops must be > 0, got {tflops}")
    rows = []
    train_s = jobs[jobs["stage"] == "train"].set_index("job")["s"] if len(jobs) else pd.Series()
    for _, run in runs.iterrows():
        needed = (run.get("gflops"), run.get("epochs"), run.get("hours_per_epoch"))
        if any(v is None or pd.isna(v) for v in needed) or not run.get("seconds_per_clip"):
            continue  # no cost recorded for this run: nothing to estimate from
        clips_per_epoch = run["hours_per_epoch"] * 3600.0 / run["seconds_per_clip"]
        seen = float(run["epochs"]) * clips_per_epoch
        flops = run["gflops"] * 1e9 * FLOPS_PER_MAC * TRAIN_PASS_FACTOR * seen
        job = f"train/{run['run']}/T{int(run['T'])}"
        rows.append(
            {
                "run": run["run"],
                "T": int(run["T"]),
                "epochs": int(run["epochs"]),
                "train_clips_seen": int(round(seen)),
                "gmacs_per_clip": float(run["gflops"]),
                "measured_s": float(train_s.get(job, np.nan)),
                "gpu_s": flops / (tflops * 1e12),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def one_gpu_total(times: pd.DataFrame, estimate: pd.DataFrame) -> tuple[float, float]:
    """(estimated one-GPU serial seconds, training speed-up) from the measured stage times and
    the per-run estimate; nan when no training run has both figures."""
    both = estimate.dropna(subset=["measured_s", "gpu_s"])
    if both.empty or times.empty or both["gpu_s"].sum() <= 0:
        return float("nan"), float("nan")
    speedup = float(both["measured_s"].sum() / both["gpu_s"].sum())
    stages = times[times["stage"] != "total"]
    on_gpu = stages["stage"].isin(GPU_STAGES)
    on_cpu_s = stages.loc[~on_gpu, "wall_s"].sum()
    total = float(on_cpu_s + stages.loc[on_gpu, "wall_s"].sum() / speedup)
    return total, speedup
