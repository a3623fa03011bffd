"""Flow stage: backends recover known motions; the stage stores what it promises; RAFT weights."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from flowguide.cli import main as cli_main
from flowguide.flow.backends import OpenCVBackend, RaftBackend, load_raft
from flowguide.flow.stage import partner_frame, plan_gaps, run_flow
from flowguide.utils.checkpoints import MissingWeightsError, hub_checkpoint_path
from flowguide.utils.flowio import flow_attrs, flow_video_attrs, list_videos, read_flow
from flowguide.utils.flowviz import flow_to_color
from flowguide.utils.manifest import MANIFEST_COLUMNS
from flowguide.utils.video import read_video, write_video

MARGIN = 16


def texture(rng: np.random.Generator, height: int, width: int, sigma: float = 3.0) -> np.ndarray:
    """A smooth random RGB texture (uint8), gray-valued so every backend sees the same image."""
    noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma)
    gray = ((noise - noise.min()) / (noise.max() - noise.min()) * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def affine_pair(image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image warped by ``matrix`` and the true flow (2, H, W): pixel p moves to matrix @ p."""
    height, width = image.shape[:2]
    warped = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2] - xs
    dy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2] - ys
    return warped, np.stack([dx, dy])


def write_shard_csv(path, videos: list[tuple[str, object, int, int]]) -> None:
    """A shard CSV with the manifest's columns; ``videos`` = (vid_name, path, height, width)."""
    rows = []
    for i, (name, video_path, height, width) in enumerate(videos):
        n = 6
        rows.append(
            {
                "vid_name": name, "split": "train", "label": i, "path": str(video_path),
                "start_frame": 0, "end_frame": n - 1, "n_frames": n, "video_frames": n,
                "fps": 25.0, "width": width, "height": height, "shard": "train0000",
            }
        )  # fmt: skip
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(path, index=False)


def panning_clip(rng, n_frames=6, height=60, width=84, bg_step=(2, 0), obj_step=(-3, 2)):
    """Background panning by ``bg_step`` px/frame, a textured square moving by ``obj_step``.

    Returns frames (T, H, W, 3) and the square's masks (T, H, W)."""
    pad = 4 * max(n_frames, 1) * 4
    background = texture(rng, height + 2 * pad, width + 2 * pad, sigma=2.0)
    square = texture(rng, 18, 18, sigma=1.5)
    frames, masks = [], []
    for t in range(n_frames):
        # Content moves by +step: the visible window moves by -step over the big background.
        y0, x0 = pad - bg_step[1] * t, pad - bg_step[0] * t
        frame = background[y0 : y0 + height, x0 : x0 + width].copy()
        top, left = 20 + obj_step[1] * t, 40 + obj_step[0] * t
        frame[top : top + 18, left : left + 18] = square
        mask = np.zeros((height, width), bool)
        mask[top : top + 18, left : left + 18] = True
        frames.append(frame)
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


# --- OpenCV backends recover known motions ----------------------------------------------------


@pytest.mark.parametrize("backend", ["dis", "farneback"])
@pytest.mark.parametrize(
    "matrix",
    [
        np.array([[1, 0, 2.3], [0, 1, -1.7]]),  # translation
        cv2.getRotationMatrix2D((80.0, 64.0), 2.0, 1.0),  # rotation about the centre
    ],
    ids=["translation", "rotation"],
)
def test_opencv_backends_recover_affine_motion(backend, matrix):
    rng = np.random.default_rng(0)
    image = texture(rng, 128, 160)
    warped, truth = affine_pair(image, matrix.astype(np.float64))
    flow = OpenCVBackend(backend, "medium").compute_pairs(
        np.stack([image, warped]), np.array([[0, 1]])
    )[0]
    epe = np.hypot(*(flow - truth))[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert np.abs(truth).max() > 1.0  # the motion is not trivially small
    assert epe.max() < 0.5, f"{backend}: end-point error up to {epe.max():.3f} px"


# --- gaps -------------------------------------------------------------------------------------


def test_gap_plan_follows_the_end_fallback_rule():
    gaps = [1, -1, 2, -2]
    n = 5
    used, pairs, pair_index = plan_gaps(n, gaps)
    for t in range(n):
        for j, g in enumerate(gaps):
            expected = g if 0 <= t + g < n else -g
            assert used[t, j] == expected, (t, g)
            assert tuple(pairs[pair_index[t, j]]) == (t, t + expected)
    # Each distinct (source, target) pair is computed once.
    assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)
    # A clip shorter than |g| + 1: the farthest frame in g's direction, else the opposite one.
    assert partner_frame(0, 3, 2) == 1
    assert partner_frame(1, 3, 2) == 0
    assert partner_frame(0, -3, 2) == 1


