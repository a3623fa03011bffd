"""Weight-free motion layers: camera motion fitted to the flow, residual motion, components.

The camera model lives in ``segment/camera.py``, the removal of screen-fixed overlays (score
bugs, logos) in ``segment/overlay.py``, the refinement of edge slivers into regions (on by
default) in ``segment/refine.py``.

Per frame, for every gap, a global camera model (affine or homography) is fitted robustly
(RANSAC) to flow vectors sampled on a grid. With the RGB frames at hand
(``photometric_check``), each model is checked against a global phase-correlation translation
and the one that aligns the two frames better (lower median colour error) is kept: under fast
camera tilts the flow can fail outright. Where both lie more than 1 px from the integer
translation that best aligns the frames' textured pixels (``camera_search``,
``texture_gradient``), that translation replaces them. Two residual cues measure what moves
against the camera:

- ``flow``: the residual flow (flow minus camera flow, divided by |gap| so that gaps are
  comparable), averaged over gaps, in px per frame;
- ``color``: the camera-compensated colour difference, in grey levels (max over RGB): the frames
  within ``color_window`` of t are warped onto frame t with the chained camera models and
  frame t is compared with their per-pixel median, a background in which an object moving
  within the window does not appear (window 1: the smaller of the differences to t-1 and t+1).
  Near the clip's ends the window is shifted to keep its 2 * window + 1 frames: cut short, an
  athlete still on the board for the first few frames would fill most of it.
  It is sharp where the flow is smooth, and finds an object that pauses for a few frames.

``cue`` picks ``flow``, ``color`` or ``flow_and_color``. A cue is thresholded at
``median + k * 1.4826 * MAD`` with a floor (``threshold``/``min_residual_px`` for the flow,
``color_threshold``/``min_color_diff`` for the colour); with ``flow_and_color`` a pixel moves
when its colour residual passes and its flow residual passes ``flow_gate`` times the flow
threshold. The mask is cleaned by a morphological opening then closing, and split into
8-connected components. A component's score is the sum over its pixels of the residual divided
by its threshold: large regions that clearly move against the camera rank first.

Temporal carry (``carry_frames`` = k > 0): an object that stops moving against the scene leaves
no residual. A frame where no component was found takes the best component of the nearest
frame within k frames that has components of its own (the earlier one on ties), moved by the
fitted camera motion between the two frames (the object is assumed still in the scene), with
that component's score. It is never carried twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from flowguide.segment.camera import (
    camera_chain,
    camera_flow,
    check_cameras,
    fit_cameras,
    warp_to_frame,
)
from flowguide.segment.overlay import confirmed_overlay, overlay_map, remove_overlays
from flowguide.segment.refine import RefineParams, accumulate, refine_frame

MAD_TO_SIGMA = 1.4826
CUES = ("flow", "color", "flow_and_color")


@dataclass(frozen=True)
class MotionParams:
    camera_model: str = "affine"
    ransac_threshold: float = 1.0
    threshold: float = 3.0
    min_residual_px: float = 0.5
    min_area_fraction: float = 0.001
    morph_kernel: int = 3
    max_objects: int = 10
    cue: str = "color"
    color_threshold: float = 3.0
    min_color_diff: float = 20.0
    color_window: int = 8
    color_tolerance_px: int = 0
    flow_gate: float = 0.5
    photometric_check: bool = True
    camera_search: float = 0.25
    texture_gradient: float = 5.0
    carry_frames: int = 0
    overlay_fraction: float = 0.9
    overlay_tolerance: float = 25.0
    refine: RefineParams = field(default_factory=RefineParams)

    def __post_init__(self) -> None:
        if self.cue not in CUES:
            raise ValueError(f"segment.motion.cue must be one of {CUES}, got {self.cue!r}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MotionParams:
        motion = dict(options.get("motion", {}))
        refine = RefineParams.from_options(motion.pop("refine", None))
        return cls(max_objects=int(options.get("max_objects", 10)), refine=refine, **motion)

    @property
    def needs_rgb(self) -> bool:
        return (
            self.cue != "flow"
            or self.photometric_check
            or self.refine.enabled
            or self.overlay_fraction < 1
        )


def residual_magnitude(
    flows: np.ndarray,
    gaps: np.ndarray,
    params: MotionParams,
    matrices: list[np.ndarray] | None = None,
) -> np.ndarray:
    """(G, 2, H, W) flows of one frame and their gaps -> (H, W) residual speed, px per frame."""
    height, width = flows.shape[2:]
    matrices = fit_cameras(flows, params) if matrices is None else matrices
    total = np.zeros((height, width), dtype=np.float32)
    for flow, gap, matrix in zip(flows, gaps, matrices, strict=True):
        flow = np.nan_to_num(flow.astype(np.float32))
        residual = flow - camera_flow(matrix, height, width)
        total += np.hypot(residual[0], residual[1]) / max(abs(int(gap)), 1)
    return total / len(flows)


def robust_threshold(values: np.ndarray, k: float, floor: float) -> float:
    """median + k * sigma (sigma estimated from the MAD), at least ``floor``."""
    median = float(np.median(values))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    return max(median + k * sigma, floor)


def motion_threshold(magnitude: np.ndarray, params: MotionParams) -> float:
    """Threshold of the flow residual."""
    return robust_threshold(magnitude, params.threshold, params.min_residual_px)


def clean_mask(mask: np.ndarray, params: MotionParams) -> np.ndarray:
    """Morphological opening (drops specks) then closing (fills cracks)."""
    mask = mask.astype(np.uint8)
    if params.morph_kernel > 1:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (params.morph_kernel, params.morph_kernel)
        )
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask.astype(bool)


def moving_mask(magnitude: np.ndarray, params: MotionParams) -> np.ndarray:
    return clean_mask(magnitude > motion_threshold(magnitude, params), params)


def components(
    mask: np.ndarray, evidence: np.ndarray, params: MotionParams
) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) 8-connected components of ``mask`` of at least the minimum area, and their
    scores (sum of ``evidence`` over the component)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    min_area = params.min_area_fraction * mask.size
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    if not keep:
        return np.zeros((0, *mask.shape), dtype=bool), np.zeros(0, dtype=np.float64)
    sums = np.bincount(labels.ravel(), weights=evidence.ravel(), minlength=count)
    return np.stack([labels == i for i in keep]), sums[keep]


def motion_components(magnitude: np.ndarray, params: MotionParams) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) bool component masks and (K,) scores (sum of residual magnitude) of one frame."""
    return components(moving_mask(magnitude, params), magnitude, params)


