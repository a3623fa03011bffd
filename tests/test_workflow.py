"""The whole DAG on a tiny config, and Snakemake's rerun-only-what-is-stale guarantees.

Each scenario runs the real workflow (``snakemake`` in a scratch folder with the repository's
Snakefile) and reads which jobs ran from Snakemake's own job table.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

TINY = {
    "dataset": {"kind": "synthdive", "shard_size": 4},
    "synth": {
        "num_classes": 2, "clips_per_class_train": 3, "clips_per_class_test": 2,
        "frames": 10, "width": 96, "height": 72,
    },
    "flow": {"backend": "dis", "short_side": 72},
    "segment": {"backend": "motion"},
    "train": {
        "methods": ["vanilla", "ogl_transform"], "T": [4], "epochs": 1, "batch_size": 4,
        "loader_batch_size": 2, "num_workers": 0, "lr": 0.05, "warmup": {"batches": 1},
        "model": {"depth": 18, "stem_width": 8, "kinetics": False},
        "transform": {
            "short_side_min": 40, "short_side_max": 48, "crop": 32,
            "eval_short_side": 40, "eval_crop": 32,
        },
    },
    "explain": {
        "runs": ["vanilla"], "n_clips": 1, "explainers": ["gradcam", "loco"],
        "segmentation": {"method": "grid", "grid": [2, 2, 2]},
    },
    "report": {"gallery_videos": 1, "gallery_frames": 2},
}  # fmt: skip


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def snakemake(workdir: Path, *args: str) -> str:
    """Run the repository's workflow in ``workdir``; return its combined output."""
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def jobs_run(output: str) -> dict[str, int]:
    """rule -> number of jobs Snakemake started, from its log's per-job "rule <name>:" headers
    (the 'Job stats' table is printed before checkpoints add the per-shard jobs)."""
    counts: dict[str, int] = {}
    for rule in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", output, flags=re.M):
        if rule != "all":
            counts[rule] = counts.get(rule, 0) + 1
    return counts


FIRST_RUN: dict[str, str] = {}  # the whole DAG's snakemake output (workflow_dir)


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, TINY)
    output = FIRST_RUN["output"] = snakemake(workdir)
    ran = jobs_run(output)
    assert ran["flow"] == ran["segment"] == ran["select"] == 3  # train0000/0001, test0000
    assert ran["train"] == 2 and ran["evaluate"] == 2 and ran["explain"] == 1
    return workdir


def test_whole_dag_writes_every_stage(workflow_dir: Path) -> None:
    results = workflow_dir / "results"
    for path in [
        "manifest.csv", "flow/train0000.h5", "candidates/train0000.h5", "masks/train0000.h5",
        "masks/quality.csv", "train/vanilla/T4/checkpoint.pt", "eval/ogl_transform/T4/metrics.json",
        "explain/vanilla/T4/summary.csv", "report/index.html", "report/report.md",
    ]:  # fmt: skip
        assert (results / path).is_file(), path
    for rule in ("manifest", "flow", "segment", "select", "train", "evaluate", "report"):
        assert any((workflow_dir / "results" / "logs").rglob("*")), rule
    assert (
        workflow_dir / "results" / "logs" / "benchmarks" / "train" / "vanilla" / "T4.tsv"
    ).is_file()


def test_training_progress_reaches_the_terminal_and_the_log(workflow_dir: Path) -> None:
    """Each training job's per-epoch line is in Snakemake's own output, not only in its log."""
    for run in TINY["train"]["methods"]:
        line = re.search(rf"^train {run} T=4: epoch 1/1 loss [\d.]+ .*$", FIRST_RUN["output"], re.M)
        assert line, FIRST_RUN["output"][-3000:]
        log = workflow_dir / "results" / "logs" / "train" / run / "T4.log"
        assert line[0] in log.read_text().splitlines()