def test_stage_stores_gaps_and_fallback_flows(tmp_path):
    rng = np.random.default_rng(1)
    frames, _ = panning_clip(rng)
    write_video(tmp_path / "a.mp4", frames, fps=25, qscale=2)
    write_shard_csv(tmp_path / "s.csv", [("a", tmp_path / "a.mp4", 60, 84)])
    gaps = [1, -1, 2, -2]
    options = {"backend": "dis", "gaps": gaps, "short_side": None}
    run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "fail.csv", options, "cpu")

    flow, used = read_flow(tmp_path / "f.h5", "a")
    n = len(frames)
    assert flow.shape == (n, 4, 2, 60, 84) and flow.dtype == np.float32
    expected_used = np.array([[g if 0 <= t + g < n else -g for g in gaps] for t in range(n)])
    np.testing.assert_array_equal(used, expected_used)
    # Each stored flow is DIS between the frames the used gap names (independent recomputation).
    decoded = read_video(tmp_path / "a.mp4")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in decoded]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for t, j in [(n - 1, 0), (0, 1), (n - 2, 2), (1, 3), (2, 2)]:
        direct = dis.calc(gray[t], gray[t + used[t, j]], None).transpose(2, 0, 1)
        np.testing.assert_allclose(flow[t, j], direct, atol=0.02)
    # The panning background (+2 px/frame in x) shows with the sign of the used gap.
    for j in range(4):
        med_dx = np.median(flow[:, j, 0, :, :30], axis=(1, 2))
        np.testing.assert_allclose(med_dx, 2.0 * used[:, j], atol=0.5)
    # Reading a subset of frames reads those frames, in the order asked.
    sub, sub_used = read_flow(tmp_path / "f.h5", "a", [3, 0, 3])
    np.testing.assert_array_equal(sub, flow[[3, 0, 3]])
    np.testing.assert_array_equal(sub_used, used[[3, 0, 3]])
    attrs = flow_attrs(tmp_path / "f.h5")
    assert attrs["backend"] == "dis" and attrs["gaps"] == gaps and "pixels" in attrs["units"]
    assert "t + used_gap" in attrs["sign_convention"]
    assert attrs["dis_preset"] == "medium" and "num_flow_updates" not in attrs  # RAFT-only
    video = flow_video_attrs(tmp_path / "f.h5", "a")
    assert video["frame_shape"] == [60, 84] and video["n_frames"] == n
    assert video["start_frame"] == 0 and video["source_path"] == str(tmp_path / "a.mp4")


def test_processing_size_scales_frames_and_vectors(tmp_path):
    rng = np.random.default_rng(2)
    frames, _ = panning_clip(rng, height=64, width=96)
    write_video(tmp_path / "a.mp4", frames, fps=25, qscale=2)
    write_shard_csv(tmp_path / "s.csv", [("a", tmp_path / "a.mp4", 64, 96)])
    options = {"backend": "farneback", "gaps": [1], "short_side": 32}
    run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "fail.csv", options, "cpu")
    flow, _ = read_flow(tmp_path / "f.h5", "a")
    assert flow.shape[-2:] == (32, 48)
    # 2 px/frame at native size is 1 px/frame at half size.
    np.testing.assert_allclose(np.median(flow[:-1, 0, 0, :, :14]), 1.0, atol=0.3)


