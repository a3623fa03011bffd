"""FlowSAM's sequence-level step keeps an object's label through a clip."""

from __future__ import annotations

import numpy as np

from flowguide.segment.sequence import match_sequence

H, W, T = 40, 60, 7
VX, VY = 2, 1  # the whole scene translates by (VX, VY) px per frame


def scene(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of two objects at frame t (both moving with the scene)."""
    a = np.zeros((H, W), bool)
    b = np.zeros((H, W), bool)
    a[5 + VY * t : 15 + VY * t, 5 + VX * t : 15 + VX * t] = True
    b[20 + VY * t : 32 + VY * t, 30 + VX * t : 40 + VX * t] = True
    return a, b


def clip_inputs(gaps=(1, -1, 2, -2), flip=lambda t: t % 2 == 1):
    """Ranked label maps whose ranks of the two objects swap on ``flip`` frames, the scores,
    and the exact flow of every gap (used gaps as the flow stage writes them)."""
    labels = np.zeros((T, H, W), np.uint8)
    scores = np.full((T, 4), np.nan, np.float32)
    for t in range(T):
        a, b = scene(t)
        first, second = (b, a) if flip(t) else (a, b)
        labels[t][second] = 2
        labels[t][first] = 1
        scores[t, :2] = [0.9, 0.8]
    used = np.zeros((T, len(gaps)), np.int16)
    flow = np.zeros((T, len(gaps), 2, H, W), np.float32)
    for t in range(T):
        for j, g in enumerate(gaps):
            g = g if 0 <= t + g < T else -g
            used[t, j] = g
            flow[t, j, 0], flow[t, j, 1] = VX * g, VY * g
    return labels, scores, flow, used


def object_labels(labels: np.ndarray) -> list[tuple[int, int]]:
    """(label under object a's centre, under object b's centre) per frame."""
    out = []
    for t in range(T):
        a, b = scene(t)
        ya, xa = np.argwhere(a).mean(0).astype(int)
        yb, xb = np.argwhere(b).mean(0).astype(int)
        out.append((int(labels[t, ya, xa]), int(labels[t, yb, xb])))
    return out


def test_ranks_that_swap_become_stable_ids():
    labels, scores, flow, used = clip_inputs()
    assert len(set(object_labels(labels))) == 2  # the ranks do swap
    out, out_scores = match_sequence(labels, scores, flow, used)
    assert object_labels(out) == [(1, 2)] * T  # frame 0's ranks, kept
    for t in range(T):
        a, b = scene(t)
        np.testing.assert_array_equal(out[t] == 1, a)
        np.testing.assert_array_equal(out[t] == 2, b)
    np.testing.assert_allclose(out_scores[:, :2], [[0.9, 0.8]] + [[0.8, 0.9], [0.9, 0.8]] * 3)


def test_forward_gap_only_uses_the_negated_field():
    labels, scores, flow, used = clip_inputs(gaps=(1,), flip=lambda t: t >= 3)
    out, _ = match_sequence(labels, scores, flow, used)
    assert object_labels(out) == [(1, 2)] * T


def test_a_frame_without_candidates_keeps_the_warped_objects():
    labels, scores, flow, used = clip_inputs()
    labels[3] = 0
    scores[3] = np.nan
    out, out_scores = match_sequence(labels, scores, flow, used)
    assert object_labels(out) == [(1, 2)] * T
    assert np.isnan(out_scores[3, :2]).all()  # kept from frame 2, warped by the flow


def test_stage_option_relabels_and_says_so(tmp_path):
    import h5py
    from test_segment import dis_flow, panning_clip, write_flow_file, write_shard_csv

    from flowguide.segment.sequence import SEQUENCE_LABEL_VALUES
    from flowguide.segment.stage import run_segment

    frames, _ = panning_clip(n_frames=6)
    flow, used = dis_flow(frames)
    write_flow_file(tmp_path / "flow.h5", {"v": (flow, used)})
    write_shard_csv(tmp_path / "shard.csv", ["v"], 6)
    motion = {  # the flow cue alone: no RGB (the overlay removal and refinement read it too)
        "min_residual_px": 0.35, "cue": "flow", "photometric_check": False,
        "overlay_fraction": 1.0, "refine": {"enabled": False},
    }  # fmt: skip
    paths = [tmp_path / n for n in ("shard.csv", "flow.h5")]
    for sequence in (False, True):
        options = {"backend": "motion", "max_objects": 5, "motion": motion,
                   "sequence_matching": sequence}  # fmt: skip
        out = tmp_path / f"c{sequence}.h5"
        run_segment(*paths, out, tmp_path / "f.csv", options, "cpu", fail_fast=True)
    with h5py.File(tmp_path / "cFalse.h5") as off, h5py.File(tmp_path / "cTrue.h5") as on:
        assert not off.attrs["sequence_matching"] and on.attrs["sequence_matching"]
        assert on.attrs["label_values"] == SEQUENCE_LABEL_VALUES
        assert on["videos/v/labels"].attrs["value"] == SEQUENCE_LABEL_VALUES
        ranked = off["videos/v/labels"][()]
        scores = off["videos/v/scores"][()]
        stored = flow.astype(np.float16).astype(np.float32)  # as the stage reads it
        expected, _ = match_sequence(ranked, scores, stored, used.astype(np.int64))
        np.testing.assert_array_equal(on["videos/v/labels"][()], expected)
