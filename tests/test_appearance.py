"""The colour refinement of the selected masks (select/appearance.py) on hand-drawn scenes.

Every expected mask is the drawing itself: the athlete's pixels as painted, not an output of
the code under test."""

import h5py
import numpy as np
import pandas as pd
import pytest

from flowguide.select.appearance import AppearanceParams, confident_frames, refine_masks
from flowguide.select.stage import run_select
from flowguide.utils.h5 import (
    ShardError,
    create_video_group,
    set_attrs,
    write_frames_dataset,
    write_shard,
)
from flowguide.utils.masks import read_frame_flags, read_video_masks
from flowguide.utils.provenance import dataset_attrs
from flowguide.utils.video import write_video

T, H, W = 6, 40, 48
GREY, DECK, RED, SKIN = (120, 120, 120), (235, 235, 235), (200, 40, 40), (225, 170, 120)


def scene(
    skin: tuple[int, int, int] = SKIN, noise: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, truth, deck, limb): a grey wall, a white deck (rows 30..33), an athlete with a
    skin head, a red torso and a skin leg two pixels wide that reaches the deck."""
    rng = np.random.default_rng(0)
    rgb = np.empty((T, H, W, 3), np.float32)
    rgb[:] = GREY
    deck = np.zeros((H, W), bool)
    deck[30:34] = True
    head, torso, limb = (np.zeros((H, W), bool) for _ in range(3))
    head[4:10, 21:27] = True
    torso[10:22, 19:29] = True
    limb[22:30, 23:25] = True
    rgb[:, deck] = DECK
    rgb[:, head | limb] = skin
    rgb[:, torso] = RED
    rgb += rng.normal(0, noise, rgb.shape)
    truth = np.broadcast_to(head | torso | limb, (T, H, W)).copy()
    return np.clip(rgb, 0, 255).astype(np.uint8), truth, deck, limb


def still_flow() -> tuple[np.ndarray, np.ndarray]:
    """Zero flow, gaps [1] as the flow stage stores them (last frame: -1)."""
    used = np.ones((T, 1), np.int64)
    used[-1] = -1
    return np.zeros((T, 1, 2, H, W), np.float32), used


def motion_masks(truth: np.ndarray, deck: np.ndarray, limb: np.ndarray) -> np.ndarray:
    """The motion evidence's two failures: frame 4 misses the leg, frame 5 takes the deck under
    the athlete too; frame 2 has no evidence; the others are the athlete exactly."""
    masks = truth.copy()
    masks[4] &= ~limb
    masks[5] |= deck & (np.arange(W) >= 12) & (np.arange(W) < 36)
    masks[2] = False
    return masks


CONFIDENCE = np.array([0.9, 0.8, 0.0, 0.7, 0.3, 0.2], np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_the_missed_leg_is_found_and_the_deck_dropped():
    rgb, truth, deck, limb = scene()
    masks = motion_masks(truth, deck, limb)
    flow, used = still_flow()
    out = refine_masks(rgb, masks, CONFIDENCE, flow, used, AppearanceParams())
    for t in (4, 5):
        assert iou(masks[t], truth[t]) < 0.92  # before: 0.91 (leg missed), 0.64 (deck taken)
        assert iou(out[t], truth[t]) > 0.95, t
        assert out[t][limb].all() and not (out[t] & deck).any()
    for t in (0, 1, 3):
        assert iou(out[t], truth[t]) > 0.95
    assert not out[2].any()  # no evidence stays no evidence


def test_without_the_upscaled_cut_the_thin_leg_is_dropped():
    """Why ``upscale``: at the masks' own resolution GrabCut's fixed smoothness outweighs weak
    colour evidence on thin parts; with a paler skin in noisier frames the leg (2 px wide) is lost
    even in the frames that had it, upscaled it stays."""
    rgb, truth, deck, limb = scene(skin=(170, 140, 120), noise=8.5)
    masks = motion_masks(truth, deck, limb)
    flow, used = still_flow()
    native = refine_masks(rgb, masks, CONFIDENCE, flow, used, AppearanceParams(upscale=1))
    upscaled = refine_masks(rgb, masks, CONFIDENCE, flow, used, AppearanceParams())
    for t in (0, 1, 3, 4, 5):
        assert not native[t][limb].any() and iou(native[t], truth[t]) < 0.92
        assert upscaled[t][limb].all() and iou(upscaled[t], truth[t]) > 0.95


def test_confident_frames_are_the_top_share_of_the_frames_with_a_mask():
    rgb, truth, deck, limb = scene()
    masks = motion_masks(truth, deck, limb)
    # frames with a mask: 0, 1, 3, 4, 5 (confidences 0.9, 0.8, 0.7, 0.3, 0.2)
    has = masks.reshape(T, -1).any(1)
    assert confident_frames(has, CONFIDENCE, 0.4).tolist() == [1, 1, 0, 0, 0, 0]
    assert confident_frames(has, CONFIDENCE, 0.6).tolist() == [1, 1, 0, 1, 0, 0]
    assert not confident_frames(np.zeros(T, bool), CONFIDENCE, 0.5).any()


def write_case(tmp_path, masks: np.ndarray, rgb: np.ndarray, with_video: bool = True):
    """The video on disk, candidates (label 1 = the motion masks) and the flow shard."""
    data = tmp_path / "data"
    (data / "rgb").mkdir(parents=True)
    if with_video:
        write_video(data / "rgb" / "v.mp4", rgb, fps=25, qscale=2)
    flow, used = still_flow()
    attrs = {"start_frame": 0, "n_frames": T, "frame_shape": np.array([H, W])}
    with write_shard(tmp_path / "c.h5", {"stage": "segment", "backend": "test"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, {**attrs, **dataset_attrs(data / "rgb" / "v.mp4", data, tmp_path / "c.h5")})
        write_frames_dataset(g, "labels", masks.astype(np.uint8), {})
        write_frames_dataset(g, "scores", np.zeros((T, 10), np.float32), {})
    with write_shard(tmp_path / "flow.h5", {"stage": "flow"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, attrs)
        write_frames_dataset(g, "flow", flow.astype(np.float16), {})
        write_frames_dataset(g, "used_gap", used.astype(np.int16), {})


def test_select_stage_refines_by_default_and_gives_the_rule_back_when_off(tmp_path):
    rgb, truth, deck, limb = scene()
    masks = motion_masks(truth, deck, limb)
    write_case(tmp_path, masks, rgb)
    flow = tmp_path / "flow.h5"
    run_select(tmp_path / "c.h5", tmp_path / "on.h5", tmp_path / "f.csv", {}, flow_path=flow)
    assert pd.read_csv(tmp_path / "f.csv").empty
    on = read_video_masks(tmp_path / "on.h5", "v")
    # Read back from an mp4v file: chroma subsampling blurs the 2 px leg into the wall, so the
    # bar is lower than on the drawn frames; the deck must go.
    assert iou(masks[5], truth[5]) < 0.65 and iou(on[5], truth[5]) > 0.85
    assert not (on[5] & deck).any()
    assert read_frame_flags(tmp_path / "on.h5", "v").has_mask.tolist() == [1, 1, 0, 1, 1, 1]
    off = {"appearance": {"enabled": False}}
    run_select(tmp_path / "c.h5", tmp_path / "off.h5", tmp_path / "f.csv", off, flow_path=flow)
    np.testing.assert_array_equal(read_video_masks(tmp_path / "off.h5", "v"), masks)
    with h5py.File(tmp_path / "on.h5") as fh:
        assert '"upscale": 6' in fh.attrs["parameters"]


def test_a_missing_video_is_a_named_failure_and_the_shard_goes_on(tmp_path):
    rgb, truth, deck, limb = scene()
    write_case(tmp_path, motion_masks(truth, deck, limb), rgb, with_video=False)
    run_select(
        tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", {}, flow_path=tmp_path / "flow.h5"
    )
    failures = pd.read_csv(tmp_path / "f.csv")
    assert failures["video"].tolist() == ["v"]
    message = failures.iloc[0]["reason"]
    assert "rgb/v.mp4" in message and "select.appearance" in message
    with pytest.raises(ShardError, match="'v' is not in this shard"):
        read_video_masks(tmp_path / "m.h5", "v")
