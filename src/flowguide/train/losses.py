"""Explanation-guided loss terms (thesis 4.3.2 OGL + Dice, 4.4 RRR + OGL / RRR + GradCAM).

Each ``*_terms`` function returns a dict of scalar tensors that a training method adds to the
(weighted) cross-entropy. Conventions, so the figures in a run's config mean one thing:

* Dice (``dice_loss``): soft Dice per sample, 1 - 2 sum(P*T) / (sum(P) + sum(T) + eps), then the
  mean over samples. ``ogl_dice_terms`` computes it for the slow and the fast pathway and returns
  ``dice_weight / 2`` times each, so the two terms sum to ``dice_weight * mean_pathway(Dice)``.
  Frames whose diver mask is empty carry no evidence and are left out of P and T; a sample with
  no mask in any frame adds 0 (its Dice would be the constant 1 with no gradient), and the sum
  is divided by the whole batch B, so accumulating loader batches gives the full batch's term.
  The method scales its CE by ``ce_weight`` (see train.methods.OGLDice for the thesis' alpha).
* RRR (Ross et al. 2017, thesis Eq. 4.1): g = d/dX sum_b sum_n log softmax(logits)_bn, taken with
  respect to the clip *before* pack_pathways (so both pathways count), create_graph=True. The
  penalty is lambda * (1/B) * sum_b sum_{c,t,h,w} (A * g)^2: a sum over the elements of each
  sample, a mean over the batch (B = the whole batch, also when only some samples are
  penalised), so lambda does not depend on the batch size or gradient accumulation but does
  scale with the clip's size: the sum over a sample is 3*T*H*W times the per-element mean
  (24,576 at 8x32x32, 2,408,448 at 16x224x224). Option ``reduction: mean`` takes the mean over
  the sample's elements instead, so lambda no longer depends on T or the crop. In train mode
  BatchNorm couples the samples of a batch, so g_b
  also carries the (small) effect of sample b on the others' log-probabilities, as in any
  batched implementation.
* RRR + OGL: A = 1 - diver mask, broadcast over the colour channels (penalise the background);
  A = 0 in a frame whose mask is empty (no evidence, see clips.evidence).
* RRR + GradCAM: A = (GradCAM > threshold) of the model's own, detached, normalised maps: the
  union of the slow map (upsampled over time to T) and the fast map, at the clip's resolution;
  by default GradCAM of the predicted class (the evidence behind a wrong prediction), only for
  the samples that ``WorstPerformerTracker`` flags as the worst ``percentile`` percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from flowguide.clips.evidence import frame_evidence
from flowguide.modeling.gradcam import (
    DEFAULT_EPS,
    gradcam_from_activations,
    normalize_cam,
    pathway_gradcam,
    target_scores,
    upsample_cam,
)
from flowguide.modeling.slowfast import pack_pathways

# ---------------------------------------------------------------- Dice / OGL


def dice_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = DEFAULT_EPS, reduction: str = "mean"
) -> torch.Tensor:
    """Soft Dice loss 1 - 2|P.T| / (|P| + |T| + eps) per sample (dim 0); mean or per sample."""
    p = pred.flatten(1)
    t = target.to(pred.dtype).flatten(1)
    per_sample = 1 - 2 * (p * t).sum(1) / (p.sum(1) + t.sum(1) + eps)
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"dice_loss: reduction must be 'mean' or 'none', got {reduction!r}")


def mask_pathways(mask: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """Diver mask (B, T, H, W) -> [slow (B, T//alpha, H, W), fast (B, T, H, W)], float.

    The slow frames are picked by pack_pathways itself, so they are the frames the slow pathway saw.
    """
    slow, fast = pack_pathways(mask.float().unsqueeze(1), alpha)
    return [slow.squeeze(1), fast.squeeze(1)]


def ogl_dice_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    activations: Sequence[torch.Tensor],
    mask: torch.Tensor,
    alpha_path: int,
    weight: float,
    eps: float = DEFAULT_EPS,
) -> dict[str, torch.Tensor]:
    """OGL + Dice: {dice_slow, dice_fast}, each weight/2 * Dice(GradCAM_pathway, mask_pathway).

    ``activations`` are [slow, fast] from a PathwayRecorder on the forward that gave ``logits``;
    ``mask`` (B, T, H, W) is the diver mask of the clip's frames; ``alpha_path`` is SlowFast's
    frame-rate ratio; ``weight`` is the thesis' alpha. GradCAM of the true label, differentiable.
    """
    targets = mask_pathways(mask, alpha_path)
    maps = pathway_gradcam(
        logits, labels, activations, [t.shape[1:] for t in targets], create_graph=True, eps=eps
    )
    terms = {}
    for name, cam, target in zip(("dice_slow", "dice_fast"), maps, targets, strict=True):
        # Frames without a mask carry no evidence (clips.evidence): out of both P and T.
        evidence = frame_evidence(target).to(cam.dtype)[:, :, None, None]
        has_mask = evidence.flatten(1).amax(1) > 0
        per_sample = dice_loss(cam * evidence, target * evidence, eps, reduction="none")
        # Sum over the samples with a mask, / B: a loader batch's share does not depend on how
        # many masked samples it holds, so accumulation gives the full batch's term.
        dice = (per_sample * has_mask.to(per_sample.dtype)).sum() / cam.shape[0]
        terms[name] = 0.5 * weight * dice
    return terms


# ---------------------------------------------------------------- RRR


def input_gradient(
    logits: torch.Tensor, clip: torch.Tensor, create_graph: bool = True
) -> torch.Tensor:
    """d/dclip sum over samples and classes of log softmax(logits): the RRR input gradient."""
    if not clip.requires_grad:
        raise ValueError("input_gradient: the clip must require grad before the forward pass")
    total = F.log_softmax(logits, dim=1).sum()
    (grad,) = torch.autograd.grad(total, clip, create_graph=create_graph, retain_graph=True)
    return grad


RRR_REDUCTIONS = ("sum", "mean")


def rrr_reduce(squared: torch.Tensor, lam: float, batch: int, reduction: str) -> torch.Tensor:
    """``squared`` (b, C, T, H, W) -> lam * (1/batch) * sum over its samples of the per-sample
    sum ("sum", Ross et al.) or mean ("mean") over the C*T*H*W elements.

    "mean" divides by all of a sample's elements, inside the region or not, so lambda means the
    same whatever the clip's T and crop and the mask's size; "sum" is 3*T*H*W times larger.
    """
    if reduction not in RRR_REDUCTIONS:
        raise ValueError(f"RRR reduction must be one of {RRR_REDUCTIONS}, got {reduction!r}")
    per_sample = squared.flatten(1).sum(1)
    if reduction == "mean":
        per_sample = per_sample / squared[0].numel()
    return lam * per_sample.sum() / batch


def rrr_penalty(
    grad: torch.Tensor,
    region: torch.Tensor,
    lam: float,
    samples: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """lam * (1/B) * sum over penalised samples of sum_{c,t,h,w} (region * grad)^2
    (``reduction`` "mean": of the mean over c,t,h,w instead, see ``rrr_reduce``).

    ``grad`` (B, C, T, H, W); ``region`` broadcastable to it (1 = penalise); ``samples`` an
    optional (B,) bool selecting the penalised samples (the others count as zero).
    """
    squared = (region * grad).pow(2)
    if samples is not None:
        squared = squared * samples.to(squared.dtype).view(-1, *([1] * (grad.dim() - 1)))
    return rrr_reduce(squared, lam, grad.shape[0], reduction)


def background_region(mask: torch.Tensor, clip_shape: Sequence[int]) -> torch.Tensor:
    """1 - diver mask (B, T, H, W) as (B, 1, T, H, W), to broadcast over the colour channels;
    0 in the frames whose mask is empty."""
    b, _, t, h, w = clip_shape
    if tuple(mask.shape) != (b, t, h, w):
        raise ValueError(
            f"RRR + OGL: the mask {tuple(mask.shape)} must match the clip's (B, T, H, W) "
            f"{(b, t, h, w)}; resize masks with the clip in the transform"
        )
    # A frame without a mask carries no evidence (clips.evidence): nothing of it is penalised.
    evidence = frame_evidence(mask).to(torch.float32)[:, :, None, None]
    return ((1.0 - mask.float()) * evidence).unsqueeze(1)


def rrr_ogl_terms(
    logits: torch.Tensor,
    clip: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    reduction: str = "sum",
) -> dict[str, torch.Tensor]:
    """RRR + OGL: {rrr} penalising input gradients outside the diver mask."""
    grad = input_gradient(logits, clip)
    region = background_region(mask, clip.shape).to(grad.dtype)
    return {"rrr": rrr_penalty(grad, region, lam, reduction=reduction)}


def gradcam_region(
    logits: torch.Tensor,
    target: torch.Tensor,
    activations: Sequence[torch.Tensor],
    clip_shape: Sequence[int],
    threshold: float,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """(B, 1, T, H, W) float {0, 1}: where either pathway's normalised GradCAM exceeds threshold.

    Detached (no second-order term); both maps are upsampled to the clip's (T, H, W) first.
    """
    _, _, t, h, w = clip_shape
    raw = gradcam_from_activations(target_scores(logits, target), activations, create_graph=False)
    maps = [normalize_cam(upsample_cam(cam.detach(), (t, h, w)), eps) for cam in raw]
    return (torch.maximum(maps[0], maps[1]) > threshold).to(logits.dtype).unsqueeze(1)


def rrr_gradcam_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    clip: torch.Tensor,
    activations: Sequence[torch.Tensor],
    selected: torch.Tensor,
    lam: float,
    threshold: float = 0.5,
    cam_target: str = "predicted",
    reduction: str = "sum",
) -> dict[str, torch.Tensor]:
    """RRR + GradCAM: {rrr} on the ``selected`` (B,) bool samples, inside their GradCAM region.

    ``cam_target``: "predicted" (default) or "label" picks the class whose GradCAM marks the
    region. With no sample selected, the term is a zero and no input gradient is computed.
    """
    if not selected.any():
        return {"rrr": logits.sum() * 0.0}
    if cam_target == "predicted":
        target = logits.detach().argmax(1)
    elif cam_target == "label":
        target = labels
    else:
        raise ValueError(f"cam_target must be 'predicted' or 'label', got {cam_target!r}")
    sel = selected.to(logits.device)
    # GradCAM of the whole batch (first order, down to the last stage only: cheap), then select.
    region = gradcam_region(logits, target, activations, clip.shape, threshold)[sel]
    # Only the penalised samples' log-probabilities enter the input gradient.
    total = F.log_softmax(logits[sel], dim=1).sum()
    (grad,) = torch.autograd.grad(total, clip, create_graph=True, retain_graph=True)
    return {"rrr": rrr_reduce((region * grad[sel]).pow(2), lam, clip.shape[0], reduction)}
