"""The camera model of the motion backend: fitted to the flow, checked against the frames.

Per frame and gap, a global model (affine or homography) is fitted robustly (RANSAC) to flow
vectors sampled on a grid; with the RGB frames at hand each model is checked against a global
phase-correlation translation, and the one that aligns the two frames better is kept (under fast
camera tilts the flow can fail outright). Over a flat or periodic background both can fail
together (DIS's flow there is its smooth fill-in, not a measurement; the athlete the camera
follows and screen-fixed graphics are static on the screen): an exhaustive search for the integer
translation that best aligns the frames' *textured* pixels (median grey error) then replaces
them (``check_cameras``). Models chain over consecutive frames to warp any frame of a window onto
frame t (the colour residual, the temporal carry).
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


# Textured pixels (grey gradient >= segment.motion.texture_gradient) carry the motion evidence:
# on a flat wall any shift aligns the pixels, and DIS's flow there is its variational fill-in,
# not a measurement. With fewer than this many, a frame is flat and there is no search.
MIN_TEXTURED_PIXELS = 50
# The exhaustive search runs on the coarsest pyramid level whose short side is still at least
# this (fine texture vanishes on coarser ones), then refines by +-1 px per finer level.
SEARCH_TOP_SIDE = 96
MAX_SEARCH_POINTS = 2000  # an even subsample of the textured pixels bounds the cost


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)


def textured_pixels(grey_image: np.ndarray, min_gradient: float) -> np.ndarray:
    """(H, W) bool: pixels whose grey gradient is at least ``min_gradient`` grey levels per
    pixel (3x3 Sobel, whose weights sum to 8 per unit slope)."""
    gx = cv2.Sobel(grey_image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey_image, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy) / 8.0 >= min_gradient


def median_colour_error(frame: np.ndarray, other: np.ndarray, matrix: np.ndarray) -> float:
    """Median colour error (max over RGB) over all pixels after warping frame s onto frame t
    (inf when less than a quarter of them land inside frame s)."""
    diff = np.abs(frame - warp_to_frame(other, matrix)).max(axis=2)
    valid = np.isfinite(diff)
    return float(np.median(diff[valid])) if valid.mean() > 0.25 else np.inf


def textured_error(
    frame: np.ndarray, other: np.ndarray, matrix: np.ndarray, textured: np.ndarray
) -> float:
    """Median grey error over frame t's textured pixels after warping frame s onto it; inf when
    fewer than half of them land inside frame s. The median: the scene's pixels outvote those
    of the athlete the camera follows and of screen-fixed graphics (both static on the screen),
    as long as they are the majority. With too few textured pixels (a flat frame) all pixels
    count: nothing distinguishes the models then."""
    warped = warp_to_frame(other, matrix)
    diff = np.abs(grey(frame) - grey(np.nan_to_num(warped)))
    pixels = textured if textured.sum() >= MIN_TEXTURED_PIXELS else np.ones_like(textured)
    valid = ~np.isnan(warped).any(axis=2) & pixels
    return float(np.median(diff[valid])) if valid.sum() >= 0.5 * pixels.sum() else np.inf


def _best_shift(
    a: np.ndarray, b: np.ndarray, textured: np.ndarray, centre: tuple[int, int], radius: int
) -> tuple[int, int]:
    """The shift (dx, dy) within ``radius`` of ``centre`` minimising the median |a - b shifted|
    over a's textured points that land inside b (shifts keeping fewer than half are skipped)."""
    ys, xs = np.nonzero(textured)
    if len(ys) > MAX_SEARCH_POINTS:
        pick = np.linspace(0, len(ys) - 1, MAX_SEARCH_POINTS).round().astype(np.int64)
        ys, xs = ys[pick], xs[pick]
    height, width = b.shape
    values = a[ys, xs]
    dxs = np.arange(centre[0] - radius, centre[0] + radius + 1)
    x2 = xs[None, :] + dxs[:, None]  # (D, N): all horizontal shifts of one row at once
    x_inside = (x2 >= 0) & (x2 < width)
    x2 = np.clip(x2, 0, width - 1)
    best, shift = np.inf, centre
    rows = np.arange(len(dxs))
    for dy in range(centre[1] - radius, centre[1] + radius + 1):
        y2 = ys + dy
        inside = x_inside & ((y2 >= 0) & (y2 < height))[None, :]
        diff = np.abs(values[None, :] - b[np.clip(y2, 0, height - 1)[None, :], x2])
        count = inside.sum(1)
        # The median over the points inside b (outside ones sort last as inf).
        ordered = np.sort(np.where(inside, diff, np.inf), axis=1)
        median = ordered[rows, np.maximum(count - 1, 0) // 2]
        median[count < 0.5 * len(ys)] = np.inf
        k = int(np.argmin(median))
        if median[k] < best:
            best, shift = float(median[k]), (int(dxs[k]), dy)
    return shift


def search_translation(
    frame: np.ndarray, other: np.ndarray, max_fraction: float, min_gradient: float
) -> np.ndarray | None:
    """3x3 integer translation from frame t to ``other`` that minimises the median grey error
    over frame t's textured pixels, searched exhaustively within ``max_fraction`` of the short
    side (on a pyramid level with short side in [SEARCH_TOP_SIDE, 2 x SEARCH_TOP_SIDE), then
    refined by +-1 px per finer level). A global estimate that flat pixels cannot vote for;
    None when the frame has too few textured pixels."""
    levels = [(grey(frame), grey(other))]
    while min(levels[-1][0].shape) >= 2 * SEARCH_TOP_SIDE:
        levels.append((cv2.pyrDown(levels[-1][0]), cv2.pyrDown(levels[-1][1])))
    shift = (0, 0)
    for depth, (a, b) in enumerate(reversed(levels)):
        textured = textured_pixels(a, min_gradient)
        if textured.sum() < MIN_TEXTURED_PIXELS:
            return None
        if depth == 0:
            radius = int(np.ceil(max_fraction * min(a.shape)))
        else:
            shift, radius = (2 * shift[0], 2 * shift[1]), 1
        shift = _best_shift(a, b, textured, shift, radius)
    return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])


