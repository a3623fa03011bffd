"""Manifest stage on a hand-made Diving48-layout folder with bad entries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowguide.data.diving48 import DatasetError, check_vid_name
from flowguide.data.manifest import run_manifest, shard_name
from flowguide.utils.video import write_video

DATASET = {
    "shard_size": 2,
    "subset_per_class": None,
    "videos_dir": "rgb",
    "train_json": "Diving48_V2_train.json",
    "test_json": "Diving48_V2_test.json",
    "vocab_json": "Diving48_vocab.json",
}


def make_dataset(root: Path, train: list[dict], test: list[dict], n_frames: int = 6) -> None:
    (root / "rgb").mkdir(parents=True)
    vocab = [["Forward", "1som", "NoTwis", "TUCK"], ["Back", "2som", "1Twis", "PIKE"]]
    (root / "Diving48_vocab.json").write_text(json.dumps(vocab))
    (root / "Diving48_V2_train.json").write_text(json.dumps(train))
    (root / "Diving48_V2_test.json").write_text(json.dumps(test))
    rng = np.random.default_rng(0)
    for rec in train + test:
        frames = rng.integers(0, 255, (n_frames, 32, 48, 3), dtype=np.uint8)
        write_video(root / "rgb" / f"{rec['vid_name']}.mp4", frames, fps=25)


def record(name: str, label: int, end: int = 5) -> dict:
    return {"vid_name": name, "label": label, "start_frame": 0, "end_frame": end}


def run(root: Path, tmp: Path, **overrides) -> tuple[pd.DataFrame, pd.DataFrame]:
    options = {**DATASET, **overrides}
    manifest = run_manifest(
        options, root, tmp / "manifest.csv", tmp / "shards", tmp / "failures.csv"
    )
    return manifest, pd.read_csv(tmp / "failures.csv")


def test_manifest_keeps_good_videos_and_names_bad_ones(tmp_path: Path) -> None:
    root = tmp_path / "d48"
    good = [record("a", 0), record("b", 1), record("c", 0)]
    make_dataset(root, good, [record("t1", 1, end=9)])
    # A listed video that is missing, and one whose file is not a video.
    train = good + [record("missing", 0), record("corrupt", 1)]
    (root / "Diving48_V2_train.json").write_text(json.dumps(train))
    (root / "rgb" / "corrupt.mp4").write_bytes(b"this is not an mp4 file" * 10)

    manifest, failures = run(root, tmp_path / "out")

    assert list(manifest["vid_name"]) == ["a", "b", "c", "t1"]
    assert set(failures["video"]) == {"missing", "corrupt"}
    reasons = dict(zip(failures["video"], failures["reason"], strict=True))
    assert "missing.mp4" in reasons["missing"] and "does not exist" in reasons["missing"]
    assert "corrupt.mp4" in reasons["corrupt"]
    # Frame counts come from the container; end_frame 9 is clipped to the 6 decodable frames.
    t1 = manifest.set_index("vid_name").loc["t1"]
    assert (t1["video_frames"], t1["end_frame"], t1["n_frames"]) == (6, 5, 6)
    assert (t1["width"], t1["height"]) == (48, 32)


def test_shards_are_stable_when_videos_are_appended(tmp_path: Path) -> None:
    root = tmp_path / "d48"
    first = [record(f"v{i}", i % 2) for i in range(5)]
    make_dataset(root, first, [record("t0", 0)], n_frames=2)
    before, _ = run(root, tmp_path / "run1")
    # Append two videos to the train split: no existing video changes shard.
    more = [record("v5", 1), record("v6", 0)]
    rng = np.random.default_rng(1)
    for rec in more:
        frames = rng.integers(0, 255, (2, 32, 48, 3), dtype=np.uint8)
        write_video(root / "rgb" / f"{rec['vid_name']}.mp4", frames, fps=25)
    (root / "Diving48_V2_train.json").write_text(json.dumps(first + more))
    after, _ = run(root, tmp_path / "run2")

    old = before.set_index("vid_name")["shard"]
    assert (after.set_index("vid_name").loc[old.index, "shard"] == old).all()
    changed = {
        s for s in after["shard"].unique()
        if not (tmp_path / "run1" / "shards" / f"{s}.csv").exists()
        or (tmp_path / "run1" / "shards" / f"{s}.csv").read_bytes()
        != (tmp_path / "run2" / "shards" / f"{s}.csv").read_bytes()
    }  # fmt: skip
    assert changed == {"train0002", "train0003"}  # v4 joined by v5; v6 opens a new shard


def test_subset_and_duplicates_and_bad_records(tmp_path: Path) -> None:
    root = tmp_path / "d48"
    train = [record("a", 0), record("b", 0), record("c", 1), record("d", 0)]
    make_dataset(root, train, [], n_frames=2)
    bad = [record("a", 1), record("x", 7), {**record("../evil", 0)}, {"vid_name": "y"}]
    (root / "Diving48_V2_train.json").write_text(json.dumps(train + bad))

    manifest, failures = run(root, tmp_path / "out", subset_per_class=2)

    assert list(manifest["vid_name"]) == ["a", "b", "c"]
    reasons = " | ".join(failures["reason"])
    assert "duplicate vid_name" in reasons
    assert "label 7 out of range 0..1" in reasons
    assert "'../evil'" in reasons and "rejected" in reasons
    assert "missing key 'label'" in reasons


def test_shard_name_and_vid_name_check() -> None:
    assert [shard_name("train", p, 3) for p in (0, 2, 3, 7)] == [
        "train0000", "train0000", "train0001", "train0002",
    ]  # fmt: skip
    for bad in ("a/b", "..", "../x", "a\\b", "", ".hidden/.."):
        with pytest.raises(DatasetError):
            check_vid_name(bad)
    assert check_vid_name("-mmq0PT-u8k_00155") == "-mmq0PT-u8k_00155"
