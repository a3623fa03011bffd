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


def _reference_masks(binary: torch.Tensor, shifts: torch.Tensor, shape) -> torch.Tensor:
    """Petsiuk et al.'s recipe written out: upsample each grid trilinearly to (g + 1) cells of
    ceil(size / g) voxels, crop at the shift."""
    cells = binary.shape[1:]
    up = [(g + 1) * math.ceil(s / g) for g, s in zip(cells, shape, strict=True)]
    smooth = torch.nn.functional.interpolate(
        binary[:, None].float(), size=up, mode="trilinear", align_corners=False
    )[:, 0]
    return torch.stack(
        [
            smooth[i, a : a + shape[0], b : b + shape[1], c : c + shape[2]]
            for i, (a, b, c) in enumerate(shifts.tolist())
        ]
    )


def test_rise_masks_equal_upsample_then_crop():
    from flowguide.explain.rise import masks_from_draws, rise_draws

    shape = (7, 20, 18)
    binary, shifts = rise_draws(6, shape, (3, 4, 5), 0.5, torch.Generator().manual_seed(3), "cpu")
    assert torch.allclose(
        masks_from_draws(binary, shifts, shape), _reference_masks(binary, shifts, shape), atol=1e-6
    )


def test_rise_map_equals_a_hand_computed_weighted_mean(planted):
    """The map is sum_i p(I * M_i + black (1 - M_i)) M_i / (N p), black computed here."""
    from flowguide.explain.rise import rise_draws

    clip, _ = planted
    model = BoxModel()
    result = explain("rise", model, clip, 1, {"batch_size": 50, "rise": {"n_samples": 120}})
    gen = torch.Generator().manual_seed(0)  # the explainer's seed; draws per batch, in order
    black = ((torch.zeros(3) - MEAN.flatten()) / STD.flatten()).view(3, 1, 1, 1)
    expected = torch.zeros(SHAPE)
    for n in (50, 50, 20):
        masks = _reference_masks(*rise_draws(n, SHAPE, (4, 7, 7), 0.5, gen, "cpu"), SHAPE)
        for m in masks:
            prob = model((black + m * (clip - black))[None]).softmax(1)[0, 1]
            expected += prob * m
    expected /= 120 * 0.5
    assert torch.allclose(result.map, expected, atol=1e-5)
    assert result.forward_passes == 120 and result.extras["batches"] == 3


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
    calls = []
    model_fn = ModuleFn(model, lambda m, x: calls.append(x.shape[0]) or forward_clip(m, x, 4))
    clip = torch.randn(3, 8, 32, 32)
    result = explain("swag_v", model_fn, clip, 2, {"swag_v": {"n_segments": 16}})
    assert result.map.shape == (8, 32, 32) and torch.isfinite(result.map).all()
    assert 1 < result.map.unique().numel() <= result.extras["n_features"]
    assert result.forward_passes == sum(calls) == 1 and result.backward_passes == 1
    assert [m.inplace for m in relus] == inplace_before


class ReluToy(nn.Module):
    """logit_1 = b . ReLU(A x) over the flattened clip (class 0 = 0): guided backprop's gradient
    is A^T [(A x > 0) * max(b, 0)], the plain gradient A^T [(A x > 0) * b]."""

    def __init__(self, n_in: int, hidden: int = 12) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.a = nn.Linear(n_in, hidden, bias=False)
        self.a.weight.data = torch.randn(hidden, n_in, generator=gen) / n_in**0.5
        self.relu = nn.ReLU()
        self.b = torch.linspace(-1.0, 1.0, hidden)
        self.calls = 0
        self.backward_calls = 0

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.calls += clips.shape[0]
        out = self.relu(self.a(clips.flatten(1))) @ self.b
        if out.requires_grad:
            out.register_hook(lambda g: setattr(self, "backward_calls", self.backward_calls + 1))
        return torch.stack([torch.zeros_like(out), out], dim=1)


