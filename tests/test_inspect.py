"""Inspection: listing a shard, and the Figure 4.2 PNG (exact pixel size, real content)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flowguide.cli import main
from flowguide.inspect.render import HEADER_PX, figure_size, label_palette
from flowguide.utils.h5 import (
    create_video_group,
    set_attrs,
    write_frames_dataset,
    write_masks,
    write_shard,
)
from flowguide.utils.video import write_video

H, W, T = 24, 32, 5


def make_results(tmp_path):
    """A video, and flow / candidates / masks shards of it in results/ layout."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (T, H, W, 3)).astype(np.uint8)
    write_video(tmp_path / "v.mp4", frames, fps=10, qscale=2)
    (tmp_path / "flow").mkdir()
    (tmp_path / "candidates").mkdir()
    (tmp_path / "masks").mkdir()
    flow = np.zeros((T, 1, 2, H, W), np.float32)
    flow[:, 0, 0] = 2.0
    attrs = {
        "start_frame": 0,
        "n_frames": T,
        "frame_shape": np.array([H, W]),
        "source_path": str(tmp_path / "v.mp4"),
    }
    with write_shard(tmp_path / "flow" / "train0000.h5", {"stage": "flow"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, attrs)
        write_frames_dataset(g, "flow", flow.astype(np.float16), {})
        write_frames_dataset(g, "used_gap", np.ones((T, 1), np.int16), {})
    labels = np.zeros((T, H, W), np.uint8)
    labels[:, 4:12, 10:20] = 1
    labels[:, 14:20, 2:8] = 2
    with write_shard(tmp_path / "candidates" / "train0000.h5", {"stage": "segment"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, attrs)
        write_frames_dataset(g, "labels", labels, {})
        scores = np.full((T, 10), np.nan, np.float32)
        scores[:, :2] = [0.9, 0.5]
        write_frames_dataset(g, "scores", scores, {})
    with write_shard(tmp_path / "masks" / "train0000.h5", {"stage": "select"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, {**attrs, "coverage": float((labels == 1).mean()), "empty_ratio": 0.0})
        write_masks(g, "mask", labels == 1)
    return labels


def test_inspect_renders_figure_of_expected_size_and_content(tmp_path):
    labels = make_results(tmp_path)
    out = tmp_path / "fig.png"
    rc = main(
        [
            "inspect",
            "--results",
            str(tmp_path),
            "--shard",
            "train0000",
            "--video",
            "v",
            "--frames",
            "0,2,4",
            "--scale",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    height, width = figure_size((H, W), 4, 3, 2, legend=True)
    assert img.shape == (height, width, 3)
    # candidates column (third): label 1 and 2 colours where the label map has them
    gap = 2
    x0 = 2 * (2 * W + gap)
    panel = img[HEADER_PX : HEADER_PX + 2 * H, x0 : x0 + 2 * W]
    palette = label_palette()
    up = labels[0].repeat(2, 0).repeat(2, 1)
    for k in (1, 2):
        inner = panel[up == k]
        assert (np.abs(inner.astype(int) - palette[k]).max(1) <= 2).mean() > 0.9
    # mask column (fourth): white exactly on label 1
    x0 = 3 * (2 * W + gap)
    mask_panel = img[HEADER_PX : HEADER_PX + 2 * H, x0 : x0 + 2 * W].mean(-1)
    assert (mask_panel[up == 1] > 250).mean() > 0.95 and (mask_panel[up != 1] < 5).mean() > 0.95
    # the RGB column is the video frame (lossy: close, not exact) - non-trivial content
    assert img[HEADER_PX : HEADER_PX + 2 * H, : 2 * W].std() > 30


def test_inspect_animation_and_listing(tmp_path, capsys):
    make_results(tmp_path)
    gif = tmp_path / "a.gif"
    rc = main(
        [
            "inspect",
            "--results",
            str(tmp_path),
            "--shard",
            "train0000",
            "--video",
            "v",
            "--scale",
            "1",
            "--animation",
            str(gif),
        ]
    )
    assert rc == 0
    with Image.open(gif) as im:
        assert im.n_frames == T
        assert im.size == (4 * W + 3 * 2, H)
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "masks" / "train0000.h5")]) == 0
    listing = capsys.readouterr().out
    assert "coverage" in listing and f"{8 * 10 / (H * W):.4f}" in listing  # label 1: 8x10 px
    assert main(["inspect", str(tmp_path / "candidates" / "train0000.h5")]) == 0
    assert "mean_candidates" in capsys.readouterr().out


def test_listing_into_a_closed_pipe_ends_quietly(tmp_path):
    """`flowguide inspect shard.h5 | head`: the reader leaves early; no traceback."""
    make_results(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowguide", "inspect", str(tmp_path / "masks" / "train0000.h5")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_figure_marks_band_legend_chosen_label_and_backward_flow(tmp_path):
    import h5py

    from flowguide.inspect.load import load_panels, results_paths
    from flowguide.inspect.render import BAND_COLOUR, compose_grid

    make_results(tmp_path)
    with h5py.File(tmp_path / "flow" / "train0000.h5", "a") as fh:
        fh["videos/v/used_gap"][
            T - 1
        ] = -1  # the last frame's flow goes back, as the flow stage does
    panels = load_panels(results_paths(tmp_path, "train0000"), "v", [0, T - 1])
    assert panels.legend == [1, 2] and panels.band == (10, 21)  # 11 = round(32 / 3) columns
    flow_title = next(t for t in panels.columns if t.startswith("flow"))
    assert flow_title == "flow (|f| / 2.0 px)"  # make_results' flow is 2 px everywhere
    assert panels.notes[flow_title] == ["", "backward flow"]
    grid = compose_grid(panels, 1)
    x0 = 2 * (W + 2)  # third column: candidates
    col = grid[HEADER_PX : HEADER_PX + H, x0 + 10]
    assert (col == BAND_COLOUR).all(1).mean() == pytest.approx(0.5, abs=0.1)  # dashed
    assert grid.shape[0] == figure_size((H, W), 4, 2, 1, legend=True)[0]


def test_flow_scale_is_shared_by_the_rows():
    from flowguide.utils.flowviz import flow_to_color, max_magnitude

    flow = np.zeros((2, 2, 4, 4), np.float32)
    flow[0, 0] = 1.0
    flow[1, 0] = 4.0
    assert max_magnitude(flow) == 4.0
    per_frame = flow_to_color(flow)
    shared = flow_to_color(flow, per_frame=False)
    np.testing.assert_array_equal(per_frame[0], per_frame[1])  # each normalised to its own max
    assert shared[0].astype(int).sum() > shared[1].astype(int).sum()  # 1 px is paler than 4 px


def test_relocated_results_inspected_from_another_folder(tmp_path, monkeypatch):
    """Candidates and masks written by the stages store the video relative to the dataset
    root; copy results + dataset elsewhere, delete the originals, render from a third folder."""
    import shutil

    from flowguide.select.stage import run_select
    from flowguide.utils.provenance import dataset_attrs

    work = tmp_path / "work"
    data, res = work / "data", work / "results"
    (data / "rgb").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (T, H, W, 3)).astype(np.uint8)
    write_video(data / "rgb" / "v.mp4", frames, fps=10, qscale=2)
    for sub in ("flow", "candidates", "masks"):
        (res / sub).mkdir(parents=True)
    attrs = {"start_frame": 0, "n_frames": T, "frame_shape": np.array([H, W])}
    with write_shard(res / "flow" / "train0000.h5", {"stage": "flow"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, {**attrs, "source_path": "data/rgb/v.mp4"})  # relative to work/
        write_frames_dataset(g, "flow", np.zeros((T, 1, 2, H, W), np.float16), {})
        write_frames_dataset(g, "used_gap", np.ones((T, 1), np.int16), {})
    out = res / "candidates" / "train0000.h5"
    labels = np.zeros((T, H, W), np.uint8)
    labels[:, 4:12, 10:20] = 1
    with write_shard(out, {"stage": "segment"}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, {**attrs, **dataset_attrs(data / "rgb" / "v.mp4", data, out)})
        write_frames_dataset(g, "labels", labels, {})
        write_frames_dataset(g, "scores", np.zeros((T, 10), np.float32), {})
    run_select(
        out, res / "masks" / "train0000.h5", res / "f.csv", {"appearance": {"enabled": False}}
    )
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(work, moved)
    shutil.rmtree(work)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    png = other / "fig.png"
    rc = main(["inspect", "--results", str(moved / "results"), "--shard", "train0000",
               "--video", "v", "--frames", "0", "--scale", "1", "--out", str(png)])  # fmt: skip
    assert rc == 0
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == figure_size((H, W), 4, 1, 1, legend=True)  # RGB column is there
    assert img[HEADER_PX : HEADER_PX + H, :W].std() > 30  # and holds the video frame
