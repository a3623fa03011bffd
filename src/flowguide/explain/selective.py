"""Selective relevance (paper 002): keep the relevance that changes sharply over time.

G_t = h'_t * R, the 3D Sobel derivative of the relevance map R along time (derivative [-1, 0, 1]
in t, smoothing [1, 2, 1] in h and in w). The threshold is n * sigma, sigma the standard
deviation of G_t over the whole clip, n = ``n_std`` (4 in 002's experiments). ``rule``:
"rising" keeps G_t > n sigma (002's R_t = {r | G_t(r) > sigma}: relevance that appears);
"magnitude" keeps |G_t| > n sigma (relevance that appears or vanishes). The selective map is R
where kept and 0 elsewhere.

Where it means something: the filter reads changes of relevance over time, so it needs a map
that can change from voxel to voxel. Region-constant maps (LIME, Kernel SHAP, LOCO, univariate
predictors and SWAG-V paint one value per supervoxel; sampled occlusion one value per window
overlap cell) only change across region borders, so their "selective" voxels are the borders of
the segmentation, not the model's motion relevance. ``REGION_CONSTANT`` lists them: they get no
selective map, except SWAG-V, whose selective map is taken from its voxel-level guided-backprop
saliency (002 applies the filter to guided backprop) and named ``selective_guided_backprop``.
GradCAM (smoothly upsampled) and RISE (soft masks) are voxel-level and keep theirs.

Borders are padded by replication, so a map that does not change over time has G_t = 0
everywhere and is removed entirely (rather than producing edges at the first and last frames).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from flowguide.explain.core import ExplanationResult


def sobel_t_kernel(
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """(3, 3, 3) Sobel kernel for d/dt (axes t, h, w), as scipy.ndimage.sobel(axis=0)."""
    deriv = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=device)
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=dtype, device=device)
    return deriv[:, None, None] * smooth[None, :, None] * smooth[None, None, :]


def temporal_sobel(relevance: Tensor) -> Tensor:
    """G_t of a (T, H, W) map, same shape, replicate-padded borders."""
    r = relevance.to(torch.float32)[None, None]
    padded = F.pad(r, (1, 1, 1, 1, 1, 1), mode="replicate")
    kernel = sobel_t_kernel(r.dtype, r.device)[None, None]
    return F.conv3d(padded, kernel)[0, 0]


@dataclass
class SelectiveResult:
    map: Tensor  # (T, H, W): the input relevance where kept, 0 elsewhere
    kept: Tensor  # (T, H, W) bool
    threshold: float  # n * sigma
    seconds: float


SELECTIVE_RULES = ("rising", "magnitude")
REGION_CONSTANT = frozenset({"lime", "kernel_shap", "loco", "univariate", "occlusion", "swag_v"})
# Region-constant explainers whose result carries a voxel-level map the filter can use instead:
# explainer -> (extras key, name of the selective row).
VOXEL_SOURCE = {"swag_v": ("saliency", "selective_guided_backprop")}


def selective_relevance(
    relevance: Tensor, n_std: float = 4.0, rule: str = "rising"
) -> SelectiveResult:
    """The selective relevance map of any (T, H, W) relevance map."""
    if rule not in SELECTIVE_RULES:
        raise ValueError(f"selective rule must be one of {list(SELECTIVE_RULES)}, not {rule!r}")
    started = time.perf_counter()
    grad_t = temporal_sobel(relevance)
    threshold = float(n_std) * float(grad_t.std(unbiased=False))
    kept = (grad_t.abs() if rule == "magnitude" else grad_t) > threshold
    selected = torch.where(kept, relevance.to(torch.float32), torch.zeros((), device=kept.device))
    return SelectiveResult(selected, kept, threshold, time.perf_counter() - started)


def selective_of(
    result: ExplanationResult,
    n_std: float = 4.0,
    rule: str = "rising",
    source: Tensor | None = None,
) -> tuple[ExplanationResult, Tensor]:
    """An explainer's result filtered by selective relevance (cost: the base's plus the filter),
    and the kept voxels. ``source``: the voxel-level map to filter instead of ``result.map``."""
    base = result.map if source is None else source
    sel = selective_relevance(base, n_std, rule)
    extras = {k: v for k, v in result.extras.items() if not isinstance(v, Tensor)}
    filtered = ExplanationResult(
        map=sel.map,
        forward_passes=result.forward_passes,
        backward_passes=result.backward_passes,
        seconds=result.seconds + sel.seconds,
        extras={**extras, "selective_threshold": sel.threshold, "n_std": n_std, "rule": rule},
    )
    return filtered, sel.kept