def test_guided_backprop_applies_the_relu_rule():
    from flowguide.explain.swag import guided_backprop

    clip = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    model = ReluToy(clip.numel())
    grads, forward, backward = guided_backprop(model, clip, 1)
    a, x = model.a.weight.data, clip.flatten()
    active = (a @ x > 0).float()
    guided = a.T @ (active * model.b.clamp_min(0))
    plain = a.T @ (active * model.b)
    assert torch.allclose(grads.flatten(), guided, atol=1e-6)
    assert not torch.allclose(guided, plain, atol=1e-3)  # the rule changed something
    assert (forward, backward) == (model.calls, model.backward_calls) == (1, 1)


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
    expected = grad_t > 2.0 * grad_t.std()  # 002: G_t > n sigma
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
    """Identity normalisation, logit = s * mean pixel, a clip whose voxels differ: after step k
    the most relevant k/28 of the voxels are black (deletion) or the only ones shown
    (insertion), so each curve point is a sigmoid of a partial sum in relevance order. The
    brightest voxels are made the least relevant, so a wrong removal order shows."""
    gen = torch.Generator().manual_seed(4)
    bright = torch.rand(1, 7, 16, generator=gen)  # 112 voxels, 4 per step
    clip = bright.expand(3, 1, 7, 16).clone()
    relevance = -bright + 1e-3 * torch.rand(1, 7, 16, generator=gen)  # distinct values
    options = {"pixel_mean": [0.0] * 3, "pixel_std": [1.0] * 3}
    out = M.deletion_insertion(MeanModel(4.0), clip, 1, relevance, 28, 8, options)
    order = np.argsort(-relevance.flatten().numpy())  # most relevant first
    values = bright.flatten().numpy()[order]
    shown = np.concatenate([[0.0], np.cumsum(values)])[np.arange(29) * 4]  # inserted so far
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    deletion = sig(4 * (values.sum() - shown) / 112)
    insertion = sig(4 * shown / 112)
    assert np.allclose(out["deletion_curve"], deletion, atol=1e-6)
    assert np.allclose(out["insertion_curve"], insertion, atol=1e-6)
    k = np.arange(29) / 28
    assert out["deletion_auc"] == pytest.approx(np.trapezoid(deletion, k), abs=1e-6)
    assert out["insertion_auc"] == pytest.approx(np.trapezoid(insertion, k), abs=1e-6)
    reverse = sig(4 * (values.sum() - np.concatenate([[0.0], np.cumsum(values[::-1])])[::4]) / 112)
    assert not np.allclose(deletion, reverse, atol=1e-2)  # the order matters on this clip
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


def test_topshare_and_minmax_iou_by_hand():
    rel = torch.arange(8.0).reshape(1, 2, 4)  # top 25% = values 6, 7 at (1, 2), (1, 3)
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[0, 1, 1:] = True  # 3 voxels, 2 shared
    out = M.topshare_iou_dice(rel, mask, fraction=0.25)
    assert out["iou"] == pytest.approx(2 / 3) and out["dice"] == pytest.approx(4 / 5)
    # min-max scaled values i/7 >= 0.5 for 4..7: 4 voxels, 3 of them in the mask
    out = M.minmax_iou_dice(rel, mask, 0.5)
    assert out["iou"] == pytest.approx(3 / 4) and out["dice"] == pytest.approx(6 / 7)


