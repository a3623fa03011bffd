"""Explanation-guided losses: Dice, OGL + Dice, RRR (+ OGL, + GradCAM), the worst-performer
tracker, and Object-ABN; each against an independent computation on a tiny model."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam

from flowguide.modeling.abn import (
    ABNLossWeights,
    ABNSpec,
    ObjectABN,
    abn_loss_terms,
    eq11_entropy_bits,
    pc_loss,
)
from flowguide.modeling.gradcam import PathwayRecorder, pathway_blocks
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.train.losses import (
    dice_loss,
    input_gradient,
    mask_pathways,
    ogl_dice_terms,
    rrr_gradcam_terms,
    rrr_ogl_terms,
    rrr_penalty,
)
from flowguide.train.worst import WorstPerformerTracker

ALPHA = 4


def tiny(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_slowfast(SlowFastSpec(num_classes, depth=18, stem_width=16, dropout=0.0))


def conv_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Conv weights of each pathway: the stem and the last stage's shortcut projection.

    (pytorchvideo zero-initialises the last BatchNorm of every residual branch, so at random
    init the branch convolutions get no gradient from any loss; the stem and shortcuts do.)
    """
    stems = model.blocks[0].multipathway_blocks
    return {
        "slow_stem": stems[0].conv.weight,
        "fast_stem": stems[1].conv.weight,
        "slow_res5": pathway_blocks(model)[0].res_blocks[0].branch1_conv.weight,
        "fast_res5": pathway_blocks(model)[1].res_blocks[0].branch1_conv.weight,
    }


# ---------------------------------------------------------------- Dice


def test_dice_loss_on_hand_arrays():
    pred = torch.tensor([[0.5, 1.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2]])
    target = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    # sample 0: |P.T| = 1.5, |P| = 1.5, |T| = 3 -> 1 - 3/4.5; sample 1: no overlap -> 1
    expected = np.array([1 - 3 / 4.5, 1.0])
    per = dice_loss(pred, target, eps=0.0, reduction="none")
    np.testing.assert_allclose(per.numpy(), expected, rtol=1e-6)
    assert dice_loss(pred, target, eps=0.0).item() == pytest.approx(expected.mean(), rel=1e-6)
    assert dice_loss(target[:1], target[:1], eps=0.0).item() == pytest.approx(0.0, abs=1e-7)


def test_mask_pathways_sample_slow_frames_like_pack_pathways():
    mask = torch.zeros(1, 8, 2, 2)
    for t in range(8):
        mask[0, t, 0, 0] = t % 2  # odd frames marked
        mask[0, t, 1, 1] = 1
    slow, fast = mask_pathways(mask, ALPHA)
    # linspace(0, 7, 2).round() = frames 0 and 7
    torch.testing.assert_close(slow, mask[:, [0, 7]])
    torch.testing.assert_close(fast, mask)


def captum_cam(model, clip, target, pathway: int) -> torch.Tensor:
    layer = pathway_blocks(model)[pathway]
    cam = LayerGradCam(lambda c: forward_clip(model, c, ALPHA), layer)
    return cam.attribute(clip, target=target, relu_attributions=True).squeeze(1).detach()


def test_ogl_dice_terms_equal_independent_computation():
    model = tiny(4).double().eval()
    gen = torch.Generator().manual_seed(3)
    clip = torch.randn(3, 3, 8, 64, 64, generator=gen).double()
    labels = torch.tensor([0, 2, 3])
    mask = torch.rand(3, 8, 64, 64, generator=gen) > 0.6
    mask[2] = False  # no mask at all: adds 0, the sum divided by all 3 samples
    with PathwayRecorder(model) as rec:
        logits = forward_clip(model, clip, ALPHA)
        terms = ogl_dice_terms(logits, labels, rec.take(), mask, ALPHA, weight=0.5, eps=1e-6)

    expected = {}
    for name, pathway, frames in (("dice_slow", 0, [0, 7]), ("dice_fast", 1, list(range(8)))):
        raw = captum_cam(model, clip, labels, pathway).numpy()  # (B, t, 2, 2)
        target = mask[:, frames].double().numpy()
        dices = []
        for b in range(2):  # the samples with a mask
            up = F.interpolate(
                torch.from_numpy(raw[b][None, None]), size=target.shape[1:], mode="trilinear"
            )[0, 0].numpy()
            cam = up / (up.max() + 1e-6)
            inter = (cam * target[b]).sum()
            dices.append(1 - 2 * inter / (cam.sum() + target[b].sum() + 1e-6))
        expected[name] = 0.25 * np.sum(dices) / 3  # weight / 2 per pathway, / B
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-6)