def segment_frame_motion(
    flows: np.ndarray, gaps: np.ndarray, params: MotionParams
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates of one frame from the flow cue: (G, 2, H, W) flows -> (masks (K,H,W),
    scores (K,))."""
    return motion_components(residual_magnitude(flows, gaps, params), params)


# --- the camera-compensated colour difference ----------------------------------------------------


def colour_residual(
    rgb: np.ndarray,
    matrices: list[list[np.ndarray]],
    used_gap: np.ndarray,
    t: int,
    window: int = 1,
    tolerance_px: int = 0,
) -> np.ndarray:
    """(H, W) camera-compensated colour difference of frame t, grey levels (max over RGB).

    The frames within ``window`` of t are warped onto frame t with the chained camera models.
    ``window`` = 1: the smaller of the differences to frames t-1 and t+1, so a pixel counts only
    when it differs from both (the object's present position, not the ghost of where it was).
    ``window`` > 1: the difference to their per-pixel median, a background in which an object
    that moves within the window does not appear (a pixel must be covered by the object in fewer
    than half of the frames); near the clip's ends the window is shifted into the clip so that
    it keeps 2 * ``window`` + 1 frames. ``tolerance_px`` > 0 compares each pixel with the range
    of the reference over that neighbourhood, which forgives sub-pixel camera-fit and
    compression misalignment at sharp edges. Pixels seen by no other frame are 0.
    """
    frame = rgb[t].astype(np.float32)
    warped = []
    start = max(0, min(t - window, len(rgb) - 2 * window - 1))
    for s in range(start, min(len(rgb), start + 2 * window + 1)):
        matrix = None if s == t else camera_chain(matrices, used_gap, t, s)
        if matrix is not None:
            warped.append(warp_to_frame(rgb[s], matrix))
    if not warped:
        return np.zeros(frame.shape[:2], np.float32)
    if window == 1:
        return np.nan_to_num(
            np.fmin.reduce([_difference(frame, w, tolerance_px) for w in warped]), nan=0.0
        ).astype(np.float32)
    reference = nan_median(np.stack(warped))
    return np.nan_to_num(_difference(frame, reference, tolerance_px), nan=0.0).astype(np.float32)


def nan_median(stack: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaNs (NaN where all are NaN); np.nanmedian's result, without
    its slow per-pixel path."""
    ordered = np.sort(stack, axis=0)  # NaNs sort last
    count = np.isfinite(ordered).sum(axis=0)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], axis=0)[0]
    high = np.take_along_axis(ordered, (count // 2)[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, 0.5 * (low + high), np.nan)


def _difference(frame: np.ndarray, reference: np.ndarray, tolerance_px: int) -> np.ndarray:
    """Max over channels of how far ``frame`` lies outside the reference's local range
    (NaN where the reference is NaN)."""
    if tolerance_px <= 0:
        return np.abs(frame - reference).max(axis=2)
    invalid = np.isnan(reference).any(axis=2)
    ref = np.nan_to_num(reference, nan=0.0).astype(np.float32)
    kernel = np.ones((2 * tolerance_px + 1,) * 2, np.uint8)
    high = cv2.dilate(ref, kernel, borderType=cv2.BORDER_REPLICATE)
    low = cv2.erode(ref, kernel, borderType=cv2.BORDER_REPLICATE)
    outside = np.maximum(np.maximum(frame - high, low - frame), 0.0).max(axis=2)
    outside[invalid] = np.nan
    return outside


def frame_evidence(
    flow_residual: np.ndarray, color_residual: np.ndarray | None, params: MotionParams
) -> tuple[np.ndarray, np.ndarray]:
    """The moving mask of one frame (before cleaning) and the per-pixel score (residual in
    units of its threshold)."""
    flow_unit = flow_residual / motion_threshold(flow_residual, params)
    if params.cue == "flow" or color_residual is None:
        return flow_unit > 1, flow_unit
    colour_thr = robust_threshold(color_residual, params.color_threshold, params.min_color_diff)
    colour_unit = color_residual / colour_thr
    if params.cue == "color":
        return colour_unit > 1, colour_unit
    return (colour_unit > 1) & (flow_unit > params.flow_gate), colour_unit


# --- the video-level chain ------------------------------------------------------------------


Candidates = tuple[np.ndarray, np.ndarray]


def carry_candidates(
    candidates: list[Candidates],
    matrices: list[list[np.ndarray]],
    used_gap: np.ndarray,
    carry_frames: int,
) -> list[Candidates]:
    """Frames with no component take the best one of the nearest frame (within
    ``carry_frames``) that found some, moved by the camera motion; see the module docstring."""
    found = [len(scores) > 0 for _, scores in candidates]
    out = list(candidates)
    for t, has in enumerate(found):
        if has:
            continue
        for distance in range(1, carry_frames + 1):
            sources = [s for s in (t - distance, t + distance) if 0 <= s < len(found) and found[s]]
            if not sources:
                continue
            s = sources[0]
            masks, scores = candidates[s]
            best = int(np.argmax(scores))
            to_source = camera_chain(matrices, used_gap, t, s)
            if to_source is None:
                continue
            moved = warp_to_frame(masks[best], to_source, nearest=True)
            if moved.any():
                out[t] = (moved[None], scores[best : best + 1])
            break
    return out


def camera_models(
    flow: np.ndarray,
    used_gap: np.ndarray,
    n_frames: int,
    params: MotionParams,
    rgb: np.ndarray | None = None,
) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Per frame, the 3x3 camera model of each used gap (RANSAC on the flow, then, with the RGB
    frames, the photometric check) and the gaps (n_frames, G). The last frame reuses the last
    flow frame's gaps (its backward flow)."""
    last = len(flow) - 1
    matrices = [fit_cameras(flow[min(t, last)], params) for t in range(n_frames)]
    gaps = np.asarray(used_gap)[[min(t, last) for t in range(n_frames)]]
    if rgb is not None and params.photometric_check:
        matrices = check_cameras(rgb, matrices, gaps, params.camera_search, params.texture_gradient)
    return matrices, gaps


def segment_video_motion(
    flow: np.ndarray,
    used_gap: np.ndarray,
    n_frames: int,
    params: MotionParams,
    rgb: np.ndarray | None = None,
) -> list[Candidates]:
    """Candidates (masks (K,H,W), scores (K,)) of every frame of a video from its flow
    (N, G, 2, H, W) with used gaps (N, G), and its RGB frames (T, H, W, 3) for the colour cue."""
    if params.needs_rgb and rgb is None:
        raise ValueError(f"segment.motion.cue {params.cue!r} needs the video's RGB frames")
    if rgb is not None and rgb.shape[1:3] != flow.shape[-2:]:
        raise ValueError(f"RGB frames {rgb.shape[1:3]} do not match the flow {flow.shape[-2:]}")
    n_flow = len(flow)
    matrices, gaps = camera_models(flow, used_gap, n_frames, params, rgb)
    moving, evidence = [], []
    for t in range(n_frames):
        i = min(t, n_flow - 1)
        flow_res = residual_magnitude(flow[i], gaps[t], params, matrices[t])
        colour = None
        if params.needs_rgb:
            colour = colour_residual(
                rgb, matrices, gaps, t, params.color_window, params.color_tolerance_px
            )
        mask, score = frame_evidence(flow_res, colour, params)
        moving.append(clean_mask(mask, params))
        evidence.append(score)
    # The overlay map reads the residual itself (before refinement grows regions into the
    # screen-static background).
    fixed = None  # screen-fixed pixels that move against the scene: no object grows over them
    if rgb is not None and params.overlay_fraction < 1:
        fixed = overlay_map(rgb, moving, params.overlay_tolerance, params.morph_kernel)
        overlay = confirmed_overlay(moving, fixed, params.overlay_fraction)
        moving = [remove_overlays(m, overlay, params.overlay_fraction) for m in moving]
    if params.refine.enabled:
        moving = [
            refine_frame(
                rgb[t], moving[t],
                accumulate(moving, flow, np.asarray(used_gap), t, params.refine.accumulate),
                params.refine, fixed,
            )
            for t in range(n_frames)
        ]  # fmt: skip
    candidates = [components(m, e, params) for m, e in zip(moving, evidence, strict=True)]
    if params.carry_frames > 0:
        candidates = carry_candidates(candidates, matrices, gaps, params.carry_frames)
    return candidates