def test_localisation_is_deterministic_under_mirroring():
    """A region-constant map with ties at every cut: the clip and its mirror image (map and mask
    flipped left-right) score the same on every localisation metric."""
    rel = torch.zeros(4, 8, 8)
    rel[:, :, :4] = 1.0  # left half tied at the top
    rel[:, 2:6, 3:5] += 0.5
    mask = torch.zeros(4, 8, 8, dtype=torch.bool)
    mask[:, 1:5, 1:3] = True
    flip = lambda x: torch.flip(x, dims=[2])  # noqa: E731
    a = M.topshare_iou_dice(rel, mask, 0.1)
    b = M.topshare_iou_dice(flip(rel), flip(mask), 0.1)
    assert a == b
    # the top 10% (26 voxels) are the 16 voxels of 1.5 and 10 of the 112 tied at 1.0: all
    # tied voxels at the cut are kept -> 128 voxels
    assert int(M.top_fraction(rel, 0.1).sum()) == int((rel >= 1.0).sum())
    for mode in M.LOC_MODES:
        for alpha in M.LOC_ALPHAS[mode][::4]:
            assert M.weak_localisation(rel, mask, mode, alpha) == M.weak_localisation(
                flip(rel), flip(mask), mode, alpha
            )
    assert M.pointing_game(rel, mask) == M.pointing_game(flip(rel), flip(mask))


def test_held_out_alpha_by_hand():
    """Three clips, three alphas: clip 0's alpha is chosen on clips 1 and 2, and so on."""
    curves = np.array([[0.6, 0.4, 0.2], [0.3, 0.7, 0.2], [0.2, 0.8, 0.9]])
    out = M.held_out_localisation(curves, (0.1, 0.2, 0.3))
    # clip 0: on clips 1, 2 alpha 0.2 has error 0 -> clip 0 at alpha 0.2: 0.4, a miss
    assert (out[0]["alpha"], out[0]["box_iou"], out[0]["hit"]) == (0.2, 0.4, 0.0)
    # clip 1: on clips 0, 2 every alpha misses once; mean IoU 0.4, 0.6, 0.55 -> alpha 0.2
    assert (out[1]["alpha"], out[1]["box_iou"], out[1]["hit"]) == (0.2, 0.7, 1.0)
    # clip 2: on clips 0, 1 alpha 0.1 and 0.2 miss once, mean IoU 0.45 vs 0.55 -> 0.2
    assert (out[2]["alpha"], out[2]["hit"]) == (0.2, 1.0)
    single = M.held_out_localisation(curves[:1], (0.1, 0.2, 0.3))
    assert math.isnan(single[0]["alpha"])  # nothing held out to choose on


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
    base = torch.tensor([[[1.0, 2.0, 3.0, -1.0]]])  # mean 1.25: voxels 2 and 3 are relevant
    sel = torch.tensor([[[0.0, 2.0, 3.0, 0.0]]])
    flow = np.zeros((1, 2, 1, 4), dtype=np.float32)
    flow[0, 0, 0, 2] = 3.0  # only the third pixel moves (3 px/frame)
    mag = M.flow_magnitude_volume(flow, 1)
    assert M.motion_precision(base, mag) == pytest.approx(1 / 2)
    assert M.motion_precision(base, mag, centre=False) == pytest.approx(1 / 3)
    kept = torch.tensor([[[False, False, True, True]]])
    assert M.motion_precision(base, mag, kept=kept) == pytest.approx(1.0)
    assert M.motion_precision(base, mag, flow_threshold=3.0) != M.motion_precision(base, mag)
    out = M.selectivity(base, sel)
    assert out["kept_fraction"] == pytest.approx(2 / 3)
    assert out["removed_fraction"] == pytest.approx(1 / 3)
    assert out["relevance_fraction"] == pytest.approx(5 / 6)
    assert M.flow_magnitude_volume(np.ones((2, 2, 1, 1)), 3)[:, 0, 0].tolist() == pytest.approx(
        [2**0.5] * 3
    )


