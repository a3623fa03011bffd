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

RULE_ONLY = {"appearance": {"enabled": False}}  # the rule alone (no video here)


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
    run_select(
        tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", {"rule": "thesis", **RULE_ONLY}
    )
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
    options = {"rule": "tracked", "tracked": {"max_gap": 1}, **RULE_ONLY}
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


def test_a_candidate_merged_with_its_surroundings_is_cut_to_the_carried_mask():
    # The athlete (4x4, still, in the band) is label 1 alone in frames 0..2; in frame 3 it
    # touches a deck left of the band and the two form one candidate of 16 + 50 pixels, over
    # max_growth (1.5) times the carried 16 px: the mask is that candidate within trim_px = 2 of
    # the athlete. OpenCV's 5x5 ellipse is full in rows 1..3 and only its centre column in rows
    # 0 and 4, so the widened athlete is rows 5..10 x columns 8..15 plus rows 4 and 11 over the
    # athlete's own columns 10..13.
    n = 4
    athlete = rect(6, 10, 10, 14)
    deck = rect(8, 13, 0, 10)
    labels = np.zeros((n, H, W), np.uint8)
    labels[:3][:, athlete] = 1
    labels[3][athlete | deck] = 1
    flow, used = flow_of(n, 0.0)
    expected = (rect(5, 11, 8, 16) | rect(4, 12, 10, 14)) & (athlete | deck)
    assert expected.sum() == 16 + 3 * 2  # the athlete and deck rows 8..10 in columns 8..9
    track = track_masks(labels, flow, used, TrackParams())
    np.testing.assert_array_equal(track.masks[3], expected)
    assert track.chosen[3] == 1
    # max_growth 0 keeps the whole candidate (the rule before the cut existed)
    whole = track_masks(labels, flow, used, TrackParams(max_growth=0))
    np.testing.assert_array_equal(whole.masks[3], athlete | deck)
    # a candidate that grew by less than max_growth is kept whole
    labels[3] = 0
    labels[3][rect(6, 11, 10, 14)] = 1  # 20 px <= 1.5 * 16
    np.testing.assert_array_equal(
        track_masks(labels, flow, used, TrackParams()).masks[3], rect(6, 11, 10, 14)
    )


def panning_identity(tmp_path, seed: int, clips_per_class: int) -> dict[str, float]:
    """SynthDive with a panning camera (camera_shake 4) at the demo's sizes -> DIS flow ->
    motion candidates -> both rules -> identity against the true masks (mean over videos)."""
    from pathlib import Path

    from flowguide.config import load_config
    from flowguide.data.manifest import run_manifest
    from flowguide.data.synthdive import generate_dataset, synth_options
    from flowguide.flow.stage import run_flow
    from flowguide.segment.stage import run_segment
    from flowguide.select.stability import mask_stability

    config = load_config(Path(__file__).parents[1] / "config.yaml")
    per_class = {"clips_per_class_train": clips_per_class, "clips_per_class_test": clips_per_class}
    synth = {**config["synth"], "seed": seed, "camera_shake": 4.0, **per_class}
    root = tmp_path / "synthdive"
    generate_dataset(root, synth_options(synth))
    manifest = run_manifest(
        config["dataset"], root, tmp_path / "manifest.csv", tmp_path / "shards", tmp_path / "fm.csv"
    )
    identity = {}
    for rule in ("thesis", "tracked"):
        pairs = []
        for shard in sorted(manifest["shard"].unique()):
            csv, flow = tmp_path / "shards" / f"{shard}.csv", tmp_path / f"{shard}.flow.h5"
            cand = tmp_path / f"{shard}.cand.h5"
            if not cand.exists():
                run_flow(csv, flow, tmp_path / "ff.csv", config["flow"], "cpu")
                run_segment(csv, flow, cand, tmp_path / "fs.csv", config["segment"], "cpu")
            out = tmp_path / f"{shard}.{rule}.h5"
            options = {**config["select"], "rule": rule}
            run_select(cand, out, tmp_path / "fx.csv", options, flow_path=flow)
            pairs.append((out, flow))
        table = mask_stability(pairs, root / "true_masks.h5")
        identity[rule] = float(table.iloc[-1]["identity"])
    return identity


def test_tracked_rule_beats_the_thesis_rule_on_identity_under_a_panning_camera(tmp_path):
    """The issue's test: on SynthDive clips with a panning camera the tracked rule (defaults)
    stays on the athlete between consecutive frames more often than the thesis rule. Seed 1,
    not the seed-0 clips the tracked defaults were measured on (README "Diver masks")."""
    identity = panning_identity(tmp_path, seed=1, clips_per_class=2)
    assert identity["tracked"] >= identity["thesis"] + 0.02, identity


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_tracked_identity_on_more_panning_clips(tmp_path, seed):
    identity = panning_identity(tmp_path, seed=seed, clips_per_class=4)
    assert identity["tracked"] >= identity["thesis"] + 0.02, identity
