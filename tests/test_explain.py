"""Post-hoc explainers (papers 002-004) and their metrics, on tiny clips and hand-made models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from flowguide.explain import metrics as M
from flowguide.explain.core import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD, ModuleFn, black_fill
from flowguide.explain.explainers import (
    EXPLAINERS,
    explain,
    external_explainer,
    occlusion_windows,
    register_explainer,
    resolve_options,
)
from flowguide.explain.linear import weighted_least_squares
from flowguide.explain.runner import explain_and_score, summarise
from flowguide.explain.segmentation import grid_segments
from flowguide.explain.selective import selective_relevance

SHAPE = (8, 16, 16)  # T, H, W
BOX = (slice(2, 6), slice(4, 10), slice(6, 12))
MEAN = torch.tensor(DEFAULT_PIXEL_MEAN).view(1, 3, 1, 1, 1)
STD = torch.tensor(DEFAULT_PIXEL_STD).view(1, 3, 1, 1, 1)


class BoxModel(nn.Module):
    """Class 1's logit rises with the mean pixel brightness inside a fixed 3D box; class 0 falls.

    The probability is kept off saturation (about 0.94 on the test clip, 0.03 with the box black)
    so that every removal changes it.
    """

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        pixels = clips * STD + MEAN
        brightness = pixels[:, :, BOX[0], BOX[1], BOX[2]].mean(dim=(1, 2, 3, 4))
        z = 10 * (brightness - 0.35)
        return torch.stack([-z / 2, z / 2], dim=1)


@pytest.fixture(scope="module")
def planted() -> tuple[torch.Tensor, torch.Tensor]:
    """A textured dark clip with a bright yellow box where the model looks, and the box mask."""
    gen = torch.Generator().manual_seed(0)
    pixels = 0.3 + 0.1 * torch.rand((3, *SHAPE), generator=gen)
    pixels[:, BOX[0], BOX[1], BOX[2]] = torch.tensor([0.9, 0.8, 0.2]).view(3, 1, 1, 1)
    clip = (pixels - MEAN[0]) / STD[0]
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[BOX] = True
    return clip, mask


FAST_OPTIONS = {
    "batch_size": 32,
    "segmentation": {"method": "slic", "n_segments": 64, "compactness": 10.0},
    "lime": {"n_samples": 128},
    "kernel_shap": {"n_samples": 128},
    "rise": {"n_samples": 256},
    "occlusion": {"positions": [4, 4, 4]},
    "swag_v": {"n_segments": 32},
}


def expected_passes(name: str, result, clip: torch.Tensor) -> int:
    opts = resolve_options(name, FAST_OPTIONS)
    if name in ("lime", "kernel_shap", "rise"):
        return opts["n_samples"]
    if name in ("loco", "univariate"):
        return _n_segments(clip) + 1
    if name == "occlusion":
        return math.prod(occlusion_windows(tuple(clip.shape[1:]), opts)[2]) + 1
    return 1  # swag_v: one forward and one backward


@pytest.mark.parametrize(
    "name", ["lime", "kernel_shap", "rise", "loco", "univariate", "occlusion", "swag_v"]
)
def test_explainer_finds_the_planted_box(name, planted):
    clip, mask = planted
    model = BoxModel()
    result = explain(name, model, clip, 1, FAST_OPTIONS)
    assert result.map.shape == SHAPE and result.map.dtype == torch.float32
    assert M.pointing_game(result.map, mask) == 1.0
    assert result.map[mask].mean() > result.map[~mask].mean()
    scores = M.deletion_insertion(model, clip, 1, result.map, steps=28, batch_size=32)
    assert scores["deletion_auc"] < scores["insertion_auc"]
    assert len(scores["deletion_curve"]) == 29 and scores["forward_passes"] == 58
    assert result.forward_passes == expected_passes(name, result, clip)


def _n_segments(clip: torch.Tensor) -> int:
    from flowguide.explain.segmentation import segment_clip

    return int(segment_clip(clip, resolve_options("loco", FAST_OPTIONS)).max()) + 1


def test_loco_and_univariate_equal_hand_removals(planted):
    """On a grid, LOCO's and univariate's relevance of a cell equal drops computed here."""
    clip, _ = planted
    model = BoxModel()
    opts = {**FAST_OPTIONS, "segmentation": {"method": "grid", "grid": [2, 2, 2]}}
    segments = grid_segments(SHAPE, (2, 2, 2))
    fill = black_fill(clip, {})
    prob = lambda x: model(x[None]).softmax(1)[0, 1].item()  # noqa: E731
    loco = explain("loco", model, clip, 1, opts)
    uni = explain("univariate", model, clip, 1, opts)
    assert loco.forward_passes == 9 and uni.forward_passes == 9
    black = fill.expand_as(clip)
    for k in range(8):
        cell = segments == k
        removed = torch.where(cell, black, clip)
        kept = torch.where(cell, clip, black)
        voxel = tuple(int(i[0]) for i in torch.nonzero(cell, as_tuple=True))
        assert loco.map[voxel].item() == pytest.approx(prob(clip) - prob(removed), abs=1e-6)
        assert uni.map[voxel].item() == pytest.approx(prob(kept) - prob(black), abs=1e-6)


def test_rise_batches_and_black_fill(planted):
    clip, _ = planted
    result = explain("rise", BoxModel(), clip, 1, {"batch_size": 50, "rise": {"n_samples": 120}})
    assert result.forward_passes == 120 and result.extras["batches"] == 3
    pixel_black = black_fill(clip, {}) * STD[0] + MEAN[0]
    assert torch.allclose(pixel_black, torch.zeros(3, 1, 1, 1), atol=1e-6)


def test_external_explainer_registry(planted):
    clip, mask = planted

    def box_map(model_fn, clip, target, options):
        return mask.float() * options["scale"]

    register_explainer("planted", external_explainer(box_map, 1, 1), {"scale": 2.0})
    try:
        result = explain("planted", BoxModel(), clip, 1, {})
        assert result.map.max() == 2.0 and (result.forward_passes, result.backward_passes) == (1, 1)
    finally:
        EXPLAINERS.pop("planted")


def test_swag_v_on_tiny_slowfast_restores_inplace_relus():
    from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip

    torch.manual_seed(0)
    model = build_slowfast(SlowFastSpec(num_classes=3, depth=18, stem_width=16, dropout=0.0)).eval()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for m in relus[::2]:  # captum's backward hooks reject in-place ReLUs: they are switched off
        m.inplace = True
    inplace_before = [m.inplace for m in relus]
    model_fn = ModuleFn(model, lambda m, x: forward_clip(m, x, 4))
    clip = torch.randn(3, 8, 32, 32)
    result = explain("swag_v", model_fn, clip, 2, {"swag_v": {"n_segments": 16}})
    assert result.map.shape == (8, 32, 32) and torch.isfinite(result.map).all()
    assert 1 < result.map.unique().numel() <= result.extras["n_features"]
    assert (result.forward_passes, result.backward_passes) == (1, 1)
    assert [m.inplace for m in relus] == inplace_before


# --------------------------------------------------------------------------- selective relevance


def test_selective_removes_a_map_constant_over_time():
    frame = torch.rand(16, 16)
    constant = frame.expand(*SHAPE).clone()
    result = selective_relevance(constant, n_std=4.0)
    assert not result.kept.any() and (result.map == 0).all()


def test_selective_matches_scipy_sobel_threshold():
    gen = torch.Generator().manual_seed(1)
    rel = torch.rand(SHAPE, generator=gen) * 0.1
    rel[4:, 5:9, 5:9] += 3.0  # relevance that appears half way through
    grad_t = ndimage.sobel(rel.double().numpy(), axis=0, mode="nearest")
    expected = np.abs(grad_t) > 2.0 * grad_t.std()
    result = selective_relevance(rel, n_std=2.0)
    assert np.array_equal(result.kept.numpy(), expected)
    assert result.kept[3:5, 5:9, 5:9].all() and not result.kept[0].any()
    assert torch.equal(result.map, torch.where(result.kept, rel, torch.zeros(())))


# --------------------------------------------------------------------------- metrics by hand


def test_trapezoid_auc():
    assert M.trapezoid_auc([0.0, 1.0]) == pytest.approx(0.5)
    assert M.trapezoid_auc([1.0, 1.0, 0.0]) == pytest.approx(0.75)
    assert M.step_counts(112, 28)[:3] == [0, 4, 8] and M.step_counts(10, 4) == [0, 2, 5, 7, 10]


class MeanModel(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        z = self.scale * clips.mean(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_deletion_insertion_against_closed_form():
    """All-white clip, identity normalisation, logit = s * mean: after k of 28 steps the mean is
    1 - k/28 (deletion) or k/28 (insertion), so the curves are sigmoids."""
    clip = torch.ones(3, 1, 7, 16)  # 112 voxels, 4 per step
    options = {"pixel_mean": [0.0] * 3, "pixel_std": [1.0] * 3}
    relevance = torch.rand(1, 7, 16)
    out = M.deletion_insertion(MeanModel(4.0), clip, 1, relevance, 28, 8, options)
    k = np.arange(29) / 28
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert np.allclose(out["deletion_curve"], sig(4 * (1 - k)), atol=1e-6)
    assert np.allclose(out["insertion_curve"], sig(4 * k), atol=1e-6)
    assert out["deletion_auc"] == pytest.approx(np.trapezoid(sig(4 * (1 - k)), k), abs=1e-6)
    assert out["forward_passes"] == 58


def test_relevance_rank_orders_by_value_and_breaks_ties():
    rel = torch.tensor([[[0.1, 0.9], [0.5, 0.5]]])
    rank = M.relevance_rank(rel, seed=3)
    assert rank[0, 0, 1] == 0 and rank[0, 0, 0] == 3
    assert {int(rank[0, 1, 0]), int(rank[0, 1, 1])} == {1, 2}


def test_pointing_game_by_hand():
    rel = torch.zeros(2, 2, 2)
    rel[0, 0, 0], rel[1, 1, 1] = 1.0, 0.5
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[1, 1, 1] = True
    assert M.pointing_game(rel, mask) == 0.0  # the clip's maximum is at (0, 0, 0)
    mask[0, 0, 0] = True
    assert M.pointing_game(rel, mask) == 1.0
    mask[0, 0, 0] = False
    assert M.pointing_game(rel, mask, per_frame=True) == 1.0  # frame 0 has no mask
    mask[0, 1, 1] = True
    assert M.pointing_game(rel, mask, per_frame=True) == 0.5
    tie = torch.ones(1, 2, 2)
    assert M.pointing_game(tie, torch.tensor([[[True, True], [True, False]]])) == 1.0
    assert M.pointing_game(tie, torch.tensor([[[True, False], [False, False]]])) == 0.0
    assert math.isnan(M.pointing_game(rel, torch.zeros(2, 2, 2, dtype=torch.bool)))


def test_topk_iou_dice_by_hand():
    rel = torch.arange(8.0).reshape(1, 2, 4)  # top 25% = values 6, 7 at (1, 2), (1, 3)
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[0, 1, 1:] = True  # 3 voxels, 2 shared
    out = M.topk_iou_dice(rel, mask, fraction=0.25)
    assert out["iou"] == pytest.approx(2 / 3) and out["dice"] == pytest.approx(4 / 5)


def test_boxes_and_weak_localisation_by_hand():
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[0:2, 0:2] = True
    b = torch.zeros(4, 4, dtype=torch.bool)
    b[1:3, 1:3] = True
    assert M.bounding_box(a) == (0, 0, 1, 1) and M.bounding_box(torch.zeros(2, 2)) is None
    assert M.box_iou(M.bounding_box(a), M.bounding_box(b)) == pytest.approx(1 / 7)
    rel = torch.zeros(2, 4, 4)
    rel[0][a], rel[1][b] = 1.0, 1.0
    mask = torch.stack([a, a])
    out = M.weak_localisation(rel, mask, mode="value", alpha=0.5)
    assert out["box_iou"] == pytest.approx((1 + 1 / 7) / 2) and out["hit"] == 1.0
    out = M.weak_localisation(rel, torch.stack([b, a]), mode="value", alpha=0.5)
    assert out["box_iou"] == pytest.approx(1 / 7) and out["hit"] == 0.0


def test_threshold_modes_by_hand():
    rel = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])  # mean 2.5, total 10
    assert M.threshold_map(rel, "mean").flatten().tolist() == [True, True, False, False]
    assert M.threshold_map(rel, "value", 0.5).flatten().tolist() == [True, True, False, False]
    # 4 + 3 = 7 >= 0.6 * 10 but 4 < 6: two voxels hold 60% of the energy
    assert M.threshold_map(rel, "energy", 0.6).flatten().tolist() == [True, True, False, False]
    assert M.threshold_map(rel, "energy", 0.3).flatten().tolist() == [True, False, False, False]


def test_entropy_by_hand():
    frame = torch.tensor([[0.0, 1.0], [0.5, 0.5]])  # bins 0, 9, 5, 5: p = 1/4, 1/4, 1/2
    assert M.map_entropy(frame[None]) == pytest.approx(1.5)
    assert M.map_entropy(torch.stack([frame, torch.ones(2, 2)])) == pytest.approx(0.75)


def test_motion_precision_and_selectivity_by_hand():
    base = torch.tensor([[[1.0, 2.0, 3.0, -1.0]]])
    sel = torch.tensor([[[0.0, 2.0, 3.0, 0.0]]])
    flow = np.zeros((1, 2, 1, 4), dtype=np.float32)
    flow[0, 0, 0, 2] = 3.0  # only the third pixel moves (3 px/frame)
    mag = M.flow_magnitude_volume(flow, 1)
    assert M.motion_precision(base, mag, 1.0) == pytest.approx(1 / 3)
    assert M.motion_precision(sel, mag, 1.0) == pytest.approx(1 / 2)
    out = M.selectivity(base, sel)
    assert out["kept_fraction"] == pytest.approx(2 / 3)
    assert out["removed_fraction"] == pytest.approx(1 / 3)
    assert out["relevance_fraction"] == pytest.approx(5 / 6)
    assert M.flow_magnitude_volume(np.ones((2, 2, 1, 1)), 3)[:, 0, 0].tolist() == pytest.approx(
        [2**0.5] * 3
    )


def test_weighted_least_squares_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (40, 5)).astype(float)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7 + 0.01 * rng.standard_normal(40)
    w = rng.random(40)
    coef, intercept = weighted_least_squares(*(torch.tensor(v) for v in (x, y, w)))
    design = np.hstack([x, np.ones((40, 1))]) * np.sqrt(w)[:, None]
    ref = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)[0]
    assert np.allclose(coef.numpy(), ref[:5], atol=1e-8) and intercept.item() == pytest.approx(
        ref[5]
    )


def test_grid_segments_and_occlusion_windows():
    seg = grid_segments((8, 14, 14), (4, 7, 7))
    assert seg.unique().numel() == 196 and (torch.bincount(seg.flatten()) == 8).all()
    window, stride, counts = occlusion_windows(
        (8, 16, 16), {"positions": (4, 4, 4), "window_scale": 2.0}
    )
    assert window == (4, 8, 8) and stride == (1, 2, 2) and counts == (5, 5, 5)


def test_explain_and_score_rows(planted):
    clip, mask = planted
    flow_mag = torch.zeros(SHAPE)
    flow_mag[BOX] = 2.0
    rows, maps = explain_and_score(
        BoxModel(),
        clip,
        1,
        ["loco", "rise"],
        {**FAST_OPTIONS, "selective": {"n_std": 1.0}},
        mask=mask,
        flow_magnitude=flow_mag,
    )
    assert [r["explainer"] for r in rows] == ["loco", "selective_loco", "rise", "selective_rise"]
    loco, sel = rows[0], rows[1]
    assert loco["pointing"] == 1.0 and loco["metric_forward_passes"] == 58
    assert sel["forward_passes"] == loco["forward_passes"]
    kept = maps["selective_loco"] > 0
    expected = (kept & (flow_mag > 1.0)).sum().item() / max(1, kept.sum().item())
    assert sel["motion_precision"] == pytest.approx(expected)
    assert sel["selectivity_kept_fraction"] == pytest.approx(
        kept.sum().item() / (maps["loco"] > 0).sum().item()
    )
    summary = summarise([{**r, "vid_name": "a"} for r in rows] * 2)
    assert len(summary) == 4 and summary[0]["n_clips"] == 2
    assert summary[0]["deletion_auc"] == pytest.approx(loco["deletion_auc"])


def test_explain_stage_end_to_end(tmp_path):
    """The stage on a written video, mask shard and tiny checkpoint: one row per map, maps.h5."""
    import h5py
    import pandas as pd

    from flowguide.explain.stage import run_explain
    from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast
    from flowguide.utils.h5 import create_video_group, write_masks, write_shard
    from flowguide.utils.video import write_video

    frames = (np.random.default_rng(0).random((10, 40, 48, 3)) * 255).astype(np.uint8)
    write_video(tmp_path / "v.mp4", frames, 25, 4)
    masks = np.zeros((9, 40, 48), bool)  # the clip's frames 1..9 (mask index 0 = start_frame)
    masks[:, 10:30, 15:35] = True
    (tmp_path / "masks").mkdir()
    with write_shard(tmp_path / "masks" / "s0.h5") as fh:
        write_masks(create_video_group(fh, "v"), "mask", masks, {})
    row = dict(
        vid_name="v",
        split="test",
        label=1,
        path=str(tmp_path / "v.mp4"),
        start_frame=1,
        end_frame=9,
        n_frames=9,
        video_frames=10,
        fps=25,
        width=48,
        height=40,
        shard="s0",
    )
    pd.DataFrame([row]).to_csv(tmp_path / "manifest.csv", index=False)
    spec = SlowFastSpec(num_classes=3, depth=18, stem_width=16)
    state = {
        "model_spec": {f.name: getattr(spec, f.name) for f in spec.__dataclass_fields__.values()},
        "model": build_slowfast(spec).state_dict(),
        "alpha": 4,
        "T": 8,
        "num_classes": 3,
        "method": "vanilla",
        "transform": {
            "eval_short_side": 32,
            "eval_crop": 32,
            "mean": [0.45] * 3,
            "std": [0.225] * 3,
        },
    }
    torch.save(state, tmp_path / "ck.pt")
    opts = {
        "n_clips": 1,
        "explainers": ["swag_v", "loco"],
        "segmentation": {"n_segments": 20},
        "metrics": {"steps": 7},
    }
    summary = run_explain(
        tmp_path / "ck.pt",
        tmp_path / "manifest.csv",
        tmp_path / "masks",
        None,
        tmp_path / "out",
        opts,
        "cpu",
        fail_fast=True,
    )
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert list(scores["explainer"]) == ["swag_v", "selective_swag_v", "loco", "selective_loco"]
    assert (scores["metric_forward_passes"] == 16).all() and len(summary) == 4
    with h5py.File(tmp_path / "out" / "maps.h5") as fh:
        assert fh["videos/v/loco"].shape == (8, 32, 32) and fh["videos/v"].attrs["target"] == 1