def test_all_positive_map_is_not_scored_as_the_moving_share():
    """Uncentred, a map positive everywhere scores exactly the share of moving voxels; centred
    (002), it scores the moving share among its above-mean voxels, computed here."""
    gen = torch.Generator().manual_seed(0)
    rel = 0.1 + torch.rand(SHAPE, generator=gen)  # all positive, random
    mag = torch.zeros(SHAPE)
    mag[:, 4:12, 2:9] = 1.5  # a moving block
    moving = mag > 0
    share = moving.float().mean().item()
    assert M.motion_precision(rel, mag, centre=False) == pytest.approx(share)
    above = rel > rel.mean()
    expected = (above & moving).sum().item() / above.sum().item()
    centred = M.motion_precision(rel, mag)
    assert centred == pytest.approx(expected) and centred != pytest.approx(share, abs=1e-4)
    print(f"all-positive random map: centred precision {centred:.4f}, moving share {share:.4f}")


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
    assert counts == (4, 4, 4)  # asked for 4 per axis, gets 4
    # 16 = 3 strides + a window of ~2 strides: stride floor(16 / 5) = 3, window 16 - 9 = 7
    assert stride[1:] == (3, 3) and window[1:] == (7, 7)


@pytest.mark.parametrize("frames", [16, 32, 64])
def test_occlusion_matches_003_budget_and_covers_the_clip(frames):
    """003, Table 2: 1,183 windows (7 x 13 x 13) whatever T, at a 256 px crop; every voxel is
    covered and the last window ends at the border."""
    opts = resolve_options("occlusion", {})
    shape = (frames, 256, 256)
    window, stride, counts = occlusion_windows(shape, opts)
    assert counts == (7, 13, 13) and math.prod(counts) == 7 * 13 * 13 == 1183
    for size, w, st, n in zip(shape, window, stride, counts, strict=True):
        starts = np.arange(n) * st
        covered = np.zeros(size, bool)
        for a in starts:
            covered[a : a + w] = True
        assert covered.all() and starts[-1] + w == size and st <= w
    print(f"T={frames}: {counts} = {math.prod(counts)} windows, window {window}, stride {stride}")


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
    # LOCO's map is constant per supervoxel: no selective row (it would measure the borders)
    assert [r["explainer"] for r in rows] == ["loco", "rise", "selective_rise"]
    loco, rise, sel = rows
    assert loco["pointing"] == 1.0 and loco["metric_forward_passes"] == 58
    assert sel["forward_passes"] == rise["forward_passes"]
    grad_t = ndimage.sobel(maps["rise"].double().numpy(), axis=0, mode="nearest")
    kept = torch.from_numpy(grad_t > 1.0 * grad_t.std())  # 002's rule: G_t > n sigma
    assert torch.equal(maps["selective_rise"] != 0, kept & (maps["rise"] != 0))
    relevant = kept & (maps["rise"] > maps["rise"].mean())  # centred on the base map
    expected = (relevant & (flow_mag > 0)).sum().item() / relevant.sum().item()
    assert sel["motion_precision"] == pytest.approx(expected)
    assert sel["selectivity_kept_fraction"] == pytest.approx(
        (maps["selective_rise"] > 0).sum().item() / (maps["rise"] > 0).sum().item()
    )
    assert loco["topshare_iou"] >= 0 and "loc_curves" in loco
    assert loco["n_features"] == loco["forward_passes"] - 1  # one removal per segment + base
    summary = summarise([{**r, "vid_name": "a"} for r in rows] * 2)
    assert len(summary) == 3 and summary[0]["n_clips"] == 2
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
    assert list(scores["explainer"]) == ["swag_v", "selective_guided_backprop", "loco"]
    assert (scores["metric_forward_passes"] == 16).all() and len(summary) == 3
    assert {"loc_value_alpha", "loc_mean_hit", "loc_energy_box_iou"} <= set(scores)
    curves = pd.read_csv(tmp_path / "out" / "localisation.csv")
    assert len(curves) == 3 * (20 + 21 + 20)  # maps x alphas of the three modes
    with h5py.File(tmp_path / "out" / "maps.h5") as fh:
        assert fh["videos/v/loco"].shape == (8, 32, 32) and fh["videos/v"].attrs["target"] == 1


# --------------------------------------------------------------------------- SWAG-V supervoxels


