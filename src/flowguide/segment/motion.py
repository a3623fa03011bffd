"""Weight-free motion layers: camera motion fitted to the flow, residual motion, components.

Per frame: for every gap, a global camera model (affine or homography) is fitted robustly
(RANSAC) to flow vectors sampled on a grid; the residual flow (flow minus camera flow, divided
by |gap| so that gaps are comparable) is averaged over gaps; it is thresholded at
``median + threshold * 1.4826 * MAD`` (and at least ``min_residual_px``), cleaned by a
morphological opening then closing, and split into 8-connected components. Each component's
score is the sum of its residual magnitudes (= mean residual magnitude x area, in pixels^2 per
frame): large regions that move clearly against the camera rank first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

GRID_POINTS_PER_SIDE = 40  # ~1600 flow vectors per fit: plenty for 6 (or 8) parameters
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class MotionParams:
    camera_model: str = "affine"
    ransac_threshold: float = 1.0
    threshold: float = 3.0
    min_residual_px: float = 0.5
    min_area_fraction: float = 0.001
    morph_kernel: int = 3
    max_objects: int = 10

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MotionParams:
        motion = dict(options.get("motion", {}))
        return cls(max_objects=int(options.get("max_objects", 10)), **motion)


def grid_points(height: int, width: int, per_side: int = GRID_POINTS_PER_SIDE) -> np.ndarray:
    """(N, 2) float32 pixel positions (x, y) on a regular grid covering the frame."""
    ys = np.linspace(0, height - 1, min(per_side, height)).round().astype(np.int64)
    xs = np.linspace(0, width - 1, min(per_side, width)).round().astype(np.int64)
    gx, gy = np.meshgrid(np.unique(xs), np.unique(ys))
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def fit_camera(flow: np.ndarray, params: MotionParams) -> np.ndarray:
    """3x3 matrix mapping frame-t pixels to their camera-only position in the target frame."""
    height, width = flow.shape[1:]
    src = grid_points(height, width)
    xi, yi = src[:, 0].astype(np.int64), src[:, 1].astype(np.int64)
    dst = src + np.stack([flow[0, yi, xi], flow[1, yi, xi]], axis=1)
    matrix = None
    if params.camera_model == "homography":
        matrix, _ = cv2.findHomography(src, dst, cv2.RANSAC, params.ransac_threshold)
    else:
        affine, _ = cv2.estimateAffine2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=params.ransac_threshold
        )
        if affine is not None:
            matrix = np.vstack([affine, [0.0, 0.0, 1.0]])
    if matrix is None:  # degenerate field (e.g. all-zero flow): the median translation
        matrix = np.eye(3)
        matrix[:2, 2] = np.median(dst - src, axis=0)
    return matrix


def camera_flow(matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """(2, H, W) flow that the camera model alone produces."""
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float64)
    pts = np.stack([gx, gy, np.ones_like(gx)])
    moved = np.tensordot(matrix, pts, axes=1)
    moved = moved[:2] / np.where(np.abs(moved[2:]) < 1e-9, 1e-9, moved[2:])
    return (moved - pts[:2]).astype(np.float32)


def residual_magnitude(flows: np.ndarray, gaps: np.ndarray, params: MotionParams) -> np.ndarray:
    """(G, 2, H, W) flows of one frame and their gaps -> (H, W) residual speed, px per frame."""
    height, width = flows.shape[2:]
    total = np.zeros((height, width), dtype=np.float32)
    for flow, gap in zip(flows, gaps, strict=True):
        flow = np.nan_to_num(flow.astype(np.float32))
        residual = flow - camera_flow(fit_camera(flow, params), height, width)
        total += np.hypot(residual[0], residual[1]) / max(abs(int(gap)), 1)
    return total / len(flows)


def motion_threshold(magnitude: np.ndarray, params: MotionParams) -> float:
    """Robust threshold: median + k * sigma, sigma estimated from the MAD."""
    median = float(np.median(magnitude))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(magnitude - median)))
    return max(median + params.threshold * sigma, params.min_residual_px)


def moving_mask(magnitude: np.ndarray, params: MotionParams) -> np.ndarray:
    mask = (magnitude > motion_threshold(magnitude, params)).astype(np.uint8)
    if params.morph_kernel > 1:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (params.morph_kernel, params.morph_kernel)
        )
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask.astype(bool)


def motion_components(magnitude: np.ndarray, params: MotionParams) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) bool component masks and (K,) scores (sum of residual magnitude) of one frame."""
    mask = moving_mask(magnitude, params)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    min_area = params.min_area_fraction * mask.size
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    if not keep:
        return np.zeros((0, *mask.shape), dtype=bool), np.zeros(0, dtype=np.float64)
    sums = np.bincount(labels.ravel(), weights=magnitude.ravel(), minlength=count)
    masks = np.stack([labels == i for i in keep])
    return masks, sums[keep]


def segment_frame_motion(
    flows: np.ndarray, gaps: np.ndarray, params: MotionParams
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates of one frame: (G, 2, H, W) flows -> (masks (K,H,W), scores (K,))."""
    return motion_components(residual_magnitude(flows, gaps, params), params)
