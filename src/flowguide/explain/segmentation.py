"""Splitting a clip into features for removal-based explainers: a regular 3D grid or 3D SLIC.

Both return a (T, H, W) int64 tensor of segment ids 0..S-1 (consecutive) on the clip's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowguide.explain.core import as_int_tuple, to_pixels


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Ids 0..S-1 in order of first label value (SLIC may leave gaps after merging)."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)


def grid_segments(
    shape: Sequence[int], grid: int | Sequence[int], device: torch.device | str = "cpu"
) -> Tensor:
    """Cuboids of a (gt, gh, gw) grid over a (T, H, W) volume; a cell count above a size is cut."""
    sizes = tuple(int(s) for s in shape)
    cells = tuple(min(g, s) for g, s in zip(as_int_tuple(grid, 3, "grid"), sizes, strict=True))
    idx = [(torch.arange(s, device=device) * g // s) for s, g in zip(sizes, cells, strict=True)]
    t, h, w = torch.meshgrid(*idx, indexing="ij")
    return (t * cells[1] + h) * cells[2] + w


def slic_segments(
    pixels_thwc: np.ndarray, n_segments: int = 200, compactness: float = 10.0, **slic_kwargs: Any
) -> np.ndarray:
    """3D SLIC supervoxels of a (T, H, W, C) video in pixel space [0, 1] (Lab distance when C = 3).

    Pixels outside [0, 1] (a normalisation round trip) are clipped: this is an image, not a
    feature space. Weighted feature spaces (SWAG-V) go through ``weighted_slic`` instead.
    """
    from skimage.segmentation import slic

    labels = slic(
        np.clip(pixels_thwc, 0.0, 1.0).astype(np.float64),
        n_segments=int(n_segments),
        compactness=float(compactness),
        channel_axis=-1,
        start_label=0,
        **slic_kwargs,
    )
    return relabel_consecutive(labels)


def clip_pixels_thwc(clip: Tensor, options: dict[str, Any]) -> np.ndarray:
    """Model-space (C, T, H, W) clip -> pixel-space (T, H, W, C) float64 NumPy array."""
    return to_pixels(clip, options).permute(1, 2, 3, 0).detach().cpu().double().numpy()


# Explainers that remove segments of ``segment_clip``; the runner segments a clip once for them
# and passes the ids under SHARED_SEGMENTS in their options.
SEGMENT_USERS = frozenset({"lime", "kernel_shap", "loco", "univariate"})
SHARED_SEGMENTS = "_segments"


def clip_segments(clip: Tensor, options: dict[str, Any]) -> Tensor:
    """The shared segmentation when the runner passed one, else ``segment_clip``."""
    shared = options.get(SHARED_SEGMENTS)
    return shared.to(clip.device) if shared is not None else segment_clip(clip, options)


def segment_clip(clip: Tensor, options: dict[str, Any]) -> Tensor:
    """Segment ids (T, H, W) of a clip by ``options['segmentation']``.

    ``{"method": "slic", "n_segments": 200, "compactness": 10}`` (003's choice for LIME, Kernel
    SHAP, LOCO and univariate predictors) or ``{"method": "grid", "grid": [4, 7, 7]}``.
    """
    seg = {"method": "slic", "n_segments": 200, "compactness": 10.0, "grid": (4, 7, 7)}
    seg.update(options.get("segmentation") or {})
    if seg["method"] == "grid":
        return grid_segments(clip.shape[1:], seg["grid"], clip.device)
    if seg["method"] == "slic":
        labels = slic_segments(
            clip_pixels_thwc(clip, options), seg["n_segments"], seg["compactness"]
        )
        return torch.from_numpy(labels).to(clip.device)
    raise ValueError(f"segmentation method must be 'slic' or 'grid', not {seg['method']!r}")
