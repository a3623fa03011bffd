"""Selection rule (thesis 4.3.1), the masks file, and mask-quality numbers."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from flowguide.cli import main
from flowguide.inspect.load import video_table
from flowguide.select.quality import OVERALL, mask_quality
from flowguide.select.rule import center_band, choose_label, select_masks
from flowguide.select.stage import run_select
from flowguide.utils.h5 import (
    ShardError,
    create_video_group,
    video_group,
    video_names,
    write_frames_dataset,
    write_masks,
    write_shard,
)
from flowguide.utils.masks import read_video_masks

W = 12  # band of 1/3: columns 4..7

# The rule alone: the colour refinement (select/appearance.py, tests/test_appearance.py) reads
# the video, which these hand-built candidates do not have.
RULE_ONLY = {"appearance": {"enabled": False}}


def frame(paint: dict[int, list[tuple[slice, slice]]]) -> np.ndarray:
    labels = np.zeros((6, W), dtype=np.uint8)
    for label, regions in paint.items():
        for rows, cols in regions:
            labels[rows, cols] = label
    return labels


def test_center_band_is_centred_third():
    assert center_band(12, 1 / 3) == (4, 8)
    assert center_band(9, 1 / 3) == (3, 6)
    assert center_band(5, 0.01) == (2, 3)  # never empty


def test_most_pixels_in_band_wins_even_against_the_best_label():
    # label 1 is big but outside the band; label 2 has 4 pixels in the band, label 3 has 2.
    labels = frame(
        {
            1: [(slice(0, 6), slice(0, 3))],
            2: [(slice(0, 4), slice(5, 6))],
            3: [(slice(4, 6), slice(6, 7))],
        }
    )
    assert choose_label(labels, 1 / 3, 3) == 2


def test_tie_goes_to_the_lower_label():
    labels = frame({3: [(slice(0, 2), slice(4, 6))], 2: [(slice(3, 5), slice(4, 6))]})
    assert choose_label(labels, 1 / 3, 3) == 2


def test_no_candidate_in_band_gives_empty():
    labels = frame({1: [(slice(0, 6), slice(0, 4))], 2: [(slice(0, 6), slice(8, 12))]})
    assert choose_label(labels, 1 / 3, 3) == 0
    assert choose_label(np.zeros((6, W), np.uint8), 1 / 3, 3) == 0


def test_layer_beyond_num_layers_is_ignored():
    labels = frame({4: [(slice(0, 6), slice(4, 8))], 3: [(slice(0, 1), slice(4, 5))]})
    assert choose_label(labels, 1 / 3, 3) == 3
    only4 = frame({4: [(slice(0, 6), slice(4, 8))]})
    assert choose_label(only4, 1 / 3, 3) == 0
    assert choose_label(only4, 1 / 3, 4) == 4


def test_mask_is_the_whole_region_of_the_chosen_label():
    labels = frame({2: [(slice(0, 6), slice(2, 6))], 1: [(slice(0, 1), slice(10, 12))]})
    masks, chosen = select_masks(labels[None], 1 / 3, 3)
    assert chosen.tolist() == [2]
    np.testing.assert_array_equal(masks[0], labels == 2)  # includes columns 2, 3 outside the band


def write_candidates(path, videos: dict[str, np.ndarray], start_frame: int = 0) -> None:
    with write_shard(path, {"stage": "segment", "backend": "test"}) as fh:
        for vid, labels in videos.items():
            g = create_video_group(fh, vid)
            g.attrs.update(
                {
                    "start_frame": start_frame,
                    "n_frames": len(labels),
                    "frame_shape": np.array(labels.shape[1:]),
                }
            )
            write_frames_dataset(g, "labels", labels, {})
            scores = np.full((len(labels), 10), np.nan, np.float32)
            write_frames_dataset(g, "scores", scores, {})


def test_select_stage_file_round_trips_masks_exactly(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=(5, 13, 29)).astype(np.uint8)  # odd sizes: packing tails
    labels[2] = 0  # an empty frame
    write_candidates(tmp_path / "c.h5", {"v1": labels, "v2": labels[:3]}, start_frame=7)
    n = run_select(tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", RULE_ONLY)
    assert n == 2
    expected, chosen = select_masks(labels, 0.3333333333, 3)
    np.testing.assert_array_equal(read_video_masks(tmp_path / "m.h5", "v1"), expected)
    np.testing.assert_array_equal(
        read_video_masks(tmp_path / "m.h5", "v1", [4, 0]), expected[[4, 0]]
    )
    with h5py.File(tmp_path / "m.h5") as fh:
        g = video_group(fh, "v1")
        np.testing.assert_array_equal(g["chosen_label"][()], chosen)
        np.testing.assert_array_equal(g["empty"][()], chosen == 0)
        assert g["empty"][2] and g.attrs["start_frame"] == 7 and g.attrs["n_frames"] == 5
        assert g.attrs["coverage"] == pytest.approx(expected.mean())
        assert g.attrs["empty_ratio"] == pytest.approx((chosen == 0).mean())
        index = fh["index"][()]
        assert [v.decode() for v in index["vid_name"]] == ["v1", "v2"]
        assert index["frames"].tolist() == [5, 3]
        assert index["coverage"][1] == pytest.approx(expected[:3].mean())
    assert pd.read_csv(tmp_path / "f.csv").empty


def test_a_video_named_like_a_table_of_the_file_is_kept_apart(tmp_path):
    """A vid_name equal to the file's own dataset name (select's ``index``) is an ordinary video."""
    labels = np.zeros((3, 6, 9), np.uint8)
    labels[:, 2:4, 3:6] = 1  # one candidate in the central band -> chosen in every frame
    write_candidates(tmp_path / "c.h5", {"index": labels, "v1": labels[:2]})
    assert run_select(tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", RULE_ONLY) == 2
    assert pd.read_csv(tmp_path / "f.csv").empty
    np.testing.assert_array_equal(read_video_masks(tmp_path / "m.h5", "index"), labels == 1)
    with h5py.File(tmp_path / "m.h5") as fh:
        assert video_names(fh) == ["index", "v1"]
        assert [v.decode() for v in fh["index"]["vid_name"]] == ["index", "v1"]
    table = video_table(tmp_path / "m.h5")
    assert table["vid_name"].tolist() == ["index", "v1"] and table["frames"].tolist() == [3, 2]


def test_a_file_without_the_videos_group_is_named(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as fh:  # the pre-/videos layout: video at the root
        fh.create_group("v").create_dataset("labels", data=np.zeros((2, 4, 6), np.uint8))
    with pytest.raises(ShardError, match=r"old\.h5: no /videos group.*rerun its stage"):
        run_select(tmp_path / "old.h5", tmp_path / "m.h5", tmp_path / "f.csv", RULE_ONLY)
    assert not (tmp_path / "m.h5").exists()


def test_select_cli_records_a_broken_video_and_goes_on(tmp_path):
    write_candidates(tmp_path / "c.h5", {"good": np.ones((2, 4, 6), np.uint8)})
    with h5py.File(tmp_path / "c.h5", "a") as fh:
        create_video_group(fh, "bad").create_dataset("labels", data=np.zeros((4, 6), np.uint8))
    rc = main(
        [
            "select",
            "--candidates",
            str(tmp_path / "c.h5"),
            "--out",
            str(tmp_path / "m.h5"),
            "--failures",
            str(tmp_path / "f.csv"),
            "--options",
            '{"num_layers": 2, "appearance": {"enabled": false}}',
        ]
    )
    assert rc == 0
    failures = pd.read_csv(tmp_path / "f.csv")
    assert failures["video"].tolist() == ["bad"]
    assert read_video_masks(tmp_path / "m.h5", "good").all()


def test_mask_quality_matches_hand_computed_iou(tmp_path):
    # Truth at twice the mask size, video frames 0..5; the masks cover frames 2..4.
    truth_small = np.zeros((6, 2, 3), bool)
    truth_small[2] = [[1, 1, 0], [0, 0, 0]]
    truth_small[3] = [[1, 0, 0], [0, 0, 0]]
    truth_small[4] = False  # both empty -> IoU 1
    truth = truth_small.repeat(2, axis=1).repeat(2, axis=2)
    with write_shard(tmp_path / "truth.h5") as fh:
        write_masks(create_video_group(fh, "v"), "mask", truth)
    pred = np.zeros((3, 2, 3), bool)
    pred[0] = [[1, 0, 0], [1, 0, 0]]  # inter 1, union 3
    pred[1] = [[0, 0, 0], [0, 0, 0]]  # inter 0, union 1
    with write_shard(tmp_path / "train0000.h5") as fh:
        g = create_video_group(fh, "v")
        g.attrs["start_frame"] = 2
        write_masks(g, "mask", pred)
    table = mask_quality(tmp_path / "truth.h5", [tmp_path / "train0000.h5"])
    row = table[table["vid_name"] == "v"].iloc[0]
    assert row["mean_iou"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert row["empty_ratio"] == pytest.approx(2 / 3)
    assert row["true_empty_ratio"] == pytest.approx(1 / 3)
    assert row["frames"] == 3 and row["shard"] == "train0000"
    overall = table[table["vid_name"] == OVERALL].iloc[0]
    assert overall["mean_iou"] == pytest.approx(row["mean_iou"])
    out = tmp_path / "quality.csv"
    rc = main(
        [
            "mask-quality",
            "--truth",
            str(tmp_path / "truth.h5"),
            "--out",
            str(out),
            str(tmp_path / "train0000.h5"),
        ]
    )
    assert rc == 0
    assert pd.read_csv(out)["mean_iou"].iloc[0] == pytest.approx((1 / 3 + 1) / 3)


def test_mask_info_without_a_video_lists_every_video_of_the_shard(tmp_path):
    """``flowguide mask-stability`` lists a shard's videos this way; with the /videos layout it
    once returned the group name ``videos`` and measured nothing."""
    from flowguide.utils.masks import read_mask_info

    labels = np.zeros((3, 6, 9), np.uint8)
    labels[:, 2:4, 3:6] = 1
    write_candidates(tmp_path / "c.h5", {"v1": labels, "v2": labels[:2]}, start_frame=4)
    run_select(tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", RULE_ONLY)
    info = read_mask_info(tmp_path / "m.h5")
    assert sorted(info) == ["v1", "v2"]
    assert info["v1"]["start_frame"] == 4 and info["v2"]["n_frames"] == 2
