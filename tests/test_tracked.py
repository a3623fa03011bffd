"""Tracked selection on hand-built label maps, the thesis rule beside it, and the flags reader."""

from __future__ import annotations

import numpy as np
import pytest

from flowguide.select.stage import run_select
from flowguide.select.tracked import TrackParams, track_masks
from flowguide.utils.h5 import create_video_group, set_attrs, write_frames_dataset, write_shard
from flowguide.utils.masks import MaskShardReader, read_frame_flags, read_video_masks
from flowguide.utils.maskwarp import carry_mask, pull_mask, push_mask

H, W = 16, 30  # central third: columns 10..19


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def flow_of(n: int, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """Uniform flow dx px/frame, gaps [1] stored as the flow stage does (last frame: -1)."""
    flow = np.zeros((n, 1, 2, H, W), np.float32)
    used = np.ones((n, 1), np.int64)
    flow[:, 0, 0] = dx
    flow[-1, 0, 0] = -dx
    used[-1] = -1
    return flow, used


def test_push_and_pull_move_a_mask_by_the_flow():
    mask = rect(4, 8, 5, 9)
    flow = np.zeros((2, H, W), np.float32)
    flow[0] = 3.0
    np.testing.assert_array_equal(push_mask(mask, flow), rect(4, 8, 8, 12))
    np.testing.assert_array_equal(pull_mask(mask, flow), rect(4, 8, 2, 6))
    f, used = flow_of(3, 3.0)
    np.testing.assert_array_equal(carry_mask(mask, f, used, 0, 1), rect(4, 8, 8, 12))  # push
    np.testing.assert_array_equal(carry_mask(mask, f, used, 1, 0), rect(4, 8, 2, 6))  # pull


def test_identity_switch_is_refused():
    # Object A (label 1) in the band at frames 0..5 except frame 2, where only B (another
    # object, also in the band, far from A) is there: the thesis rule jumps to B.
    n = 6
    a, b = rect(1, 7, 11, 19), rect(10, 15, 12, 18)
    labels = np.zeros((n, H, W), np.uint8)
    for t in range(n):
        if t != 2:
            labels[t][a] = 1
        labels[t][b] = 2 if t != 2 else 1
    flow, used = flow_of(n, 0.0)
    track = track_masks(labels, flow, used, TrackParams(max_gap=1))
    assert not (track.masks & b).any()  # never on B
    np.testing.assert_array_equal(track.masks[2], a)  # bridged with A's carried mask
    assert track.bridged.tolist() == [False, False, True, False, False, False]
    assert track.chosen.tolist() == [1, 1, 0, 1, 1, 1]
    # Confidence: 1 at the seed, IoU 1 on matched frames (A does not move), decayed on the gap.
    assert track.confidence[2] == pytest.approx(1 - 1 / 2)
    assert np.allclose(np.delete(track.confidence, 2), 1.0)


def test_short_gap_of_a_moving_object_is_bridged_by_the_flow():
    n, dx = 8, 2
    labels = np.zeros((n, H, W), np.uint8)
    expected = [rect(4, 10, 8 + dx * t, 14 + dx * t) for t in range(n)]
    for t in range(n):
        if t not in (3, 4):  # a 2-frame gap
            labels[t][expected[t]] = 1
        labels[t][rect(13, 16, 0, 3)] = 2  # an unrelated corner blob
    flow, used = flow_of(n, dx)
    track = track_masks(labels, flow, used, TrackParams(max_gap=3))
    for t in range(n):
        np.testing.assert_array_equal(track.masks[t], expected[t], err_msg=f"frame {t}")
    assert track.bridged.tolist() == [t in (3, 4) for t in range(n)]
    # Linear decay over max_gap + 1 = 4 steps from the last matched frame's confidence (1).
    assert track.confidence[3] == pytest.approx(0.75) and track.confidence[4] == pytest.approx(0.5)


def test_gap_longer_than_the_limit_stays_empty_and_the_object_is_resumed():
    n = 10
    obj = rect(3, 9, 11, 18)
    labels = np.zeros((n, H, W), np.uint8)
    missing = range(3, 8)  # 5 frames > max_gap 2
    for t in range(n):
        if t not in missing:
            labels[t][obj] = 1
    labels[5][rect(11, 16, 10, 20)] = 1  # another object appears mid-gap: not taken
    flow, used = flow_of(n, 0.0)
    track = track_masks(labels, flow, used, TrackParams(max_gap=2))
    has = track.masks.reshape(n, -1).any(1)
    assert has.tolist() == [t not in missing for t in range(n)]
    assert not track.bridged.any() and (track.confidence[list(missing)] == 0).all()
    np.testing.assert_array_equal(track.masks[9], obj)


def test_the_track_of_the_most_central_object_wins():
    # Two objects each seen in every frame; C fills the band more in most frames.
    n = 5
    labels = np.zeros((n, H, W), np.uint8)
    c, d = rect(2, 12, 12, 18), rect(2, 12, 3, 11)
    for t in range(n):
        labels[t][c] = 1
        labels[t][d] = 2
    flow, used = flow_of(n, 0.0)
    track = track_masks(labels, flow, used, TrackParams())
    assert track.chosen.tolist() == [1] * n


def write_candidates_and_flow(tmp_path, labels, flow, used):
    attrs = {"start_frame": 0, "n_frames": len(labels), "frame_shape": np.array([H, W])}
    with write_shard(tmp_path / "c.h5", {"stage": "segment", "backend": "test"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, attrs)
        write_frames_dataset(g, "labels", labels, {})
        write_frames_dataset(g, "scores", np.zeros((len(labels), 10), np.float32), {})
    with write_shard(tmp_path / "flow.h5", {"stage": "flow"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, attrs)
        write_frames_dataset(g, "flow", flow.astype(np.float16), {})
        write_frames_dataset(g, "used_gap", used.astype(np.int16), {})


def test_thesis_rule_unchanged_and_flags_through_the_one_reader(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(6, H, W)).astype(np.uint8)
    labels[1] = 0
    flow, used = flow_of(6, 0.0)
    write_candidates_and_flow(tmp_path, labels, flow, used)
    run_select(tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", {"rule": "thesis"})
    masks = read_video_masks(tmp_path / "m.h5", "v")
    # Independent: the label with most band pixels among 1..3, ties to the lower label.
    for t in range(6):
        band = labels[t][:, 10:20]
        counts = [(band == k).sum() for k in (1, 2, 3)]
        if max(counts) == 0:
            assert not masks[t].any()
            continue
        k = 1 + counts.index(max(counts))
        np.testing.assert_array_equal(masks[t], labels[t] == k)
        flags = read_frame_flags(tmp_path / "m.h5", "v", [t])
        assert flags.confidence[0] == pytest.approx(max(counts) / sum(counts))
    flags = read_frame_flags(tmp_path / "m.h5", "v")
    assert flags.has_mask.tolist() == [t != 1 for t in range(6)]
    assert flags.confidence[1] == 0 and not flags.bridged.any()
    reader = MaskShardReader()
    got = reader.read_flags(tmp_path / "m.h5", "v", [1, 0])
    assert got.has_mask.tolist() == [False, True]


def test_tracked_rule_through_the_stage_needs_the_flow(tmp_path):
    n = 6
    a, b = rect(1, 7, 11, 19), rect(10, 15, 12, 18)
    labels = np.zeros((n, H, W), np.uint8)
    for t in range(n):
        if t != 2:
            labels[t][a] = 1
        labels[t][b] = 2 if t != 2 else 1
    flow, used = flow_of(n, 0.0)
    write_candidates_and_flow(tmp_path, labels, flow, used)
    from flowguide.utils.failures import FlowguideError

    with pytest.raises(FlowguideError, match="flow"):
        run_select(tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", {"rule": "tracked"})
    options = {"rule": "tracked", "tracked": {"max_gap": 1}}
    run_select(
        tmp_path / "c.h5",
        tmp_path / "m.h5",
        tmp_path / "f.csv",
        options,
        False,
        tmp_path / "flow.h5",
    )
    masks = read_video_masks(tmp_path / "m.h5", "v")
    assert not (masks & b).any() and masks.reshape(n, -1).any(1).all()
    assert read_frame_flags(tmp_path / "m.h5", "v").bridged.tolist() == [t == 2 for t in range(n)]
