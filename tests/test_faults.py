"""Fault injection: bad inputs, killed jobs, truncated files. Nothing good may be lost.

The DAG-level tests run the real workflow (``snakemake`` with the repository's Snakefile in a
scratch folder) on a Diving48-layout folder with every kind of bad video and record, and check
that each bad one is named with its stage and a reason naming the file, while every good video
goes all the way to its diver mask.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from flowguide.clips.dataset import ClipDataset, split_by_mask_availability
from flowguide.clips.transforms import ClipTransform, TransformSpec
from flowguide.data.synthdive import generate_dataset, synth_options
from flowguide.utils.checkpoints import load_weights
from flowguide.utils.failures import FlowguideError
from flowguide.utils.flowio import read_flow
from flowguide.utils.h5 import (
    ShardError,
    read_shard,
    unpack_masks,
    video_group,
    video_names,
    write_masks,
)
from flowguide.utils.manifest import read_manifest
from flowguide.utils.masks import read_video_masks
from flowguide.utils.video import probe_video, write_video

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"

# --- a Diving48-layout folder with every kind of bad input -----------------------------------

SYNTH = {
    "num_classes": 2, "clips_per_class_train": 3, "clips_per_class_test": 1, "frames": 8,
    "width": 64, "height": 48,
}  # fmt: skip


def write_vfr_video(path: Path, pts_ms: list[int], size: tuple[int, int] = (48, 64)) -> None:
    """A variable-frame-rate mp4: frame timestamps at irregular ``pts_ms`` milliseconds."""
    rng = np.random.default_rng(3)
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=25)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    for pts in pts_ms:
        frame = av.VideoFrame.from_ndarray(
            rng.integers(0, 255, (*size, 3), dtype=np.uint8), format="rgb24"
        )
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()


def write_zero_frame_video(path: Path) -> None:
    """An mp4 container with a header and no frame."""
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()


def record(name: str, label: int, end: int) -> dict:
    return {"vid_name": name, "label": label, "start_frame": 0, "end_frame": end}


def build_bad_dataset(root: Path) -> dict[str, dict[str, str]]:
    """SynthDive in Diving48's layout, then corrupted. Returns the expected failures:
    vid_name -> {"stage": ..., "file": text the reason must contain}."""
    generate_dataset(root, synth_options(SYNTH))
    rgb = root / "rgb"
    train_json = root / "Diving48_V2_train.json"
    records = json.loads(train_json.read_text())
    names = [r["vid_name"] for r in records]
    rng = np.random.default_rng(0)

    truncated = rgb / f"{names[0]}.mp4"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (rgb / f"{names[1]}.mp4").write_bytes(b"this is not an mp4 file\n" * 20)
    (rgb / f"{names[2]}.mp4").unlink()  # listed, missing
    write_zero_frame_video(rgb / "zero_frames.mp4")
    shutil.copy(rgb / f"{names[3]}.mp4", rgb / "bad_label.mp4")
    # '../evil' would resolve to <root>/evil.mp4: a readable video that must never be read.
    write_video(root / "evil.mp4", rng.integers(0, 255, (8, 48, 64, 3), dtype=np.uint8), 25)
    big = rng.integers(0, 255, (4, 960, 1280, 3), dtype=np.uint8)
    write_video(rgb / "big.mp4", big, fps=25, qscale=31)
    write_vfr_video(rgb / "vfr.mp4", [0, 40, 50, 130, 140, 260, 270, 400])
    write_video(rgb / "one_frame.mp4", rng.integers(0, 255, (1, 48, 64, 3), np.uint8), 25)
    write_video(rgb / "two_frames.mp4", rng.integers(0, 255, (2, 48, 64, 3), np.uint8), 25)

    records += [
        record("zero_frames", 0, 7),
        record("bad_label", 7, 7),
        record(names[4], 0, 7),  # duplicate vid_name
        record("../evil", 1, 7),
        record("big", 0, 3),
        record("vfr", 1, 7),
        record("one_frame", 0, 0),  # readable, but no frame pair for optical flow
        record("two_frames", 1, 1),  # shorter than T = 4: sampled with repeats
    ]
    train_json.write_text(json.dumps(records))
    return {
        names[0]: {"stage": "manifest", "file": f"{names[0]}.mp4"},
        names[1]: {"stage": "manifest", "file": f"{names[1]}.mp4"},
        names[2]: {"stage": "manifest", "file": f"{names[2]}.mp4"},
        "zero_frames": {"stage": "manifest", "file": "zero_frames.mp4"},
        "bad_label": {"stage": "manifest", "file": "Diving48_V2_train.json"},
        names[4]: {"stage": "manifest", "file": "Diving48_V2_train.json"},
        "../evil": {"stage": "manifest", "file": "Diving48_V2_train.json"},
        "one_frame": {"stage": "flow", "file": "one_frame.mp4"},
    }


def workflow_config(dataset_root: Path, fail_fast: bool = False) -> dict:
    return {
        "fail_fast": fail_fast,
        "device": "cpu",
        "dataset": {"kind": "diving48", "root": str(dataset_root), "shard_size": 6},
        "flow": {"backend": "dis", "short_side": 48},
        "segment": {"backend": "motion"},
        "train": {
            "methods": ["ogl_transform"], "T": [4], "epochs": 1, "batch_size": 4,
            "loader_batch_size": 2, "num_workers": 0, "lr": 0.05, "warmup": {"batches": 1},
            "model": {"depth": 18, "stem_width": 8, "kinetics": False},
            "transform": {
                "short_side_min": 32, "short_side_max": 40, "crop": 32,
                "eval_short_side": 32, "eval_crop": 32,
            },
        },
        "explain": {
            "n_clips": 1, "explainers": ["gradcam"],
            "segmentation": {"method": "grid", "grid": [2, 2, 2]},
        },
        "report": {"gallery_videos": 1, "gallery_frames": 2},
    }  # fmt: skip


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True,
    )  # fmt: skip


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_or_fail(workdir: Path, *args: str) -> str:
    proc = snakemake(workdir, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def run_until_masks(workdir: Path) -> subprocess.CompletedProcess:
    """Snakemake up to every diver-mask shard: the manifest checkpoint names the shards."""
    proc = snakemake(workdir, "results/manifest.csv")
    if proc.returncode:
        return proc
    shards = sorted(p.stem for p in (workdir / "results" / "shards").glob("*.csv"))
    return snakemake(workdir, *[f"results/masks/{shard}.h5" for shard in shards])


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory):
    """The workflow up to the diver masks (every select job) on the corrupted folder."""
    base = tmp_path_factory.mktemp("faults")
    dataset = base / "d48"
    expected = build_bad_dataset(dataset)
    workdir = base / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(workflow_config(dataset)))
    before = {"base": tree(base), "dataset": tree(dataset)}
    proc = run_until_masks(workdir)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return base, dataset, workdir, expected, before


def stage_logs(results: Path) -> pd.DataFrame:
    logs = sorted((results / "failures").rglob("*.csv"))
    return pd.concat([pd.read_csv(p, dtype=str) for p in logs], ignore_index=True)


def assert_failures_named(failures: pd.DataFrame, expected: dict[str, dict[str, str]]) -> None:
    """Each bad video has a row of its stage whose reason names its file; no good video has."""
    assert set(failures["video"]) == set(expected), failures
    for video, want in expected.items():
        rows = failures[(failures["video"] == video) & (failures["stage"] == want["stage"])]
        assert len(rows) == 1, (video, failures[failures["video"] == video])
        assert want["file"] in rows["reason"].iat[0], (video, rows["reason"].iat[0])


def test_dag_names_every_bad_video_and_keeps_every_good_one(bad_run) -> None:
    base, dataset, workdir, expected, before = bad_run
    results = workdir / "results"
    assert_failures_named(stage_logs(results), expected)
    # one_frame has no flow, so the segment job names the flow file it is absent from.
    segment = stage_logs(results).query("stage == 'segment'")
    assert segment["video"].tolist() == ["one_frame"] and "flow/" in segment["reason"].iat[0]

    manifest = read_manifest(results / "manifest.csv")
    listed = [r["vid_name"] for r in json.loads((dataset / "Diving48_V2_train.json").read_text())]
    listed += [r["vid_name"] for r in json.loads((dataset / "Diving48_V2_test.json").read_text())]
    rejected = {v for v, want in expected.items() if want["stage"] == "manifest"}
    duplicate = listed[4]  # its first record is good and stays
    good = sorted(set(listed) - rejected | {duplicate})
    assert sorted(manifest["vid_name"]) == good
    by_name = manifest.set_index("vid_name")
    assert tuple(by_name.loc["big", ["width", "height", "video_frames"]]) == (1280, 960, 4)
    assert by_name.at["vfr", "video_frames"] == probe_video(dataset / "rgb/vfr.mp4").n_frames == 8
    # Every good video has its flow and its mask, frame for frame, at the flow size.
    for row in manifest.itertuples():
        if row.vid_name in expected:
            continue
        flow, _ = read_flow(results / "flow" / f"{row.shard}.h5", row.vid_name)
        masks = read_video_masks(results / "masks" / f"{row.shard}.h5", row.vid_name)
        assert len(flow) == len(masks) == row.n_frames, row.vid_name
        assert masks.shape[1:] == flow.shape[-2:] and min(masks.shape[1:]) == 48, row.vid_name
    # Nothing outside the scratch work folder was written; the dataset is untouched; no
    # temporary is left anywhere.
    assert tree(base) - before["base"] <= {f"work/{p}" for p in tree(workdir)}
    assert tree(dataset) == before["dataset"]
    assert not list(results.rglob("*.part"))


def test_report_lists_the_failures_of_every_stage(bad_run) -> None:
    base, dataset, workdir, expected, before = bad_run
    run_or_fail(workdir, "results/report/index.html")
    failures = pd.read_csv(workdir / "results" / "failures.csv", dtype=str)
    assert_failures_named(failures, expected)
    page = (workdir / "results" / "report" / "index.html").read_text()
    for video in expected:
        assert video in page or video.replace("/", "&#x2F;") in page, video
    assert tree(base) - before["base"] <= {f"work/{p}" for p in tree(workdir)}


def test_fail_fast_stops_at_the_first_bad_video(tmp_path: Path) -> None:
    dataset = tmp_path / "d48"
    build_bad_dataset(dataset)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(workflow_config(dataset, True)))
    proc = run_until_masks(workdir)
    assert proc.returncode != 0
    assert "results/logs/manifest.log" in proc.stdout + proc.stderr
    log_text = (workdir / "results" / "logs" / "manifest.log").read_text()
    # The split JSON is checked before any video is opened: the first bad record is bad_label.
    error = [line for line in log_text.splitlines() if "flowguide manifest: error:" in line]
    assert len(error) == 1, log_text[-2000:]
    assert "bad_label" in error[0] and "Diving48_V2_train.json" in error[0]
    assert "label 7 out of range" in error[0]
    results = workdir / "results"
    assert not (results / "manifest.csv").exists() and not (results / "flow").exists()


def test_wrong_config_types_stop_a_dry_run_naming_the_key(tmp_path: Path) -> None:
    config = workflow_config(tmp_path)
    config["flow"]["gaps"] = "x"
    config["segment"]["no_such_option"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "flow.gaps" in output and "no_such_option" in output
    assert not (tmp_path / "results").exists()


# --- mask shards that disagree with the manifest ----------------------------------------------


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from test_train_data import make_dataset

    return make_dataset(tmp_path_factory.mktemp("faultset"), n_per_class=2, n_frames=8)


def shorten_mask(masks_dir: Path, shard: str, vid: str, keep: int) -> Path:
    """Rewrite ``vid``'s masks in a shard with only its first ``keep`` frames."""
    path = masks_dir / f"{shard}.h5"
    with h5py.File(path, "a") as fh:
        group = video_group(fh, vid)
        packed = group["mask"]
        frames = unpack_masks(packed[:keep], tuple(int(v) for v in packed.attrs["frame_shape"]))
        del group["mask"]
        write_masks(group, "mask", frames)
    return path