def phase_translation(frame: np.ndarray, other: np.ndarray) -> np.ndarray:
    """3x3 translation from frame t to ``other`` by phase correlation of the grey images: a
    global estimate that does not depend on the flow."""
    window = cv2.createHanningWindow(frame.shape[1::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(grey(frame), grey(other), window)
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def centre_distance(a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> float:
    """Distance in px between where two camera models move the frame centre."""
    centre = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2, 1.0])
    pa, pb = a @ centre, b @ centre
    return float(np.hypot(*(pa[:2] / pa[2] - pb[:2] / pb[2])))


def check_cameras(
    rgb: np.ndarray,
    matrices: list[list[np.ndarray]],
    used_gap: np.ndarray,
    search_fraction: float = 0.0,
    min_gradient: float = 5.0,
) -> list[list[np.ndarray]]:
    """Photometric check of each fitted camera model (where the flow failed: fast camera
    motion beyond its range, a flat or periodic background).

    First the flow's model against a global phase-correlation translation: the one with the
    lower median colour error over the frame is kept (sub-pixel models, as before). Then, with
    ``search_fraction`` > 0, the exhaustive textured search's integer translation replaces it
    when the two move the frame centre more than 1 px apart (a gross failure: within its 1 px
    step the sub-pixel models are the more precise, and an unblurred integer shift would win
    by its sharpness, not its alignment) and it has the lower median grey error over frame t's
    textured pixels (flat pixels align under any model and would drown that vote).
    """
    rgb = rgb.astype(np.float32)
    checked = []
    for t, (frame_matrices, gaps) in enumerate(zip(matrices, used_gap, strict=True)):
        row = []
        textured = textured_pixels(grey(rgb[t]), min_gradient)
        for matrix, gap in zip(frame_matrices, gaps, strict=True):
            s = t + int(gap)
            if not 0 <= s < len(rgb):
                row.append(matrix)
                continue
            options = [matrix, phase_translation(rgb[t], rgb[s])]
            best = options[
                int(np.argmin([median_colour_error(rgb[t], rgb[s], m) for m in options]))
            ]
            if search_fraction > 0:
                found = search_translation(rgb[t], rgb[s], search_fraction, min_gradient)
                if found is not None and centre_distance(found, best, rgb.shape[1:3]) > 1.0:
                    if textured_error(rgb[t], rgb[s], found, textured) < textured_error(
                        rgb[t], rgb[s], best, textured
                    ):
                        best = found
            row.append(best)
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