def test_dice_term_alone_reaches_both_pathways():
    model = tiny(3).train()
    gen = torch.Generator().manual_seed(4)
    clip = torch.randn(2, 3, 8, 32, 32, generator=gen)
    mask = torch.zeros(2, 8, 32, 32, dtype=torch.bool)
    mask[:, :, 8:24, 8:24] = True
    with PathwayRecorder(model) as rec:
        logits = forward_clip(model, clip, ALPHA)
        terms = ogl_dice_terms(logits, torch.tensor([1, 2]), rec.take(), mask, ALPHA, 1.0)
    weights = conv_weights(model)
    for pathway_term in ("dice_slow", "dice_fast"):
        assert terms[pathway_term].requires_grad
    grads = torch.autograd.grad(sum(terms.values()), list(weights.values()))
    for name, grad in zip(weights, grads, strict=True):
        assert grad.abs().sum() > 0, name


# ---------------------------------------------------------------- RRR


def test_rrr_input_gradient_matches_finite_differences():
    model = tiny(3).double().train()  # batch statistics: deterministic given the batch
    gen = torch.Generator().manual_seed(5)
    clip = torch.randn(2, 3, 8, 32, 32, generator=gen).double()

    def objective(x: torch.Tensor) -> float:
        with torch.no_grad():
            return F.log_softmax(forward_clip(model, x, ALPHA), 1).sum().item()

    x = clip.clone().requires_grad_(True)
    grad = input_gradient(forward_clip(model, x, ALPHA), x, create_graph=False)
    # frames 0 and 7 feed both pathways, frame 3 only the fast one
    coords = [(0, 0, 0, 5, 7), (1, 2, 7, 20, 11), (0, 1, 3, 14, 14), (1, 0, 3, 2, 29)]
    h = 1e-6
    for c in coords:
        plus, minus = clip.clone(), clip.clone()
        plus[c] += h
        minus[c] -= h
        numeric = (objective(plus) - objective(minus)) / (2 * h)
        assert grad[c].item() == pytest.approx(numeric, rel=1e-4, abs=1e-9), c
    assert grad[0, :, 0].abs().sum() > 0 and grad[0, :, 3].abs().sum() > 0


def test_rrr_ogl_equals_independent_sum():
    model = tiny(3).double().train()
    gen = torch.Generator().manual_seed(6)
    clip = torch.randn(2, 3, 4, 32, 32, generator=gen).double().requires_grad_(True)
    mask = torch.rand(2, 4, 32, 32, generator=gen) > 0.5
    logits = forward_clip(model, clip, ALPHA)
    term = rrr_ogl_terms(logits, clip, mask, lam=0.01)["rrr"]
    (g,) = torch.autograd.grad(F.log_softmax(logits, 1).sum(), clip, retain_graph=True)
    g = g.numpy()
    bg = 1.0 - mask.numpy()[:, None].astype(np.float64)  # same for every colour channel
    expected = 0.01 * sum(((bg[b] * g[b]) ** 2).sum() for b in range(2)) / 2
    assert term.item() == pytest.approx(expected, rel=1e-9)
    # reduction "mean": per sample the mean over its 3*T*H*W = 12,288 elements, not the sum
    mean = rrr_ogl_terms(logits, clip, mask, lam=0.01, reduction="mean")["rrr"]
    per_element = [((bg[b] * g[b]) ** 2).mean() for b in range(2)]
    assert mean.item() == pytest.approx(0.01 * sum(per_element) / 2, rel=1e-9)
    with pytest.raises(ValueError, match="must match"):
        rrr_ogl_terms(logits, clip, mask[:, :, :16], lam=0.01)
    with pytest.raises(ValueError, match="reduction"):
        rrr_ogl_terms(logits, clip, mask, lam=0.01, reduction="max")


