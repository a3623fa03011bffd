"""GradCAM for SlowFast: agreement with captum's LayerGradCam per pathway, normalisation,
upsampling, single-forward capture and differentiability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam

from flowguide.modeling.gradcam import (
    PathwayRecorder,
    gradcam_from_activations,
    pathway_blocks,
    pathway_gradcam,
    target_scores,
)
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip

ALPHA = 4


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_slowfast(SlowFastSpec(5, depth=18, stem_width=16, dropout=0.0)).double().eval()


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    # 64 px so the last stage is 2x2 in space: the maps vary over space as well as time.
    return torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1)).double()


def captum_maps(model, clip, target) -> list[torch.Tensor]:
    maps = []
    for block in pathway_blocks(model):
        cam = LayerGradCam(lambda c: forward_clip(model, c, ALPHA), block)
        maps.append(cam.attribute(clip, target=target, relu_attributions=True).squeeze(1))
    return maps


def test_raw_gradcam_matches_captum_per_pathway(model, clip):
    target = torch.tensor([1, 3])
    with PathwayRecorder(model) as rec:
        logits = forward_clip(model, clip, ALPHA)
        acts = rec.take()
    ours = gradcam_from_activations(target_scores(logits, target), acts)
    ref = captum_maps(model, clip, target)
    assert ours[0].shape == (2, 8 // ALPHA, 2, 2)
    assert ours[1].shape == (2, 8, 2, 2)
    for mine, theirs in zip(ours, ref, strict=True):
        assert theirs.abs().max() > 0  # a comparison of two all-zero maps would prove nothing
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-12)


def test_normalised_upsampled_maps_match_captum(model, clip):
    target = torch.tensor([0, 4])
    ref = captum_maps(model, clip, target)
    sizes = [(2, 64, 64), (8, 64, 64)]
    with PathwayRecorder(model) as rec:
        logits = forward_clip(model, clip, ALPHA)
        maps = pathway_gradcam(logits, target, rec.take(), sizes, create_graph=False, eps=0.0)
    for cam, raw, size in zip(maps, ref, sizes, strict=True):
        assert cam.shape == (2, *size)
        up = torch.nn.functional.interpolate(raw.unsqueeze(1), size=size, mode="trilinear")
        up = up.squeeze(1)
        expected = up / up.flatten(1).amax(1).view(-1, 1, 1, 1)
        torch.testing.assert_close(cam, expected)
        np.testing.assert_allclose(cam.detach().flatten(1).amax(1).numpy(), 1.0)
        assert cam.min() >= 0


def test_trilinear_upsampling_on_hand_values():
    # A 2-frame, 1x2 map, upsampled to 4 frames x 1 x 4 (align_corners=False): the corner values
    # are kept and the interior is linear, per axis.
    from flowguide.modeling.gradcam import upsample_cam

    cam = torch.tensor([[[[0.0, 4.0]], [[8.0, 12.0]]]])  # (1, t=2, h=1, w=2)
    out = upsample_cam(cam, (4, 1, 4))[0, :, 0, :]
    w_axis = np.array([0.0, 1.0, 3.0, 4.0])  # 0 .. 4 over 4 columns, clamped at the edges
    t_axis = np.array([0.0, 2.0, 6.0, 8.0])
    expected = t_axis[:, None] + w_axis[None, :]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_recorder_needs_a_forward_and_is_removable(model, clip):
    rec = PathwayRecorder(model)
    with pytest.raises(RuntimeError):
        rec.take()
    forward_clip(model, clip[:1], ALPHA)
    assert [a.shape[2] for a in rec.take()] == [2, 8]
    rec.remove()
    forward_clip(model, clip[:1], ALPHA)
    with pytest.raises(RuntimeError):
        rec.take()


def test_gradcam_is_differentiable_to_head_and_both_pathways():
    torch.manual_seed(2)
    net = build_slowfast(SlowFastSpec(3, depth=18, stem_width=16, dropout=0.0)).train()
    clip = torch.randn(2, 3, 8, 32, 32)
    with PathwayRecorder(net) as rec:
        logits = forward_clip(net, clip, ALPHA)
        maps = pathway_gradcam(logits, torch.tensor([0, 2]), rec.take(), [(2, 32, 32), (8, 32, 32)])
    assert all(m.requires_grad for m in maps)
    slow_w = pathway_blocks(net)[0].res_blocks[0].branch1_conv.weight
    fast_w = pathway_blocks(net)[1].res_blocks[0].branch1_conv.weight
    head_w = net.blocks[6].proj.weight
    # The map depends on the head's weights only through the gradient (a second-order path).
    grads = torch.autograd.grad(maps[0].sum() + maps[1].sum(), [slow_w, fast_w, head_w])
    assert all(g.abs().sum() > 0 for g in grads)