def test_mask_frames_that_disagree_with_the_manifest_are_left_out(small_set, tmp_path, caplog):
    manifest, masks_dir = small_set
    masks = tmp_path / "masks"
    shutil.copytree(masks_dir, masks)
    rows = read_manifest(manifest)
    train = rows[rows["split"] == "train"].reset_index(drop=True)
    victim = train["vid_name"].iat[1]
    shard = shorten_mask(masks, "train0000", victim, keep=5)
    caplog.set_level("WARNING")
    kept, left_out = split_by_mask_availability(train, masks)
    assert left_out["vid_name"].tolist() == [victim]
    assert sorted(kept["vid_name"]) == sorted(set(train["vid_name"]) - {victim})
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert str(shard) in warning and victim in warning and "5 mask frames" in warning
    # Read directly (bypassing the split), a clip whose frames go past the masks fails naming
    # the shard and the video.
    spec = TransformSpec(short_side_min=32, short_side_max=32, crop=32, eval_short_side=32,
                         eval_crop=32)  # fmt: skip
    data = ClipDataset(train, 8, ClipTransform(spec, training=False), masks)
    with pytest.raises(ShardError) as info:
        data[1]
    assert str(shard) in str(info.value) and f"/{victim}/mask" in str(info.value)
    assert data[0]["mask"].shape[0] == 8  # the other clips still read


