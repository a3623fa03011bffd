"""SWAG-V (paper 004): supervoxels weighted by average guided-backprop gradients.

The saliency M is guided backprop's gradient of the target logit: max over colour channels of
its magnitude, scaled to [0, 1] by its maximum. Supervoxels come from 3D SLIC with 004's
distance (Eq. 3)

    D' = sqrt((d_c / w_c)^2 + (d_g / w_g)^2 + (d_s / S)^2)

d_c: CIELAB colour distance (L in 0..100), d_g: saliency distance with M scaled to 0..100 (the
range of L, so w_c and w_g are comparable; 004 does not say how it scales M), d_s: voxel
distance and S SLIC's grid step (SLIC's own spatial normalisation, 004's w_s). Variants: I
(colour only), G (saliency only), I+G. Each supervoxel is painted with its mean saliency (Eq. 1).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowguide.explain.core import ExplanationResult, ModelFn
from flowguide.explain.segmentation import clip_pixels_thwc
from flowguide.explain.slic import weighted_slic

SWAG_VARIANTS = ("I", "G", "I+G")


class _NonInplaceReLU:
    """Turns in-place ReLUs off while captum's backward hooks are attached (they reject them)."""

    def __init__(self, module: nn.Module) -> None:
        self.relus = [m for m in module.modules() if isinstance(m, nn.ReLU) and m.inplace]

    def __enter__(self) -> None:
        for m in self.relus:
            m.inplace = False

    def __exit__(self, *exc: object) -> None:
        for m in self.relus:
            m.inplace = True


class _Counted(nn.Module):
    """Counts the clips a module is run on (its ReLUs stay reachable for captum's hooks)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_passes = 0

    def forward(self, clips: Tensor) -> Tensor:
        self.forward_passes += clips.shape[0]
        return self.inner(clips)


def guided_backprop(model_fn: ModelFn, clip: Tensor, target: int) -> tuple[Tensor, int, int]:
    """(C, T, H, W) guided-backprop gradient of the target logit, and the forward and backward
    passes it took (counted, not assumed); ``model_fn`` must be an nn.Module."""
    from captum.attr import GuidedBackprop

    if not isinstance(model_fn, nn.Module):
        raise TypeError(
            "guided backprop needs model_fn to be an nn.Module holding the network's ReLUs "
            "(wrap a callable with flowguide.explain.core.ModuleFn)"
        )
    counted = _Counted(model_fn)
    backward = [0]
    inputs = clip[None].detach().clone().requires_grad_(True)
    inputs.register_hook(lambda g: backward.__setitem__(0, backward[0] + 1))
    with _NonInplaceReLU(model_fn), torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        grads = GuidedBackprop(counted).attribute(inputs, target=target)
    return grads[0].detach(), counted.forward_passes, backward[0]


def swag_features(
    pixels_thwc: np.ndarray, saliency: np.ndarray, variant: str, w_c: float, w_g: float
) -> np.ndarray:
    """(T, H, W, F) features whose Euclidean distance is the colour/gradient part of D'."""
    from skimage.color import rgb2lab

    if variant not in SWAG_VARIANTS:
        raise ValueError(f"SWAG-V variant must be one of {list(SWAG_VARIANTS)}, not {variant!r}")
    colour = (
        rgb2lab(np.clip(pixels_thwc, 0, 1)) if pixels_thwc.shape[-1] == 3 else 100 * pixels_thwc
    )
    grad = 100.0 * saliency[..., None]
    parts = {"I": [colour / w_c], "G": [grad / w_g], "I+G": [colour / w_c, grad / w_g]}
    return np.concatenate(parts[variant], axis=-1)


def swag_segments(
    pixels_thwc: np.ndarray,
    saliency: np.ndarray,
    variant: str,
    w_c: float,
    w_g: float,
    n_segments: int,
    iterations: int = 10,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(T, H, W) supervoxel ids 0..S-1 of SLIC under D' (flowguide.explain.slic), run on
    ``device`` in float32 there (float64 on the CPU)."""
    features = torch.from_numpy(swag_features(pixels_thwc, saliency, variant, w_c, w_g))
    device = torch.device(device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    labels = weighted_slic(features.to(device, dtype), n_segments, iterations)
    return labels.cpu().numpy()


def segment_means(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each voxel painted with the mean of ``values`` over its segment (004, Eq. 1)."""
    sums = np.bincount(labels.ravel(), weights=values.ravel())
    return (sums / np.bincount(labels.ravel()))[labels]


def swag_v(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """SWAG-V map; ``extras['saliency']`` keeps the voxel-level guided-backprop saliency (the
    representation selective relevance is computed on, see flowguide.explain.selective)."""
    started = time.perf_counter()
    grads, forward, backward = guided_backprop(model_fn, clip, target)
    saliency = grads.abs().amax(dim=0)
    saliency = saliency / saliency.max().clamp_min(1e-12)
    sal_np = saliency.cpu().double().numpy()
    labels = swag_segments(
        clip_pixels_thwc(clip, options),
        sal_np,
        options["variant"],
        float(options["w_c"]),
        float(options["w_g"]),
        int(options["n_segments"]),
        int(options["iterations"]),
        clip.device,
    )
    relevance = torch.from_numpy(segment_means(sal_np, labels)).float()
    return ExplanationResult(
        map=relevance,
        forward_passes=forward,
        backward_passes=backward,
        seconds=time.perf_counter() - started,
        extras={"n_features": int(labels.max()) + 1, "saliency": saliency.float().cpu()},
    )