def test_rrr_term_alone_reaches_both_pathways():
    model = tiny(3).train()
    gen = torch.Generator().manual_seed(7)
    clip = torch.randn(2, 3, 8, 32, 32, generator=gen).requires_grad_(True)
    mask = torch.zeros(2, 8, 32, 32, dtype=torch.bool)
    mask[:, :, 8:24, 8:24] = True
    term = rrr_ogl_terms(forward_clip(model, clip, ALPHA), clip, mask, lam=1.0)["rrr"]
    weights = conv_weights(model)
    grads = torch.autograd.grad(term, list(weights.values()))
    for name, grad in zip(weights, grads, strict=True):
        assert grad.abs().sum() > 0, name


def test_rrr_gradcam_penalises_only_selected_samples_inside_their_map():
    model = tiny(4).double().eval()
    gen = torch.Generator().manual_seed(8)
    clip = torch.randn(3, 3, 8, 64, 64, generator=gen).double().requires_grad_(True)
    labels = torch.tensor([0, 1, 2])
    selected = torch.tensor([True, False, True])
    with PathwayRecorder(model) as rec:
        logits = forward_clip(model, clip, ALPHA)
        rec_acts = rec.take()
        term = rrr_gradcam_terms(logits, labels, clip, rec_acts, selected, lam=0.1, threshold=0.5)[
            "rrr"
        ]

    predicted = logits.detach().argmax(1)
    total = 0.0
    for b in (0, 2):
        maps = []
        for pathway in (0, 1):
            raw = captum_cam(model, clip[b : b + 1], predicted[b : b + 1], pathway)
            up = F.interpolate(raw[:, None], size=(8, 64, 64), mode="trilinear")[0, 0]
            maps.append(up / (up.max() + 1e-6))
        region = (torch.maximum(*maps) > 0.5).double()
        assert 0 < region.mean() < 1
        # In eval mode the samples are independent: the gradient of sample b's own log-probs.
        (g,) = torch.autograd.grad(F.log_softmax(logits[b], 0).sum(), clip, retain_graph=True)
        total += ((region * g[b]) ** 2).sum().item()
    assert term.item() == pytest.approx(0.1 * total / 3, rel=1e-8)
    mean = rrr_gradcam_terms(
        logits, labels, clip, rec_acts, selected, lam=0.1, threshold=0.5, reduction="mean"
    )["rrr"]
    assert mean.item() == pytest.approx(0.1 * total / (3 * 8 * 64 * 64) / 3, rel=1e-8)

    none = rrr_gradcam_terms(
        logits, labels, clip, [torch.zeros(1)] * 2, torch.zeros(3, dtype=torch.bool), lam=0.1
    )
    assert none["rrr"].item() == 0.0


def test_rrr_penalty_sample_selection_and_normalisation():
    grad = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2, 2)
    region = torch.ones(2, 1, 2, 2, 2, dtype=torch.float64)
    region[:, :, 1] = 0  # second frame not penalised
    value = rrr_penalty(grad, region, lam=2.0, samples=torch.tensor([False, True]))
    expected = 2.0 * (grad[1, :, 0].numpy() ** 2).sum() / 2
    assert value.item() == pytest.approx(expected)


# ---------------------------------------------------------------- worst performers


def test_tracker_selects_exactly_the_worst_percentile():
    tracker = WorstPerformerTracker(num_samples=40, percentile=10, momentum=0.5)
    losses = torch.linspace(0.1, 3.0, 30)  # samples 0..29 seen; 30..39 never seen
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    tracker.update(perm, losses)
    # ceil(0.1 * 30) = 3 worst: the samples that got the three largest losses
    worst = set(perm[-3:].tolist())
    flags = tracker.select(torch.arange(40))
    assert set(flags.nonzero().flatten().tolist()) == worst

    # EMA: a second update moves a sample by (1 - momentum) toward its new loss
    sample = perm[0:1]
    tracker.update(sample, torch.tensor([10.0]))
    assert tracker.ema[sample].item() == pytest.approx(0.5 * 0.1 + 0.5 * 10.0)
    assert tracker.select(sample).item()
    assert tracker.select(perm[-3:]).sum().item() == 2  # it pushed out the smallest of the three

    restored = WorstPerformerTracker(num_samples=40, percentile=10, momentum=0.5)
    restored.load_state_dict(tracker.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tracker.state_dict().values())
    assert torch.equal(restored.select(torch.arange(40)), tracker.select(torch.arange(40)))
    with pytest.raises(ValueError):
        WorstPerformerTracker(num_samples=41).load_state_dict(tracker.state_dict())