# --- truncated and missing HDF5 ---------------------------------------------------------------


def truncated_copy(path: Path, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def test_truncated_or_missing_shards_fail_naming_the_file(small_set, bad_run, tmp_path):
    _, masks_dir = small_set
    rows = read_manifest(small_set[0])
    vid = rows["vid_name"].iat[0]
    mask_half = truncated_copy(masks_dir / "train0000.h5", tmp_path / "mask_half.h5")
    for read in (
        lambda: read_video_masks(mask_half, vid),
        lambda: split_by_mask_availability(rows.assign(shard="mask_half"), tmp_path),
    ):
        with pytest.raises(ShardError, match="mask_half.h5"):
            read()
    results = bad_run[2] / "results"
    flow_file = sorted((results / "flow").glob("*.h5"))[0]
    flow_half = truncated_copy(flow_file, tmp_path / "flow_half.h5")
    flow_vid = read_manifest(results / "shards" / f"{flow_file.stem}.csv")["vid_name"].iat[0]
    read_flow(flow_file, flow_vid)  # the intact file reads
    with pytest.raises(ShardError, match="flow_half.h5"):
        read_flow(flow_half, flow_vid)
    for missing in (tmp_path / "nope.h5",):
        with pytest.raises(ShardError, match="nope.h5.*does not exist"):
            read_flow(missing, flow_vid)
        with pytest.raises(ShardError, match="nope.h5.*does not exist"):
            read_video_masks(missing, vid)
        with pytest.raises(ShardError, match="nope.h5"):
            with read_shard(missing):
                pass
    with pytest.raises(ShardError, match="train0000.h5.*'no_such_video'"):
        read_video_masks(masks_dir / "train0000.h5", "no_such_video")


# --- killed jobs ------------------------------------------------------------------------------


def flowguide_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowguide", *args]


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0, delay: float = 0.0) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` turns true; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            time.sleep(delay)
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the job never reached the point where it should be killed")


def test_killed_flow_job_leaves_no_target_and_the_rerun_cleans_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        path = tmp_path / "rgb" / f"v{i}.mp4"
        write_video(path, rng.integers(0, 255, (24, 120, 160, 3), dtype=np.uint8), fps=25)
        rows.append({
            "vid_name": f"v{i}", "split": "train", "label": 0, "path": str(path),
            "start_frame": 0, "end_frame": 23, "n_frames": 24, "video_frames": 24, "fps": 25.0,
            "width": 160, "height": 120, "shard": "train0000",
        })  # fmt: skip
    shard_csv = tmp_path / "train0000.csv"
    pd.DataFrame(rows).to_csv(shard_csv, index=False)
    out_dir = tmp_path / "flow"
    target = out_dir / "train0000.h5"
    options = json.dumps({"backend": "farneback", "short_side": 120, "gaps": [1, -1]})
    cmd = flowguide_cmd(
        "flow", "--shard", str(shard_csv), "--out", str(target),
        "--failures", str(tmp_path / "failures.csv"), "--options", options, "--device", "cpu",
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = lambda: list(out_dir.glob(".train0000.h5.*.part"))  # noqa: E731
    assert kill_when(proc, lambda: bool(parts()), delay=0.2), "flow ended before the kill"
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists() and len(parts()) == 1  # only the temporary is left
    leftover = parts()[0]
    # The rerun removes the dead writer's temporary and writes the whole target.
    subprocess.run(cmd, check=True, capture_output=True)
    assert not leftover.exists() and not parts()
    with read_shard(target) as fh:
        assert video_names(fh) == [f"v{i}" for i in range(6)]
    flow, _ = read_flow(target, "v5")
    assert flow.shape == (24, 2, 2, 120, 160) and np.isfinite(flow).all()


TRAIN = {
    "epochs": 4, "batch_size": 2, "loader_batch_size": 2, "num_workers": 0, "lr": 0.05,
    "warmup": {"start_lr": 0.01, "batches": 1}, "tensorboard": False,
    "model": {"depth": 18, "stem_width": 8, "kinetics": False},
    "transform": {"short_side_min": 32, "short_side_max": 40, "crop": 32, "eval_short_side": 32,
                  "eval_crop": 32},
}  # fmt: skip


def test_training_killed_at_a_random_point_resumes_to_the_same_weights(small_set, tmp_path):
    manifest, masks_dir = small_set

    def command(out: Path) -> list[str]:
        return flowguide_cmd(
            "train", "--manifest", str(manifest), "--masks-dir", str(masks_dir),
            "--method", "ogl_transform", "--T", "4", "--out-dir", str(out),
            "--options", json.dumps(TRAIN), "--device", "cpu",
        )  # fmt: skip

    straight = tmp_path / "straight"
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # A random point: somewhere in epoch k + 1, after epoch k's checkpoint (k in 1..epochs-2, so
    # at least one whole epoch is left and the kill never lands after the final checkpoint).
    k = int(np.random.default_rng().integers(1, TRAIN["epochs"] - 1))
    state = killed / "last.pt"

    def reached_epoch_k() -> bool:
        # last.pt appears by an atomic rename, so reading it while training goes on is safe.
        return state.exists() and load_weights(state, "epoch state")["epoch"] >= k

    assert kill_when(proc, reached_epoch_k), f"training ended before the kill ({k=})"
    assert not (killed / "checkpoint.pt").exists()
    delay = k  # reported by the assertions below
    subprocess.run(command(killed), check=True, capture_output=True)
    subprocess.run(command(straight), check=True, capture_output=True)
    a = load_weights(straight / "checkpoint.pt", "straight run")
    b = load_weights(killed / "checkpoint.pt", "resumed run")
    assert a["epoch"] == b["epoch"] == TRAIN["epochs"]
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-6), (key, delay)
    assert not list(killed.glob("*.part"))


def test_truncated_checkpoint_fails_naming_the_file(tmp_path: Path) -> None:
    full = tmp_path / "full.pt"
    torch.save({"model": {"w": torch.ones(1000)}}, full)
    half = truncated_copy(full, tmp_path / "half.pt")
    assert load_weights(full, "test")["model"]["w"].sum() == 1000
    with pytest.raises(FlowguideError, match="half.pt"):
        load_weights(half, "test")
