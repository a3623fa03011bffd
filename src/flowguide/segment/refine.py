"""From motion evidence to object silhouettes (``segment.motion.refine``), piece by piece.

The residual cues of ``motion.py`` fire where colour or flow *changes*: on real footage that is
the edges of a moving object and little of its uniform inside, so the components are slivers.
The refinement turns a frame's moving pixels into regions, one group of pieces at a time, so
that a whole object is never joined with its neighbours into one region that then swallows the
background between them (what a closing across the frame followed by GrabCut did on SynthDive:
the diver joined with the scoreboard's fragments, mean IoU 0.668 -> 0.392):

1. Temporal accumulation: the moving masks of the frames within ``accumulate`` of t, carried
   onto frame t along the dense flow (which includes the object's own motion), are OR-ed: an
   object's edges move over a few frames and together outline it.
2. Whole pieces stay as they are: an 8-connected piece of the frame's own moving mask that
   covers ``dense_fraction`` of its convex hull and is at least as large as the closing's disk
   is a silhouette already (a small textured athlete, as in SynthDive); smaller pieces are
   fragments, whatever their shape (a speck is trivially dense).
3. Groups: the accumulated pixels one pixel or more away from the whole pieces are grouped by
   a closing of radius ``close_fraction`` of the short side; each group's region is the convex
   hull of its own pixels (a broken outline encloses the object).
4. A colour model per group, seeded only from the motion evidence: on a crop around the hull,
   RGB histograms of the group's moving pixels of frame t (foreground) and of a ring of
   ``ring_fraction`` of the short side around the hull (background) mark each hull pixel as
   likelier foreground or not; OpenCV's GrabCut then settles the crop with the moving pixels
   fixed foreground, the likelier-foreground hull pixels probable foreground, the ring probable
   background and the rest of the crop background. The likelier-foreground map is smoothed by
   a 5x5 median (a majority vote) first. With ``colour_gate`` the hull pixels whose colour is
   likelier background are fixed background: GrabCut can then only remove from the
   colour-gated region, never grow into the flat background that an object's ghost pixels
   seed into its foreground model.

A group is *not* grown (it keeps the frame's own moving pixels) when its hull touches the
screen-fixed overlay map (``segment/overlay.py``: a score bug's fragments are no object), or
when the crop holds too few pixels of either class for GrabCut's colour models. Grown regions
stay one pixel away from the whole pieces, so they remain candidates of their own. Scores stay
the summed residual evidence (in threshold units) of each final component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from flowguide.utils.maskwarp import carry_mask
from flowguide.utils.morphology import disk

GMM_SAMPLES = 5  # GrabCut's colour models are 5-component mixtures, fitted by k-means
HISTOGRAM_BINS = 8  # per RGB channel: 32 grey levels a cell, coarse enough for ~100 samples


@dataclass(frozen=True)
class RefineParams:
    enabled: bool = True
    accumulate: int = 2
    close_fraction: float = 0.08
    grabcut_iterations: int = 3
    ring_fraction: float = 0.08
    dense_fraction: float = 0.5
    colour_gate: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> RefineParams:
        return cls(**(options or {}))


def close_padded(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing that does not grow masks along the image border."""
    radius = max(radius, 1)
    pad = radius + 1
    closed = cv2.morphologyEx(np.pad(mask.astype(np.uint8), pad), cv2.MORPH_CLOSE, disk(radius))
    return closed[pad:-pad, pad:-pad].astype(bool)


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of all pixels of ``mask`` (empty for an empty mask)."""
    out = np.zeros(mask.shape, np.uint8)
    ys, xs = np.nonzero(mask)
    if len(xs):
        cv2.fillConvexPoly(out, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
    return out.astype(bool)


def whole_pieces(mask: np.ndarray, dense_fraction: float, min_area: float) -> np.ndarray:
    """The 8-connected pieces of ``mask`` of at least ``min_area`` pixels that cover at least
    ``dense_fraction`` of their convex hull (silhouettes already)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    whole = np.zeros(mask.shape, bool)
    for k in range(1, count):
        if stats[k, cv2.CC_STAT_AREA] < min_area:
            continue
        piece = labels == k
        if piece.sum() >= dense_fraction * convex_hull(piece).sum():
            whole |= piece
    return whole


