"""Screen-fixed overlays: graphics that stay put on the screen while the camera moves.

Broadcast footage carries score bugs, channel logos and timestamps drawn on the screen, not in
the scene. Under a moving camera the camera-compensated residual sees them move against the
scene (they do not follow the camera model), so they come out as confident, compact moving
objects, and a score bug in the middle of the frame wins the thesis rule's central band.

An overlay pixel is one that is *screen-static* (its colour within ``tolerance`` grey levels of
its clip median) and yet *moves against the scene* (in the moving mask), both in at least
``PERSISTENCE`` of the frames: fixed on the screen while the camera-compensated scene behind it
moves.
A flat background is screen-static under a pan too, but it has no residual; an object in the
scene does not stay pixel-identical on the screen for most of a clip (a person moves, turns and
deforms even when the camera follows them), so at most a small patch of it qualifies. The map
is grown by ``margin`` pixels (the residual's halo around a graphic), and a candidate component
with at least ``fraction`` of its pixels inside it is dropped as an overlay. With a static
camera nothing moves against the scene for most of a clip except a persistent moving texture,
which must also stay screen-static to be dropped.

Limit: an overlay that appears or changes during the clip (a score update) is screen-static only
if it is unchanged for the whole clip; it is then not recognised.
"""

from __future__ import annotations

import cv2
import numpy as np

# Share of the clip's frames in which an overlay pixel must keep its colour and be in the moving
# mask: a graphic stays for the whole clip (SynthDive's score bug: in the moving mask in 0.8-1.0
# of the frames, the rest being lulls of the camera), while a slow object that covers a pixel
# for two thirds of the clip is not an overlay.
PERSISTENCE = 0.75


def screen_static(rgb: np.ndarray, tolerance: float) -> np.ndarray:
    """(T, H, W, 3) frames -> (H, W) bool: pixels within ``tolerance`` grey levels (max over
    RGB) of their clip median in ``PERSISTENCE`` of the frames (lossy coding makes small
    saturated graphics flicker in a few frames; a slow object leaves a pixel it covers for a
    third of the clip, which a median would not see)."""
    frames = rgb.astype(np.float32)
    deviation = np.abs(frames - np.median(frames, axis=0)).max(axis=3)
    return np.quantile(deviation, PERSISTENCE, axis=0) <= tolerance


def overlay_map(
    rgb: np.ndarray, moving: list[np.ndarray], tolerance: float, margin: int
) -> np.ndarray:
    """(H, W) bool: pixels fixed on the screen that nevertheless move against the scene in most
    frames, grown by ``margin`` pixels (the residual's halo around a graphic's edges)."""
    persistent = np.mean(np.stack(moving), axis=0) >= PERSISTENCE
    overlay = screen_static(rgb, tolerance) & persistent
    if margin > 0 and overlay.any():
        kernel = np.ones((2 * margin + 1,) * 2, np.uint8)
        overlay = cv2.dilate(overlay.astype(np.uint8), kernel).astype(bool)
    return overlay


def drop_overlays(
    masks: np.ndarray, scores: np.ndarray, overlay: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the components (K, H, W) whose share inside the overlay map is below ``fraction``."""
    if len(masks) == 0:
        return masks, scores
    flat = masks.reshape(len(masks), -1)
    share = (flat & overlay.ravel()).sum(1) / flat.sum(1)
    keep = share < fraction
    return masks[keep], scores[keep]
