"""A mask frame with no diver carries no evidence: no RRR penalty, no OGL masking, no ABN mask
loss, no Dice (issue 16). Each expectation is computed here frame by frame, independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowguide.clips.evidence import frame_evidence
from flowguide.clips.transforms import ogl_transform
from flowguide.modeling.abn import ABNLossWeights, ABNOutput, abn_loss_terms
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.train.losses import rrr_ogl_terms


def _mask(b: int, t: int, h: int, w: int, empty: list[tuple[int, int]]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(b, t, h, w, generator=gen) > 0.5
    for sample, frame in empty:
        mask[sample, frame] = False
    return mask


def test_frame_evidence_flags_frames_with_any_pixel():
    mask = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    mask[0, 1, 2, 3] = True
    mask[1, 2] = True
    assert frame_evidence(mask).tolist() == [[False, True, False], [False, False, True]]


def test_rrr_ogl_puts_no_penalty_on_an_empty_mask_frame():
    torch.manual_seed(0)
    model = build_slowfast(SlowFastSpec(3, depth=18, stem_width=16, dropout=0.0)).double().eval()
    clip = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64, requires_grad=True)
    mask = _mask(2, 8, 32, 32, empty=[(0, 3), (1, 0), (1, 5)])
    logits = forward_clip(model, clip, 4)
    got = rrr_ogl_terms(logits, clip, mask, lam=0.5)["rrr"].item()

    (grad,) = torch.autograd.grad(F.log_softmax(logits, 1).sum(), clip, retain_graph=True)
    g, m = grad.detach().numpy(), mask.numpy()
    expected = naive = 0.0
    for b in range(2):
        for t in range(8):
            outside = (g[b, :, t] * (1 - m[b, t])) ** 2  # channels broadcast
            naive += outside.sum()
            if m[b, t].any():  # frames with a mask only
                expected += outside.sum()
    assert got == pytest.approx(0.5 * expected / 2, rel=1e-9)
    assert got < 0.5 * naive / 2  # the empty frames would have been penalised as a whole
    all_empty = torch.zeros_like(mask)
    assert rrr_ogl_terms(logits, clip, all_empty, lam=0.5)["rrr"].item() == 0.0


def test_ogl_transform_leaves_an_empty_mask_frame_unmasked():
    video = torch.rand(5, 3, 6, 6)
    mask = _mask(1, 5, 6, 6, empty=[(0, 2), (0, 4)])[0].unsqueeze(1).to(torch.uint8)
    out = ogl_transform(video, mask, p=1.0)
    for t in range(5):
        if t in (2, 4):
            assert torch.equal(out[t], video[t])  # no evidence: the frame stays as it is
        else:
            assert torch.equal(out[t], video[t] * mask[t].float())


def test_abn_puts_no_mask_loss_on_an_empty_mask_frame():
    gen = torch.Generator().manual_seed(1)
    b, t, h, w = 2, 4, 4, 4
    maps = {"object": torch.rand(b, t, h, w, generator=gen, requires_grad=True)}
    out = ABNOutput(torch.randn(b, 3), torch.randn(b, 3), maps, torch.randn(b, 8))
    mask = _mask(b, t, 8, 8, empty=[(0, 1), (1, 0), (1, 3)])  # 8x8 -> 4x4 cells by area
    terms = abn_loss_terms(out, torch.tensor([0, 2]), mask, ABNLossWeights())
    cells = mask.float().numpy().reshape(b, t, 4, 2, 4, 2).mean(axis=(3, 5))
    m_o = maps["object"].detach().numpy()
    per_sample = []
    for i in range(b):
        frames = [f for f in range(t) if mask[i, f].any()]
        per_sample.append(np.mean([(m_o[i, f] - cells[i, f]) ** 2 for f in frames]))
    assert terms["mask"].item() == pytest.approx(10 * np.mean(per_sample), rel=1e-6)
    terms["mask"].backward()
    grad = maps["object"].grad
    assert (
        grad[0, 1].abs().max() == 0 and grad[1, 0].abs().max() == 0 and grad[1, 3].abs().max() == 0
    )
    assert grad[0, 0].abs().max() > 0  # a frame with a mask is pulled towards it
    # Every frame with a mask: the plain MSE of the paper.
    full = _mask(b, t, 8, 8, empty=[])
    full_cells = torch.from_numpy(full.float().numpy().reshape(b, t, 4, 2, 4, 2).mean(axis=(3, 5)))
    plain = abn_loss_terms(out, torch.tensor([0, 2]), full, ABNLossWeights())["mask"].item()
    assert plain == pytest.approx(10 * F.mse_loss(maps["object"], full_cells).item(), rel=1e-6)