def likelier_foreground(
    rgb: np.ndarray, foreground: np.ndarray, background: np.ndarray, bins: int = HISTOGRAM_BINS
) -> np.ndarray:
    """(H, W) bool: pixels whose colour cell is more frequent among the ``foreground`` pixels
    than among the ``background`` ones (normalised RGB histograms of ``bins``^3 cells)."""
    q = rgb.astype(np.int64) * bins // 256
    cells = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    size = bins**3
    fg = np.bincount(cells[foreground], minlength=size) / max(int(foreground.sum()), 1)
    bg = np.bincount(cells[background], minlength=size) / max(int(background.sum()), 1)
    return (fg > bg)[cells]


def grabcut_piece(
    rgb: np.ndarray, hull: np.ndarray, sure: np.ndarray, ring: int, iters: int, gate: bool
) -> np.ndarray | None:
    """GrabCut on the crop around ``hull``, seeded from the evidence ``sure`` (fixed
    foreground; see the module docstring, step 4). Returns the full-frame foreground, or None
    when the crop holds fewer than ``GMM_SAMPLES`` pixels of either class."""
    kernel = disk(max(ring, 1))
    around = cv2.dilate(hull.astype(np.uint8), kernel).astype(bool)
    ys, xs = np.nonzero(cv2.dilate(around.astype(np.uint8), kernel))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop, inside = rgb[y0:y1, x0:x1], hull[y0:y1, x0:x1]
    sure, around = sure[y0:y1, x0:x1], around[y0:y1, x0:x1]
    # A 5x5 majority vote: the per-pixel colour test is speckled inside a textured object,
    # and fixed-background specks would let GrabCut's smoothness cut the object apart.
    likelier = cv2.medianBlur(likelier_foreground(crop, sure, around & ~inside).astype(np.uint8), 5)
    likelier = likelier.astype(bool)
    init = np.full(inside.shape, cv2.GC_BGD, np.uint8)
    init[around] = cv2.GC_PR_BGD
    init[inside & ~likelier] = cv2.GC_BGD if gate else cv2.GC_PR_BGD
    init[inside & likelier] = cv2.GC_PR_FGD
    init[sure] = cv2.GC_FGD
    foreground = (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)
    if foreground.sum() < GMM_SAMPLES or (~foreground).sum() < GMM_SAMPLES:
        return None
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(crop[..., ::-1]).astype(np.uint8)
    cv2.grabCut(bgr, init, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    out = np.zeros(hull.shape, bool)
    out[y0:y1, x0:x1] = (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)
    return out


def refine_frame(
    rgb: np.ndarray,
    own: np.ndarray,
    accumulated: np.ndarray,
    params: RefineParams,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """Silhouette mask of one frame from its own moving mask, the accumulated one and the
    screen-fixed overlay map ``fixed`` (H, W) (None: no overlay); see the module docstring."""
    short = min(rgb.shape[:2])
    radius = round(params.close_fraction * short)
    whole = whole_pieces(own, params.dense_fraction, np.pi * radius**2)
    near = cv2.dilate(whole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    sparse = accumulated & ~near
    out = whole.copy()
    closed = close_padded(sparse, radius) & ~near
    count, groups = cv2.connectedComponents(closed.astype(np.uint8), connectivity=8)
    ring = max(2, round(params.ring_fraction * short))
    for k in range(1, count):
        group = groups == k
        hull = convex_hull(sparse & group) & ~near
        grown = None
        if params.grabcut_iterations > 0 and hull.any():
            if fixed is None or not (hull & fixed).any():
                grown = grabcut_piece(
                    rgb, hull, own & hull, ring, params.grabcut_iterations, params.colour_gate
                )
        out |= (own & group) if grown is None else (grown & ~near)
    return out


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