def _independent_weighted_slic(features: np.ndarray, n_segments: int, iterations: int = 10):
    """SLIC (Achanta et al.) written from the paper with 004's D' over all centre/voxel pairs:
    grid seeds at cell centres with the seed voxel's features, a 2S search box, mean updates."""
    t, h, w, f = features.shape
    step = (t * h * w / n_segments) ** (1 / 3)
    axes = []
    for n in (t, h, w):
        cells = max(1, round(n / step))
        axes.append((np.arange(cells) + 0.5) * n / cells)
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    pos = np.stack(np.meshgrid(*map(np.arange, (t, h, w)), indexing="ij"), -1).reshape(-1, 3)
    feats = features.reshape(-1, f)
    centre_feats = feats[np.ravel_multi_index(np.floor(centres).astype(int).T, (t, h, w))]
    labels = None
    for _ in range(iterations):
        d = ((pos[:, None] - centres[None]) ** 2).sum(-1) / step**2
        d = d + ((feats[:, None] - centre_feats[None]) ** 2).sum(-1)
        d[(np.abs(pos[:, None] - centres[None]) > 2 * step).any(-1)] = np.inf
        new = d.argmin(1)
        if labels is not None:
            new = np.where(np.isinf(d.min(1)), labels, new)
            if (new == labels).all():
                break
        labels = new
        count = np.bincount(labels, minlength=len(centres))
        ok = count > 0
        for j in range(3):
            centres[ok, j] = np.bincount(labels, pos[:, j], len(centres))[ok] / count[ok]
        for j in range(f):
            centre_feats[ok, j] = np.bincount(labels, feats[:, j], len(centres))[ok] / count[ok]
    return np.unique(labels, return_inverse=True)[1].reshape(t, h, w)


def _swag_scene(seed: int = 0):
    """Pixels (T, H, W, 3) with a yellow box and a saliency with a blob and a side patch."""
    rng = np.random.default_rng(seed)
    pixels = 0.3 + 0.1 * rng.random((*SHAPE, 3))
    pixels[2:6, 3:11, 5:13] = [0.9, 0.8, 0.2]
    _, yy, xx = np.meshgrid(*map(np.arange, SHAPE), indexing="ij")
    saliency = np.exp(-((yy - 7) ** 2 + (xx - 9) ** 2) / 12.0) * (1 + 0.3 * rng.random(SHAPE))
    saliency[:, 12:, 1:5] += 0.5
    return pixels, saliency / saliency.max()


def test_weighted_slic_first_assignment_is_the_argmin_of_d_prime():
    """One pass: every voxel goes to the seed minimising D'^2 = |df|^2 + (d_s / S)^2 among the
    seeds whose 2S box holds it (computed here from 004's Eq. 3, unclipped Lab / w_c)."""
    from skimage.color import rgb2lab

    from flowguide.explain.slic import grid_seeds, weighted_slic

    pixels, saliency = _swag_scene()
    lab = rgb2lab(pixels)  # L up to 100: nothing clipped to [0, 1]
    feats = np.concatenate([lab / 20.0, 100 * saliency[..., None] / 9.0], -1)
    labels = weighted_slic(torch.from_numpy(feats), 12, iterations=1).numpy()
    seeds, step = grid_seeds(SHAPE, 12)
    seeds = seeds.numpy()
    seed_vox = np.floor(seeds).astype(int)
    pos = np.stack(np.meshgrid(*map(np.arange, SHAPE), indexing="ij"), -1)
    d_c = ((lab[..., None, :] - lab[tuple(seed_vox.T)]) ** 2).sum(-1) / 20.0**2
    d_g = (100 * (saliency[..., None] - saliency[tuple(seed_vox.T)]) / 9.0) ** 2
    d_s = ((pos[..., None, :] - seeds) ** 2).sum(-1) / step**2
    d = d_c + d_g + d_s
    d[(np.abs(pos[..., None, :] - seeds) > 2 * step).any(-1)] = np.inf
    expected = np.unique(d.argmin(-1), return_inverse=True)[1].reshape(SHAPE)
    assert np.array_equal(labels, expected)
    assert lab[..., 0].max() > 20  # the L channel would have saturated at 1 if clipped


