"""Differentiable GradCAM for SlowFast, one map per pathway (thesis 4.2.1).

The maps are taken at the last residual stage (``model.blocks[LAST_STAGE]``): the slow pathway's
map has T // alpha frames, the fast pathway's T frames. The activations are captured by forward
hooks in the same forward pass that produces the logits, so no second forward is needed; the
gradient of the class score is taken with respect to those activations only, which keeps the
second-order part of a loss on the map cheap (it runs through the head, not the whole network).

Definition (as in Selvaraju et al. and captum's LayerGradCam for 5-D activations):

    w_c   = mean over (t, h, w) of d score / d A_c
    cam   = ReLU( sum_c w_c * A_c )                       (B, t, h, w)

Normalisation (``normalize_cam``): each sample's map is divided by its own maximum plus ``eps``,
so values lie in [0, 1) and an all-zero map stays zero. Upsampling (``upsample_cam``) is
trilinear over time and space (align_corners=False) to the mask resolution; ``pathway_gradcam``
upsamples first and normalises after, so the maximum of the returned map is max / (max + eps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from flowguide.modeling.slowfast import FAST, LAST_STAGE, SLOW

DEFAULT_EPS = 1e-6


def pathway_blocks(model: nn.Module, stage: int = LAST_STAGE) -> list[nn.Module]:
    """[slow, fast] residual stages of ``model.blocks[stage]`` (a MultiPathWayWithFuse)."""
    blocks = model.blocks[stage].multipathway_blocks
    return [blocks[SLOW], blocks[FAST]]


class PathwayRecorder:
    """Forward hooks that keep the outputs of the slow and fast last residual stage.

    Attach once (e.g. when a method is set up); every forward then leaves its activations in
    ``activations`` ([slow, fast], still in the autograd graph). ``take()`` hands them over and
    drops the references so they do not outlive the step.
    """

    def __init__(self, model: nn.Module, stage: int = LAST_STAGE) -> None:
        self._outputs: list[torch.Tensor | None] = [None, None]
        self._handles = [
            block.register_forward_hook(self._hook(i))
            for i, block in enumerate(pathway_blocks(model, stage))
        ]

    def _hook(self, index: int):
        def store(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._outputs[index] = output

        return store

    @property
    def activations(self) -> list[torch.Tensor]:
        if any(out is None for out in self._outputs):
            raise RuntimeError("PathwayRecorder: no forward pass recorded since the last take()")
        return list(self._outputs)  # type: ignore[arg-type]

    def take(self) -> list[torch.Tensor]:
        outputs = self.activations
        self._outputs = [None, None]
        return outputs

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = [None, None]

    def __enter__(self) -> PathwayRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def target_scores(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) pre-softmax score of each sample's target class."""
    return logits.gather(1, target.long().view(-1, 1)).squeeze(1)


def gradcam_from_activations(
    scores: torch.Tensor,
    activations: Sequence[torch.Tensor],
    create_graph: bool = False,
    retain_graph: bool = True,
) -> list[torch.Tensor]:
    """Raw GradCAM (B, t, h, w) per activation tensor (B, C, t, h, w); ReLU, not normalised.

    Samples are independent in the head (pooling + linear), so the gradient of the summed scores
    gives each sample the gradient of its own score.
    """
    grads = torch.autograd.grad(
        scores.sum(), list(activations), create_graph=create_graph, retain_graph=retain_graph
    )
    cams = []
    for act, grad in zip(activations, grads, strict=True):
        weights = grad.mean(dim=(2, 3, 4), keepdim=True)
        cams.append(F.relu((weights * act).sum(dim=1)))
    return cams


def normalize_cam(cam: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Divide each sample's map (B, ...) by its maximum + eps."""
    peak = cam.flatten(1).amax(dim=1).view(-1, *([1] * (cam.dim() - 1)))
    return cam / (peak + eps)


def upsample_cam(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, t, h, w) -> (B, *size) by trilinear interpolation over time and space."""
    out = F.interpolate(cam.unsqueeze(1), size=tuple(size), mode="trilinear", align_corners=False)
    return out.squeeze(1)


def pathway_gradcam(
    logits: torch.Tensor,
    target: torch.Tensor,
    activations: Sequence[torch.Tensor],
    sizes: Sequence[Sequence[int]],
    create_graph: bool = True,
    eps: float = DEFAULT_EPS,
) -> list[torch.Tensor]:
    """Normalised GradCAM of ``target``'s score per pathway, upsampled to ``sizes[i]`` (t, H, W).

    ``create_graph=True`` keeps the maps differentiable with respect to the parameters (for a loss
    on them); pass False and ``.detach()`` for a fixed map. The graph of ``logits`` is retained.
    """
    raw = gradcam_from_activations(target_scores(logits, target), activations, create_graph)
    return [
        normalize_cam(upsample_cam(cam, size), eps) for cam, size in zip(raw, sizes, strict=True)
    ]