def test_evaluate_progress_bar_total_counts_its_steps(workflow_dir: Path) -> None:
    """The evaluate bar (tqdm, in the rule's log) ends full: its total is in batches, as its
    steps are. 4 test clips in batches of 4 (flowguide.evaluate.wiring.EVAL_BATCH): 1 batch."""
    manifest = pd.read_csv(workflow_dir / "results" / "manifest.csv")
    batches = -(-int((manifest["split"] == "test").sum()) // 4)
    for run in TINY["train"]["methods"]:
        log = (workflow_dir / "results" / "logs" / "evaluate" / run / "T4.log").read_text()
        bars = re.findall(r"evaluate: +\d+%\|[^|]*\| (\d+)/(\d+) \[", log)
        assert bars, log[-2000:]
        assert bars[-1] == (str(batches), str(batches)), bars


def test_second_run_does_nothing(workflow_dir: Path) -> None:
    output = snakemake(workflow_dir)
    assert jobs_run(output) == {}
    assert "Nothing to be done" in output


def scratch_copy(workflow_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "wf"
    shutil.copytree(workflow_dir, copy, symlinks=True)
    return copy


def test_training_change_reruns_training_and_downstream_only(
    workflow_dir: Path, tmp_path: Path
) -> None:
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["lr"] = 0.02
    write_config(workdir, config)
    ran = jobs_run(snakemake(workdir))
    assert ran.get("train") == 2 and ran.get("evaluate") == 2 and ran.get("explain") == 1
    assert ran.get("report") == 1
    for upstream in ("synth", "manifest", "flow", "segment", "select", "mask_quality"):
        assert upstream not in ran, ran


# Execution settings (workflow/rules/execution.smk): how a job runs, never what it computes.
EXECUTION_SETTINGS = [
    (("device",), "cpu"),
    (("fail_fast",), True),
    (("train", "num_workers"), 1),
    (("train", "tensorboard"), False),
    (("train", "prefetch_factor"), 4),
    (("train", "cudnn_benchmark"), True),
    (("cluster", "rules", "train", "gpus"), 2),  # TINY: batch 4 = 2 processes x loader 2
]


def set_key(config: dict, keys: tuple[str, ...], value: object) -> None:
    for key in keys[:-1]:
        config = config.setdefault(key, {})
    config[keys[-1]] = value


@pytest.mark.parametrize(("keys", "value"), EXECUTION_SETTINGS, ids=lambda v: str(v))
def test_an_execution_setting_plans_nothing(
    workflow_dir: Path, tmp_path: Path, keys: tuple[str, ...], value: object
) -> None:
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    set_key(config, keys, value)
    write_config(workdir, config)
    output = snakemake(workdir, "-n")
    print(f"--- snakemake -n after {'.'.join(keys)}: {value!r}\n{output}")
    assert jobs_run(output) == {}, output
    assert "Nothing to be done" in output


def test_execution_settings_reach_the_job(workflow_dir: Path, tmp_path: Path) -> None:
    """The settings the parameters no longer carry still arrive: a forced training job logs
    the new ones and writes no TensorBoard files once tensorboard is off."""
    first = (workflow_dir / "results" / "logs" / "train" / "vanilla" / "T4.log").read_text()
    assert (
        "train: device auto, 1 process(es), num_workers 0, tensorboard True, "
        "prefetch_factor 2, cudnn_benchmark False" in first
    )
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config.update(device="cpu")
    config["train"].update(num_workers=1, tensorboard=False, prefetch_factor=3)
    write_config(workdir, config)
    run_dir = workdir / "results" / "train" / "vanilla" / "T4"
    shutil.rmtree(run_dir / "tensorboard")
    snakemake(workdir, "--forcerun", "train", "--until", "train")
    log = (workdir / "results" / "logs" / "train" / "vanilla" / "T4.log").read_text()
    assert (
        "train: device cpu, 1 process(es), num_workers 1, tensorboard False, "
        "prefetch_factor 3, cudnn_benchmark False" in log
    )
    assert not (run_dir / "tensorboard").exists()


def test_segmentation_change_reruns_segment_and_downstream_not_flow(
    workflow_dir: Path, tmp_path: Path
) -> None:
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["segment"]["motion"] = {"threshold": 4.0}
    write_config(workdir, config)
    ran = jobs_run(snakemake(workdir))
    assert ran.get("segment") == 3 and ran.get("select") == 3 and ran.get("mask_quality") == 1
    # train.clip_set common (the default): vanilla trains on the clips with masks, so it retrains
    # too (clip_set own keeps the baselines off the masks).
    assert ran.get("train") == 2
    assert "flow" not in ran and "synth" not in ran and "manifest" not in ran


def test_added_videos_process_only_changed_shards(workflow_dir: Path, tmp_path: Path) -> None:
    workdir = scratch_copy(workflow_dir, tmp_path)
    flow_dir = workdir / "results" / "flow"
    before = {p.name: p.stat().st_mtime_ns for p in flow_dir.glob("*.h5")}
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["synth"]["clips_per_class_train"] = 4  # 8 train clips: train0001 grows, no new shard
    write_config(workdir, config)
    snakemake(workdir)
    after = {p.name: p.stat().st_mtime_ns for p in flow_dir.glob("*.h5")}
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {"train0001.h5"}, changed


def job_blocks(output: str) -> list[tuple[str, str]]:
    """(rule, resources line) of every job a dry run lists."""
    blocks = re.split(r"\n(?=\[.*\]\n(?:local)?(?:rule|checkpoint) )", output)
    jobs = []
    for block in blocks:
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, flags=re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if rule and resources:
            jobs.append((rule[1], resources[1]))
    return jobs


@pytest.mark.parametrize("gpu_request", ["gpu", "gres"])
def test_slurm_profile_submits_training_with_its_gpus(
    workflow_dir: Path, tmp_path: Path, gpu_request: str
) -> None:
    """`snakemake --profile slurm` (dry run: no sbatch here) plans the training jobs with the
    SLURM executor and the GPU, memory, runtime and CPU resources the config declares."""
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["lr"] = 0.03
    config["cluster"] = {"gpu_request": gpu_request, "rules": {"train": {"gpus": 2}}}
    write_config(workdir, config)
    profile = yaml.safe_load((ROOT / "slurm" / "config.v8+.yaml").read_text())
    assert profile["executor"] == "slurm"
    output = snakemake(workdir, "--profile", str(ROOT / "slurm"), "-n")
    assert "Using profile" in output
    jobs = job_blocks(output)
    train = [res for rule, res in jobs if rule == "train"]
    assert len(train) == 2
    for res in train:
        assert "mem_mb=64000" in res and "runtime=2880" in res and "cpus_per_task=16" in res
        if gpu_request == "gpu":
            assert "gpu=2" in res and "gres=gpu" not in res
        else:
            assert "gres=gpu:2" in res and "gpu=0" in res
    for rule, res in jobs:
        if rule in ("report",):
            assert "gpu=" not in res and "gres=gpu" not in res


def test_snakemakes_own_report_embeds_the_pipeline_report(workflow_dir: Path) -> None:
    import zipfile

    snakemake(workflow_dir, "--report", "snakemake-report.zip")
    with zipfile.ZipFile(workflow_dir / "snakemake-report.zip") as archive:
        names = archive.namelist()
    assert any(name.endswith("report.html") for name in names)
    assert any(name.endswith("index.html") for name in names)  # flowguide's page, embedded
    assert any(name.endswith("metrics.json") for name in names)


def test_sweeps_add_runs_with_their_values_and_rerun_nothing_else(
    workflow_dir: Path, tmp_path: Path
) -> None:
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["sweeps"] = [{"method": "rrr_ogl", "param": "lambda", "values": [0.1, 1]}]
    write_config(workdir, config)
    output = snakemake(workdir, "-n", "-p")
    ran = jobs_run(output)
    assert ran == {"train": 2, "evaluate": 2, "report": 1}, ran  # existing runs untouched
    commands = re.findall(r"python -m flowguide train .*", output)
    lambdas = sorted(float(re.search(r'"lambda": ([0-9.]+)', c)[1]) for c in commands)
    assert lambdas == [0.1, 1.0]
    assert all("--method rrr_ogl" in c for c in commands)
    assert "results/train/rrr_ogl-lambda0.1/T4" in output


def test_training_seeds_and_the_no_cue_control_add_their_jobs(
    workflow_dir: Path, tmp_path: Path
) -> None:
    """train.seeds names runs <method>-seed<s> with train.seed set; no_cue trains on its own
    manifest (SynthDive's twin split) and is evaluated on the main test split."""
    workdir = scratch_copy(workflow_dir, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["methods"] = ["no_cue", "vanilla"]
    config["train"]["seeds"] = [3, 4]
    write_config(workdir, config)
    output = snakemake(workdir, "-n", "-p")
    ran = jobs_run(output)
    assert ran["train"] == 4 and ran["evaluate"] == 4, ran
    assert ran["synth_no_cue"] == 1 and ran["manifest_no_cue"] == 1 and "synth" not in ran
    commands = re.findall(r"python -m flowguide train .*", output)
    seeds = sorted(int(re.search(r'"seed": (\d+)', c)[1]) for c in commands)
    assert seeds == [3, 3, 4, 4]
    no_cue = [c for c in commands if "--method no_cue" in c]
    assert len(no_cue) == 2 and all("results/no_cue/manifest.csv" in c for c in no_cue)
    assert "results/train/vanilla-seed4/T4" in output
    synth = re.search(r"python -m flowguide synth --out \S*synthdive_no_cue.*", output)[0]
    assert '"train_p": null' in synth and '"splits": ["train"]' in synth