def test_object_flow_differs_from_panning_background(tmp_path):
    rng = np.random.default_rng(3)
    frames, masks = panning_clip(rng, bg_step=(2, 0), obj_step=(-3, 2))
    write_video(tmp_path / "a.mp4", frames, fps=25, qscale=2)
    write_shard_csv(tmp_path / "s.csv", [("a", tmp_path / "a.mp4", 60, 84)])
    options = {"backend": "dis", "gaps": [1], "short_side": None}
    run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "fail.csv", options, "cpu")
    flow, _ = read_flow(tmp_path / "f.h5", "a")
    for t in range(len(frames) - 1):
        inner = cv2.erode(masks[t].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        obj = np.median(flow[t, 0][:, inner], axis=1)
        background = np.median(flow[t, 0][:, ~masks[t]], axis=1)
        np.testing.assert_allclose(background, [2, 0], atol=0.5)
        # True difference: |(-3, 2) - (2, 0)| = 5.4 px; DIS smooths a small object's edges.
        assert np.hypot(*(obj - background)) > 3.0
        assert np.hypot(*(obj - [-3, 2])) < np.hypot(*(obj - background))


def test_synthdive_diver_moves_apart_from_the_background(tmp_path):
    """On a SynthDive clip, the flow's residual from the background median is larger inside the
    true diver mask than outside. (At 160x120 DIS does not resolve the diver's own motion: its
    median flow in the mask stays near the background's; only this residual separates them.)"""
    from flowguide.data.synthdive import MASKS_FILE, VIDEOS_DIR, generate_dataset, synth_options
    from flowguide.data.synthdive import vid_name as synth_vid_name
    from flowguide.utils.masks import read_video_masks

    opts = synth_options(
        {"seed": 0, "num_classes": 2, "clips_per_class_train": 1, "clips_per_class_test": 1}
    )
    generate_dataset(tmp_path / "sd", opts)
    name = synth_vid_name(opts.seed, "train", 0)
    write_shard_csv(
        tmp_path / "s.csv", [(name, tmp_path / "sd" / VIDEOS_DIR / f"{name}.mp4", 120, 160)]
    )
    shard = pd.read_csv(tmp_path / "s.csv")
    shard["end_frame"] = opts.frames - 1
    shard.to_csv(tmp_path / "s.csv", index=False)
    options = {"backend": "dis", "gaps": [1], "short_side": None}
    run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "fail.csv", options, "cpu")
    flow, _ = read_flow(tmp_path / "f.h5", name)
    masks = read_video_masks(tmp_path / "sd" / MASKS_FILE, name)
    assert flow.shape[0] == masks.shape[0] == opts.frames
    inside, outside = [], []
    for t in range(opts.frames - 1):
        if masks[t].sum() < 10:
            continue
        background = np.median(flow[t, 0][:, ~masks[t]], axis=1, keepdims=True)
        residual = np.hypot(*(flow[t, 0] - background[..., None]))
        inside.append(residual[masks[t]].mean())
        outside.append(residual[~masks[t]].mean())
    assert np.median(inside) > 2 * np.median(outside)


# --- failures and CLI -------------------------------------------------------------------------