def test_tracker_selects_nothing_before_any_update():
    tracker = WorstPerformerTracker(num_samples=10)
    assert not tracker.select(torch.arange(10)).any()


# ---------------------------------------------------------------- planted background cue


def cue_batch(gen: torch.Generator, b: int = 8, t: int = 4, s: int = 32):
    """Class 0/1: a centre square (the 'diver', in the mask) and a corner patch (background)
    both carry the class sign."""
    y = torch.randint(0, 2, (b,), generator=gen)
    sign = (2 * y.float() - 1).view(b, 1, 1, 1)
    clip = 0.5 * torch.randn(b, 3, t, s, s, generator=gen)
    mask = torch.zeros(b, t, s, s, dtype=torch.bool)
    mask[:, :, 10:22, 10:22] = True
    clip[:, 0, :, 10:22, 10:22] += sign
    clip[:, 1, :, :6, :6] += sign
    return clip, y, mask


def background_mass(model: torch.nn.Module, clip: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over samples of the squared input gradient (RRR's objective) outside the mask."""
    x = clip.clone().requires_grad_(True)
    g = input_gradient(forward_clip(model, x, ALPHA), x, create_graph=False).pow(2).sum(1)
    return ((g * ~mask).flatten(1).sum(1).mean()).item()


def train_steps(model, method: str, steps: int, lam: float) -> torch.nn.Module:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        clip, y, mask = cue_batch(gen)
        clip.requires_grad_(method == "rrr_ogl")
        logits = forward_clip(model, clip, ALPHA)
        loss = F.cross_entropy(logits, y)
        if method == "rrr_ogl":
            loss = loss + rrr_ogl_terms(logits, clip, mask, lam)["rrr"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_rrr_ogl_lowers_background_gradient_mass(seed):
    torch.manual_seed(seed)
    base = build_slowfast(SlowFastSpec(2, depth=18, stem_width=16, dropout=0.0))
    clip, _, mask = cue_batch(torch.Generator().manual_seed(99), b=16)
    mass = {
        method: background_mass(train_steps(copy.deepcopy(base), method, 12, 1.0), clip, mask)
        for method in ("vanilla", "rrr_ogl")
    }
    # Same init, same batches: the penalised model keeps far less gradient on the background.
    assert mass["rrr_ogl"] < 0.5 * mass["vanilla"], mass


# ---------------------------------------------------------------- Object-ABN


def abn(mode: str, pc: bool = False, source: str = "both") -> ObjectABN:
    spec = ABNSpec(num_classes=3, alpha=ALPHA, mode=mode, source=source, width=16, pc=pc)
    return ObjectABN(tiny(3), spec)


@pytest.mark.parametrize(
    ("mode", "names"),
    [("free", ["free"]), ("mask", ["object"]), ("mha", ["free", "object", "background"])],
)
def test_abn_shapes(mode, names):
    model = abn(mode).train()
    out = model(torch.randn(2, 3, 8, 64, 64))
    assert out.logits.shape == (2, 3) and out.attention_logits.shape == (2, 3)
    assert sorted(out.maps) == sorted(names)
    for m in out.maps.values():
        assert m.shape == (2, 8, 2, 2)  # T frames, 64 / 32 px
        assert m.min() >= 0 and m.max() <= 1
    assert out.embedding.shape == (2, 16)
    # a pathway list (as forward_clip passes it) gives the same result in eval mode
    model.eval()
    clip = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(model(clip).logits, forward_clip(model, clip, ALPHA).logits)


def test_abn_gating_changes_logits_residually():
    model = abn("mask").eval()
    clip = torch.randn(1, 3, 8, 32, 32)
    out = model(clip)
    plain = forward_clip(model.backbone, clip, ALPHA)
    # f * (1 + a) with a in (0, 1): not the plain backbone's logits
    assert not torch.allclose(out.logits, plain)


def test_abn_mask_loss_equals_separate_mse():
    model = abn("mask").train()
    gen = torch.Generator().manual_seed(9)
    clip = torch.randn(2, 3, 8, 64, 64, generator=gen)
    mask = torch.rand(2, 8, 64, 64, generator=gen) > 0.7
    labels = torch.tensor([0, 2])
    out = model(clip)
    terms = abn_loss_terms(out, labels, mask, ABNLossWeights())
    # area-resize by hand: the mean of each 32x32 cell
    cells = mask.float().numpy().reshape(2, 8, 2, 32, 2, 32).mean(axis=(3, 5))
    m_o = out.maps["object"].detach().numpy()
    assert terms["mask"].item() == pytest.approx(10 * ((m_o - cells) ** 2).mean(), rel=1e-5)
    ce = F.cross_entropy(out.attention_logits, labels).item()
    assert terms["att_ce"].item() == pytest.approx(ce, rel=1e-6)

    mha = abn("mha").train()
    out = mha(clip)
    terms = abn_loss_terms(out, labels, mask, ABNLossWeights())
    m_o, m_b = out.maps["object"].detach().numpy(), out.maps["background"].detach().numpy()
    expected = 10 * (((m_o - cells) ** 2).mean() + ((m_b - (1 - cells)) ** 2).mean())
    assert terms["mha"].item() == pytest.approx(expected, rel=1e-5)


def test_abn_gradients_flow_to_branch_and_both_pathways():
    model = abn("mask", pc=True).train()
    clip = torch.randn(2, 3, 8, 32, 32)
    mask = torch.zeros(2, 8, 32, 32, dtype=torch.bool)
    mask[:, :, 8:24, 8:24] = True
    labels = torch.tensor([0, 1])
    out = model(clip)
    terms = abn_loss_terms(out, labels, mask, ABNLossWeights(), centroids=model.centroids)
    assert set(terms) == {"att_ce", "mask", "pc"}
    loss = F.cross_entropy(out.logits, labels) + sum(terms.values())
    loss.backward()
    params = {
        "branch_trunk": model.branch.trunk[0].weight,
        "branch_map": model.branch.map_conv[1].weight,
        "centroids": model.centroids,
        **conv_weights(model.backbone),
    }
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the mask loss alone reaches the backbone through the attention branch
    model.zero_grad()
    out = model(clip)
    abn_loss_terms(out, labels, mask, ABNLossWeights())["mask"].backward()
    assert conv_weights(model.backbone)["fast_res5"].grad.abs().sum() > 0


def test_pc_loss_equals_explicit_loop():
    gen = torch.Generator().manual_seed(10)
    f = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    expected = 0.0
    for b in range(3):
        own = np.linalg.norm(f[b] - w[y[b]])
        others = sum(
            np.linalg.norm(f[b] - w[j]) + np.linalg.norm(w[y[b]] - w[j])
            for j in range(4)
            if j != y[b]
        )
        expected += 1.0 * own - 1e-3 / 3 * others
    assert pc_loss(f, y, w, 1.0, 1e-3).item() == pytest.approx(expected / 3, rel=1e-9)


def test_eq11_entropy_bits_on_hand_values():
    # frame 0: values 0, 0.05, 0.5, 1 -> min-max unchanged; bins 0, 0, 5, 9 -> p = .5, .25, .25
    # frame 1: constant -> one bin -> 0 bits
    maps = torch.tensor([[[[0.0, 0.05], [0.5, 1.0]], [[0.3, 0.3], [0.3, 0.3]]]])  # (1, 2, 2, 2)
    ent0 = -(0.5 * math.log2(0.5) + 2 * 0.25 * math.log2(0.25))
    assert eq11_entropy_bits(maps).item() == pytest.approx((ent0 + 0.0) / 2)
    # against numpy's histogram on a random frame (min-max normalised first)
    frame = torch.rand(1, 1, 7, 9, generator=torch.Generator().manual_seed(11))
    v = frame.numpy().ravel()
    hist, _ = np.histogram((v - v.min()) / (v.max() - v.min()), bins=10, range=(0, 1))
    p = hist[hist > 0] / hist.sum()
    assert eq11_entropy_bits(frame).item() == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-6)
    # maximum entropy log2(10) for values spread evenly over the ten bins
    even = torch.linspace(0.05, 0.95, 10).view(1, 1, 2, 5)
    assert eq11_entropy_bits(even).item() == pytest.approx(math.log2(10))