@pytest.mark.parametrize("variant", ["I+G", "G", "I"])
def test_swag_v_map_matches_an_independent_weighted_slic(variant):
    from flowguide.explain.swag import segment_means, swag_features, swag_segments

    pixels, saliency = _swag_scene()
    ours = segment_means(saliency, swag_segments(pixels, saliency, variant, 20.0, 9.0, 24))
    feats = swag_features(pixels, saliency, variant, 20.0, 9.0)
    reference = segment_means(saliency, _independent_weighted_slic(feats, 24))
    corr = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    print(f"SWAG-V {variant}: correlation with the independent weighted SLIC {corr:.6f}")
    assert corr >= 0.99


def test_swag_v_explainer_map_matches_the_independent_slic_on_a_relu_model(planted):
    """The whole explainer (guided backprop of a ReLU model, supervoxels, means) against the
    independent SLIC run on the same saliency."""
    from skimage.color import rgb2lab

    from flowguide.explain.swag import guided_backprop

    clip, _ = planted
    model = ReluToy(clip.numel(), hidden=32)
    result = explain("swag_v", model, clip, 1, {"swag_v": {"n_segments": 24}})
    grads, _, _ = guided_backprop(model, clip, 1)
    saliency = grads.abs().amax(0)
    saliency = (saliency / saliency.max()).double().numpy()
    pixels = (clip * STD[0] + MEAN[0]).permute(1, 2, 3, 0).double().numpy()
    feats = np.concatenate([rgb2lab(pixels.clip(0, 1)) / 20.0, 100 * saliency[..., None] / 9.0], -1)
    labels = _independent_weighted_slic(feats, 24)
    means = np.bincount(labels.ravel(), saliency.ravel()) / np.bincount(labels.ravel())
    corr = np.corrcoef(result.map.numpy().ravel(), means[labels].ravel())[0, 1]
    print(f"SWAG-V I+G on a ReLU model: correlation with the independent weighted SLIC {corr:.6f}")
    assert corr >= 0.99
    assert torch.allclose(result.extras["saliency"], torch.from_numpy(saliency).float(), atol=1e-6)


# --------------------------------------------------------------------------- sharing, selective


def test_segmentation_is_shared_between_explainers(planted, monkeypatch):
    from flowguide.explain import runner

    clip, _ = planted
    calls = []
    real = runner.segment_clip
    monkeypatch.setattr(runner, "segment_clip", lambda c, o: calls.append(1) or real(c, o))
    opts = {**FAST_OPTIONS, "metrics": {"faithfulness": False}}
    rows, maps = explain_and_score(BoxModel(), clip, 1, ["loco", "univariate", "rise"], opts)
    assert len(calls) == 1  # one SLIC for both
    alone = explain("loco", BoxModel(), clip, 1, FAST_OPTIONS)
    assert torch.equal(maps["loco"], alone.map)
    assert rows[0]["segmentation_seconds"] == rows[1]["segmentation_seconds"]
    assert "segmentation_seconds" not in rows[2]


def test_selective_rules_rising_and_magnitude():
    rel = torch.zeros(SHAPE)
    rel[4:, 5:9, 5:9] = 3.0  # appears at frame 4
    rel[:4, 10:14, 10:14] = 3.0  # vanishes at frame 4
    grad_t = ndimage.sobel(rel.double().numpy(), axis=0, mode="nearest")
    sigma = grad_t.std()
    rising = selective_relevance(rel, 1.0, "rising")
    both = selective_relevance(rel, 1.0, "magnitude")
    assert np.array_equal(rising.kept.numpy(), grad_t > sigma)
    assert np.array_equal(both.kept.numpy(), np.abs(grad_t) > sigma)
    assert rising.kept[:, 10:14, 10:14].sum() == 0 and both.kept[:, 10:14, 10:14].any()
    with pytest.raises(ValueError, match="rule"):
        selective_relevance(rel, 1.0, "up")
