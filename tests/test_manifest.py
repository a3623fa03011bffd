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
    make_dataset(root, good, [record("t1", 1, end=6)])
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
    # Frame counts come from the container; end_frame 6 (one past, Diving48's off-by-one) is
    # clipped to the 6 decodable frames without a row.
    t1 = manifest.set_index("vid_name").loc["t1"]
    assert (t1["video_frames"], t1["end_frame"], t1["n_frames"]) == (6, 5, 6)
    assert (t1["width"], t1["height"]) == (48, 32)


def test_shards_are_stable_when_videos_are_appended(tmp_path: Path) -> None:
    root = tmp_path / "d48"
    first = [record(f"v{i}", i % 2) for i in range(5)]
    make_dataset(root, first, [record("t0", 0)], n_frames=6)
    before, _ = run(root, tmp_path / "run1")
    # Append two videos to the train split: no existing video changes shard.
    more = [record("v5", 1), record("v6", 0)]
    rng = np.random.default_rng(1)
    for rec in more:
        frames = rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
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
    make_dataset(root, train, [], n_frames=6)
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


def shard_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


@pytest.mark.parametrize("subset", [None, 5])
def test_fixing_one_bad_record_touches_one_shard(tmp_path: Path, subset) -> None:
    """[A-bad, B, C, D, E] with 2 per shard: A keeps its slot while rejected, so fixing it
    changes train0000 only (before, B..E moved up one slot and every shard changed)."""
    root = tmp_path / "d48"
    good = [record(name, i % 2) for i, name in enumerate("ABCDE")]
    make_dataset(root, good, [record("t0", 0)], n_frames=6)
    bad_a = {**good[0], "label": 9}  # out of range: rejected by the JSON check
    (root / "Diving48_V2_train.json").write_text(json.dumps([bad_a, *good[1:]]))
    before, failures = run(root, tmp_path / "bad", subset_per_class=subset)
    assert failures["video"].tolist() == ["A"] and "label 9" in failures["reason"][0]
    # Independent expectation: slot = JSON position, shard = slot // 2.
    expected = {"B": "train0000", "C": "train0001", "D": "train0001", "E": "train0002"}
    assert dict(zip(before["vid_name"], before["shard"], strict=False)) == {
        **expected,
        "t0": "test0000",
    }
    (root / "Diving48_V2_train.json").write_text(json.dumps(good))
    after, failures = run(root, tmp_path / "fixed", subset_per_class=subset)
    assert failures.empty and after.set_index("vid_name").loc["A", "shard"] == "train0000"
    old, new = shard_files(tmp_path / "bad" / "shards"), shard_files(tmp_path / "fixed" / "shards")
    assert set(old) == set(new)
    assert {name for name in new if old[name] != new[name]} == {"train0000.csv"}


def test_a_truncated_video_is_a_warning_or_a_failure_by_the_share_it_lost(tmp_path: Path) -> None:
    root = tmp_path / "d48"
    # Records list frames 0..end; the videos hold 20 frames (indices 0..19).
    records = [
        record("whole", 0, end=19),
        record("one_past", 1, end=20),  # Diving48's off-by-one: clipped, no row
        record("short", 0, end=21),  # 22 listed, 2 lost = 9.1% <= 10%: warning, kept
        record("cut", 1, end=29),  # 30 listed, 10 lost = 33% > 10%: failure, left out
    ]
    make_dataset(root, records, [record("t0", 0, end=19)], n_frames=20)
    manifest, failures = run(root, tmp_path / "out", max_lost_share=0.1)
    assert manifest["vid_name"].tolist() == ["whole", "one_past", "short", "t0"]
    rows = manifest.set_index("vid_name")
    assert (rows.loc["short", "end_frame"], rows.loc["short", "n_frames"]) == (19, 20)
    assert (rows.loc["one_past", "end_frame"], rows.loc["one_past", "n_frames"]) == (19, 20)
    by_video = failures.set_index("video")
    assert sorted(by_video.index) == ["cut", "short"]
    assert by_video.loc["short", "severity"] == "warning"
    assert "2 of 22 (9%) lost" in by_video.loc["short", "reason"]
    assert by_video.loc["cut", "severity"] == "error"
    assert (
        "cut.mp4" in by_video.loc["cut", "reason"]
        and "10 of 30 (33%) lost" in by_video.loc["cut", "reason"]
    )
    # A stricter tolerance turns the small loss into a failure too.
    manifest, failures = run(root, tmp_path / "strict", max_lost_share=0.05)
    assert "short" not in set(manifest["vid_name"])
    assert failures.set_index("video").loc["short", "severity"] == "error"


def test_symlink_policy_links_inside_the_videos_folder_only(tmp_path: Path) -> None:
    """A per-file link out of rgb/ is a failure row naming the link and its target; a link to
    another file inside rgb/ and an rgb/ folder that is itself a link are followed."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_video(outside / "secret.mp4", np.zeros((6, 32, 48, 3), np.uint8), fps=25)
    root = tmp_path / "d48"
    records = [record("a", 0), record("inner", 1), record("escape", 0)]
    make_dataset(root, [records[0]], [record("t0", 1)])
    (root / "rgb" / "inner.mp4").symlink_to(root / "rgb" / "a.mp4")
    (root / "rgb" / "escape.mp4").symlink_to(outside / "secret.mp4")
    (root / "Diving48_V2_train.json").write_text(json.dumps(records))
    manifest, failures = run(root, tmp_path / "out")
    assert manifest["vid_name"].tolist() == ["a", "inner", "t0"]
    assert failures["video"].tolist() == ["escape"]
    reason = failures["reason"][0]
    assert "escape.mp4" in reason and str(outside / "secret.mp4") in reason and "refused" in reason
    # The whole videos folder as one link to shared storage is the supported layout.
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("Diving48_vocab.json", "Diving48_V2_test.json"):
        (linked / name).write_text((root / name).read_text())
    (linked / "Diving48_V2_train.json").write_text(json.dumps(records[:2]))
    (linked / "rgb").symlink_to(root / "rgb")
    manifest, failures = run(linked, tmp_path / "out2")
    assert manifest["vid_name"].tolist() == ["a", "inner", "t0"] and failures.empty
