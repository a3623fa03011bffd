"""From motion evidence to object silhouettes (``segment.motion.refine``), with library tools.

The residual cues of ``motion.py`` fire where colour or flow *changes*: on real footage that is
the edges of a moving object and little of its uniform inside, so the components are slivers.
The refinement turns a frame's moving pixels into regions in three steps:

1. Temporal accumulation: the moving masks of the frames within ``accumulate`` of t, carried
   onto frame t along the dense flow (which includes the object's own motion), are OR-ed: an
   object's edges move over a few frames and together outline it.
2. Region-level evidence: a closing bridges the gaps between an object's edges and each
   connected piece is replaced by its convex hull (a broken outline encloses the object); the
   frame is cut into SLIC superpixels (scikit-image) and a superpixel counts when at least
   ``superpixel_share`` of its pixels lie in that region. Superpixels follow image edges, so
   the region does too.
3. A colour model: OpenCV's GrabCut, initialised with the superpixel region as probable
   foreground, a ring around it as probable background and the rest as background, settles
   each pixel by a foreground/background colour mixture and a smoothness term. Pixels the
   moving evidence itself marked stay foreground.

Only sparse evidence is refined: a piece whose moving pixels already cover ``dense_fraction``
of its convex hull is a silhouette already (a small textured athlete, as in SynthDive) and keeps
the frame's own moving pixels; accumulation, hulls and GrabCut would only fatten it.

Scores stay the summed residual evidence (in threshold units) of each final component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from flowguide.utils.maskwarp import carry_mask


@dataclass(frozen=True)
class RefineParams:
    enabled: bool = False
    accumulate: int = 2
    close_fraction: float = 0.04
    superpixels: int = 300
    superpixel_share: float = 0.5
    grabcut_iterations: int = 3
    ring_fraction: float = 0.08
    dense_fraction: float = 0.5

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> RefineParams:
        return cls(**(options or {}))


def _disk(radius: int) -> np.ndarray:
    size = 2 * max(radius, 1) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def close_padded(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing that does not grow masks along the image border."""
    pad = max(radius, 1) + 1
    closed = cv2.morphologyEx(np.pad(mask.astype(np.uint8), pad), cv2.MORPH_CLOSE, _disk(radius))
    return closed[pad:-pad, pad:-pad].astype(bool)


def component_hulls(mask: np.ndarray) -> np.ndarray:
    """Each 8-connected component replaced by its convex hull: an object's broken outline
    becomes the region it encloses (GrabCut then removes what is background by colour)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    out = np.zeros(mask.shape, np.uint8)
    for k in range(1, count):
        ys, xs = np.nonzero(labels == k)
        hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
        cv2.fillConvexPoly(out, hull, 1)
    return out.astype(bool)


def superpixel_region(rgb: np.ndarray, moving: np.ndarray, params: RefineParams) -> np.ndarray:
    """Superpixels with at least ``superpixel_share`` of their pixels moving."""
    from skimage.segmentation import slic

    segments = slic(rgb, n_segments=params.superpixels, compactness=10, start_label=0)
    inside = np.bincount(segments[moving].ravel(), minlength=segments.max() + 1)
    total = np.bincount(segments.ravel(), minlength=segments.max() + 1)
    return (inside / np.maximum(total, 1) >= params.superpixel_share)[segments]


def grabcut(
    rgb: np.ndarray, region: np.ndarray, sure: np.ndarray, ring: int, iters: int
) -> np.ndarray:
    """GrabCut from a region: probable foreground inside, probable background in a ring of
    ``ring`` px around it, background beyond; ``sure`` pixels are fixed foreground."""
    if not region.any() or region.all():
        return region
    init = np.full(region.shape, cv2.GC_BGD, np.uint8)
    init[cv2.dilate(region.astype(np.uint8), _disk(ring)).astype(bool)] = cv2.GC_PR_BGD
    init[region] = cv2.GC_PR_FGD
    init[sure] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(rgb[..., ::-1]).astype(np.uint8)
    try:
        cv2.grabCut(bgr, init, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few pixels of one class for its colour model: keep the region
        return region
    return (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)


def refine_frame(
    rgb: np.ndarray, own: np.ndarray, accumulated: np.ndarray, params: RefineParams
) -> np.ndarray:
    """Silhouette mask of one frame from its own moving mask and the accumulated one.

    Only sparse evidence is refined: a piece of the (closed) accumulated mask that already
    covers at least ``dense_fraction`` of its convex hull is a silhouette, and keeps the frame's
    own moving pixels; sparser pieces (outlines, slivers) become their hulls, snapped to
    superpixels and settled by GrabCut."""
    short = min(rgb.shape[:2])
    closed = close_padded(accumulated, round(params.close_fraction * short))
    count, pieces = cv2.connectedComponents(closed.astype(np.uint8), connectivity=8)
    dense = np.zeros(own.shape, bool)
    sparse = np.zeros(own.shape, np.uint8)
    for k in range(1, count):
        piece = pieces == k
        ys, xs = np.nonzero(piece)
        hull = np.zeros(own.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
        hull = hull.astype(bool)
        if (accumulated & hull).sum() >= params.dense_fraction * hull.sum():
            dense |= own & piece
        else:
            sparse |= hull
    sparse = sparse.astype(bool)
    if not sparse.any():
        return dense
    region = superpixel_region(rgb, sparse, params) | (accumulated & sparse)
    if params.grabcut_iterations > 0:
        ring = max(2, round(params.ring_fraction * short))
        sure = accumulated & region
        region = grabcut(rgb, region, sure, ring, params.grabcut_iterations) | sure
    return region | dense


def accumulate(
    moving: list[np.ndarray], flow: np.ndarray, used_gap: np.ndarray, t: int, window: int
) -> np.ndarray:
    """OR of the moving masks of frames t - window .. t + window, each carried onto frame t
    along the dense flow one frame at a time (utils/maskwarp.py): the flow includes the
    object's own motion, so a fast object's edges land on it instead of trailing behind."""
    total = moving[t].copy()
    for step in (-1, 1):  # the frames before t, then after
        far = min(max(t + step * window, 0), len(moving) - 1)
        carried = None
        for s in range(far, t, -step):  # farthest first, gathering masks on the way to t
            carried = moving[s] if carried is None else carried | moving[s]
            carried = carry_mask(carried, flow, used_gap, s, s - step)
            if carried is None:  # no stored flow links the two frames
                break
        if carried is not None:
            total |= carried
    return total
