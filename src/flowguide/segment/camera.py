"""The camera model of the motion backend: fitted to the flow, checked against the frames.

Per frame and gap, a global model (affine or homography) is fitted robustly (RANSAC) to flow
vectors sampled on a grid; with the RGB frames at hand each model is checked against a global
phase-correlation translation, and the one that aligns the two frames better is kept (under fast
camera tilts the flow can fail outright). Models chain over consecutive frames to warp any frame
of a window onto frame t (the colour residual, the temporal carry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from flowguide.segment.motion import MotionParams

GRID_POINTS_PER_SIDE = 40  # ~1600 flow vectors per fit: plenty for 6 (or 8) parameters


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


def fit_cameras(flows: np.ndarray, params: MotionParams) -> list[np.ndarray]:
    """The camera model of each of a frame's (G, 2, H, W) flows."""
    return [fit_camera(np.nan_to_num(f.astype(np.float32)), params) for f in flows]


def camera_flow(matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """(2, H, W) flow that the camera model alone produces."""
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float64)
    pts = np.stack([gx, gy, np.ones_like(gx)])
    moved = np.tensordot(matrix, pts, axes=1)
    moved = moved[:2] / np.where(np.abs(moved[2:]) < 1e-9, 1e-9, moved[2:])
    return (moved - pts[:2]).astype(np.float32)


def neighbour_matrix(
    matrices: list[list[np.ndarray]], used_gap: np.ndarray, t: int, s: int
) -> np.ndarray | None:
    """Camera model mapping frame-t pixels to frame s: the one fitted on t's flow to s, or the
    inverse of the one fitted on s's flow to t; None when neither flow was computed."""
    for j, gap in enumerate(used_gap[t]):
        if t + int(gap) == s:
            return matrices[t][j]
    for j, gap in enumerate(used_gap[s]):
        if s + int(gap) == t:
            return np.linalg.inv(matrices[s][j])
    return None


def warp_to_frame(image: np.ndarray, matrix: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``image`` of frame s resampled at ``matrix`` @ (x, y, 1) for every pixel of frame t
    (matrix maps t to s); pixels falling outside it are NaN (0 for masks)."""
    height, width = image.shape[:2]
    if nearest:
        return cv2.warpPerspective(
            image.astype(np.uint8), matrix, (width, height),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0,
        ).astype(bool)  # fmt: skip
    return cv2.warpPerspective(
        image.astype(np.float32), matrix, (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
        borderValue=(np.nan, np.nan, np.nan, np.nan),
    )  # fmt: skip


def _median_colour_error(frame: np.ndarray, other: np.ndarray, matrix: np.ndarray) -> float:
    diff = np.abs(frame - warp_to_frame(other, matrix)).max(axis=2)
    valid = np.isfinite(diff)
    return float(np.median(diff[valid])) if valid.mean() > 0.25 else np.inf


def phase_translation(frame: np.ndarray, other: np.ndarray) -> np.ndarray:
    """3x3 translation from frame t to ``other`` by phase correlation of the grey images: a
    global estimate that does not depend on the flow."""
    grey = [cv2.cvtColor(f.astype(np.float32), cv2.COLOR_RGB2GRAY) for f in (frame, other)]
    window = cv2.createHanningWindow(grey[0].shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[1], window)
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def check_cameras(
    rgb: np.ndarray, matrices: list[list[np.ndarray]], used_gap: np.ndarray
) -> list[list[np.ndarray]]:
    """Photometric check of each fitted camera model: where the flow failed (fast camera
    motion beyond the flow's range), a global phase-correlation translation aligns the two
    frames better; the model with the lower median colour error is kept."""
    rgb = rgb.astype(np.float32)
    checked = []
    for t, (frame_matrices, gaps) in enumerate(zip(matrices, used_gap, strict=True)):
        row = []
        for matrix, gap in zip(frame_matrices, gaps, strict=True):
            s = t + int(gap)
            if not 0 <= s < len(rgb):
                row.append(matrix)
                continue
            options = [matrix, phase_translation(rgb[t], rgb[s])]
            errors = [_median_colour_error(rgb[t], rgb[s], m) for m in options]
            row.append(options[int(np.argmin(errors))])
        checked.append(row)
    return checked


def camera_chain(
    matrices: list[list[np.ndarray]], used_gap: np.ndarray, t: int, s: int
) -> np.ndarray | None:
    """Camera model mapping frame-t pixels to frame s, composed over consecutive frames."""
    total = np.eye(3)
    step = 1 if s > t else -1
    for a in range(t, s, step):
        matrix = neighbour_matrix(matrices, used_gap, a, a + step)
        if matrix is None:
            return None
        total = matrix @ total
    return total
