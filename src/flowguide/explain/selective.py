"""Selective relevance (paper 002): keep the relevance that changes sharply over time.

G_t = h'_t * R, the 3D Sobel derivative of the relevance map R along time (derivative [-1, 0, 1]
in t, smoothing [1, 2, 1] in h and in w). A voxel is kept when |G_t| > n * sigma, sigma the
standard deviation of G_t over the whole clip (n = 4, the paper's experiments); the selective
map is R there and 0 elsewhere. The paper writes "G_t(r) > sigma"; we threshold the magnitude
so that relevance that appears and relevance that vanishes are both kept.

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


def selective_relevance(relevance: Tensor, n_std: float = 4.0) -> SelectiveResult:
    """The selective relevance map of any (T, H, W) relevance map."""
    started = time.perf_counter()
    grad_t = temporal_sobel(relevance)
    threshold = float(n_std) * float(grad_t.std(unbiased=False))
    kept = grad_t.abs() > threshold
    selected = torch.where(kept, relevance.to(torch.float32), torch.zeros((), device=kept.device))
    return SelectiveResult(selected, kept, threshold, time.perf_counter() - started)


def selective_of(result: ExplanationResult, n_std: float = 4.0) -> ExplanationResult:
    """An explainer's result filtered by selective relevance (cost: the base's plus the filter)."""
    sel = selective_relevance(result.map, n_std)
    return ExplanationResult(
        map=sel.map,
        forward_passes=result.forward_passes,
        backward_passes=result.backward_passes,
        seconds=result.seconds + sel.seconds,
        extras={**result.extras, "selective_threshold": sel.threshold, "n_std": n_std},
    )