def test_unreadable_video_is_reported_and_others_written(tmp_path):
    rng = np.random.default_rng(4)
    frames, _ = panning_clip(rng)
    write_video(tmp_path / "good.mp4", frames, fps=25)
    (tmp_path / "bad.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    write_shard_csv(
        tmp_path / "s.csv",
        [("bad", tmp_path / "bad.mp4", 60, 84), ("good", tmp_path / "good.mp4", 60, 84)],
    )
    argv = [
        "flow", "--shard", str(tmp_path / "s.csv"), "--out", str(tmp_path / "f.h5"),
        "--failures", str(tmp_path / "fail.csv"), "--device", "cpu",
        "--options", '{"backend": "dis", "short_side": null}',
    ]  # fmt: skip
    assert cli_main(argv) == 0
    assert list_videos(tmp_path / "f.h5") == ["good"]
    with open(tmp_path / "fail.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["stage"], r["video"]) for r in rows] == [("flow", "bad")]
    assert "bad.mp4" in rows[0]["reason"]
    # --fail-fast stops at the first failure and writes nothing.
    assert cli_main([*argv[:4], str(tmp_path / "g.h5"), *argv[5:], "--fail-fast"]) == 2
    assert not (tmp_path / "g.h5").exists()


def test_cli_errors_for_missing_shard_and_bad_options(tmp_path, capsys):
    base = ["flow", "--out", str(tmp_path / "f.h5"), "--failures", str(tmp_path / "x.csv")]
    assert cli_main([*base, "--shard", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
    write_shard_csv(tmp_path / "s.csv", [])
    assert cli_main([*base, "--shard", str(tmp_path / "s.csv"), "--options", '{"gaps": [0]}']) == 2
    assert "flow.gaps" in capsys.readouterr().err
    assert cli_main([*base, "--shard", str(tmp_path / "s.csv"), "--options", '{"bakend": 1}']) == 2
    assert "bakend" in capsys.readouterr().err
    assert not (tmp_path / "f.h5").exists()


# --- RAFT ------------------------------------------------------------------------------------


RAFT_OPTIONS = {"backend": "raft_small", "num_flow_updates": 2, "batch_size": 3, "short_side": None}


def save_random_raft_small(path) -> dict[str, torch.Tensor]:
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    state = raft_small(weights=None, progress=False).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_raft_stage_with_hub_checkpoint_on_odd_frame_size(tmp_path, monkeypatch):
    from torchvision.models.optical_flow import Raft_Small_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = hub_checkpoint_path(Raft_Small_Weights.DEFAULT.url)
    assert str(hub_file).startswith(str(tmp_path / "torch"))
    state = save_random_raft_small(hub_file)

    rng = np.random.default_rng(5)
    frames, _ = panning_clip(rng, n_frames=4, height=60, width=84)  # neither a multiple of 8
    write_video(tmp_path / "a.mp4", frames, fps=25, qscale=2)
    write_video(tmp_path / "b.mp4", frames[::-1], fps=25, qscale=2)
    write_shard_csv(
        tmp_path / "s.csv", [("a", tmp_path / "a.mp4", 60, 84), ("b", tmp_path / "b.mp4", 60, 84)]
    )
    shard = pd.read_csv(tmp_path / "s.csv")
    shard["end_frame"] = 3
    shard.to_csv(tmp_path / "s.csv", index=False)
    options = {**RAFT_OPTIONS, "gaps": [1, -1]}
    run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "fail.csv", options, "auto")

    assert list_videos(tmp_path / "f.h5") == ["a", "b"]
    flow, used = read_flow(tmp_path / "f.h5", "a")
    assert flow.shape == (4, 2, 2, 60, 84)
    attrs = flow_attrs(tmp_path / "f.h5")
    assert attrs["weights"] == "torchvision Raft_Small_Weights.C_T_V2"
    assert attrs["weights_file"] == str(hub_file) and attrs["num_flow_updates"] == 2

    # The user's weights path loaded exactly the saved parameters.
    model, _, _ = load_raft("raft_small", None)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    # Independent computation of one pair: torchvision's own transforms, replicate padding to
    # 128 x 128 (RAFT's minimum), centred; the stage stored the crop, in float16.
    decoded = torch.from_numpy(read_video(tmp_path / "a.mp4")).permute(0, 3, 1, 2)
    img1, img2 = Raft_Small_Weights.DEFAULT.transforms()(decoded[1:2], decoded[2:3])
    pad = (22, 22, 34, 34)
    img1 = torch.nn.functional.pad(img1, pad, mode="replicate")
    img2 = torch.nn.functional.pad(img2, pad, mode="replicate")
    with torch.inference_mode():
        direct = model(img1, img2, num_flow_updates=2)[-1][0, :, 34:94, 22:106].numpy()
    scale = np.abs(direct).max()
    np.testing.assert_allclose(flow[1, 0], direct, atol=1e-3 * scale + 1e-3)
    # Batching does not change results: the same pair computed alone.
    backend = RaftBackend("raft_small", model, "x", None, num_flow_updates=2, batch_size=1)
    alone = backend.compute_pairs(read_video(tmp_path / "a.mp4"), np.array([[1, 2]]))[0]
    np.testing.assert_allclose(alone, direct, atol=1e-4 * scale + 1e-5)

    # An explicit checkpoint path gives the same stored flow as the hub file.
    explicit = {**options, "weights": str(hub_file)}
    shard.iloc[:1].to_csv(tmp_path / "a.csv", index=False)
    run_flow(tmp_path / "a.csv", tmp_path / "g.h5", tmp_path / "fail.csv", explicit, "cpu")
    np.testing.assert_array_equal(read_flow(tmp_path / "g.h5", "a")[0], flow)
    assert flow_attrs(tmp_path / "g.h5")["weights"] == str(hub_file)


def test_missing_raft_weights_name_the_file_and_the_hub_folder(tmp_path, monkeypatch):
    from torchvision.models.optical_flow import Raft_Large_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    write_shard_csv(tmp_path / "s.csv", [])
    with pytest.raises(MissingWeightsError) as info:
        run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "x.csv", {}, "cpu")
    message = str(info.value)
    expected = hub_checkpoint_path(Raft_Large_Weights.DEFAULT.url)
    assert expected.name in message and str(expected.parent) in message
    assert not (tmp_path / "f.h5").exists()
    with pytest.raises(MissingWeightsError, match="mine.pth"):
        load_raft("raft_small", str(tmp_path / "mine.pth"))
    # A torchvision weights name is looked up in the hub cache too, never downloaded.
    named = hub_checkpoint_path(Raft_Large_Weights.C_T_V1.url)
    with pytest.raises(MissingWeightsError, match=named.name):
        load_raft("raft_large", "Raft_Large_Weights.C_T_V1")


# --- colour images ----------------------------------------------------------------------------


def test_flow_to_color_normalises_each_frame_by_its_own_maximum():
    rng = np.random.default_rng(6)
    small = rng.normal(0, 1, (2, 12, 16)).astype(np.float32)
    large = rng.normal(0, 50, (2, 12, 16)).astype(np.float32)
    both = flow_to_color(np.stack([small, large]))
    np.testing.assert_array_equal(both[0], flow_to_color(small))
    np.testing.assert_array_equal(both[1], flow_to_color(large))
    np.testing.assert_array_equal(flow_to_color(small.transpose(1, 2, 0)), both[0])
    assert both.shape == (2, 12, 16, 3) and both.dtype == np.uint8
    # Saturation (255 - min channel of the Middlebury wheel) = magnitude / the frame's maximum.
    for flow, image in [(small, both[0]), (large, both[1])]:
        magnitude = np.hypot(*flow)
        expected = 255 * (1 - magnitude / magnitude.max())
        np.testing.assert_allclose(image.min(axis=-1), expected, atol=1.01)


def test_all_gaps_in_one_pass_stored_losslessly_with_the_shuffle_filter(tmp_path, monkeypatch):
    import h5py

    import flowguide.flow.stage as stage
    from flowguide.flow.stage import video_flow

    rng = np.random.default_rng(3)
    frames, _ = panning_clip(rng, n_frames=8)
    write_video(tmp_path / "a.mp4", frames, fps=25, qscale=2)
    write_shard_csv(tmp_path / "s.csv", [("a", tmp_path / "a.mp4", 60, 84)])
    reads = []
    original = stage.read_video
    monkeypatch.setattr(stage, "read_video", lambda *a, **k: reads.append(a) or original(*a, **k))
    options = {"backend": "dis", "gaps": [1, -1, 2, -2], "short_side": None}
    run_flow(tmp_path / "s.csv", tmp_path / "f.h5", tmp_path / "fail.csv", options, "cpu")
    assert len(reads) == 1  # the clip is decoded once for all four gaps
    with h5py.File(tmp_path / "f.h5") as fh:
        dset = fh["videos/a/flow"]
        assert dset.shuffle and dset.compression == "gzip" and dset.chunks == (1, 4, 2, 60, 84)
        stored = dset[()]
        shuffled = dset.id.get_storage_size()
    # lossless: exactly the float16 of the backend's flow on the decoded frames
    clip = read_video(tmp_path / "a.mp4", 0, 6)  # the shard row: frames 0..5
    expected, _ = video_flow(clip, OpenCVBackend("dis"), [1, -1, 2, -2])
    np.testing.assert_array_equal(stored, expected.astype(np.float16))
    with h5py.File(tmp_path / "plain.h5", "w") as fh:
        plain = fh.create_dataset(
            "f", data=stored, chunks=(1, 4, 2, 60, 84), compression="gzip", compression_opts=4
        ).id.get_storage_size()
    assert shuffled < plain
