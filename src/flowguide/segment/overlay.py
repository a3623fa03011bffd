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
is grown by ``margin`` pixels (the residual's halo around a graphic). A part of the map counts
only once confirmed: in at least half of the frames in which it moves, a moving region with at
least ``fraction`` of its pixels on it, the graphic on its own. Its pixels are cleared from the
moving mask before the candidates are formed, and a moving region with at least ``fraction`` of
its pixels on it is dropped whole (what is left of it is the graphic's halo). The fraction is
high (0.9) because an athlete who passes under a score bug merges with it into one region in
which the bug may be the larger part; dropping that region whole would drop the athlete (README,
"Diver masks", has the SynthDive figures at 0.5 and 0.9). With a static
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


def _region_overlay_share(mask: np.ndarray, overlay: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected region labels of ``mask`` and each label's share of pixels on ``overlay``
    (label 0, the background, gets share 0)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    area = np.bincount(labels.ravel(), minlength=count)
    inside = np.bincount(
        labels.ravel(), weights=overlay.ravel().astype(np.float64), minlength=count
    )
    share = inside / np.maximum(area, 1)
    share[0] = 0.0
    return labels, share


def confirmed_overlay(moving: list[np.ndarray], overlay: np.ndarray, fraction: float) -> np.ndarray:
    """The parts (8-connected) of the overlay map that lie under a moving region with at least
    ``fraction`` of its pixels on the map (on their own) in at least half of the frames in
    which they move at all: a graphic is on its own whenever the athlete is elsewhere, while
    the core of a slow, uniform object (which can pass as screen-static) is embedded in that
    object's larger moving region in most frames."""
    count, parts = cv2.connectedComponents(overlay.astype(np.uint8), connectivity=8)
    alone_frames = np.zeros(count, np.int64)
    moving_frames = np.zeros(count, np.int64)
    for mask in moving:
        labels, share = _region_overlay_share(mask, overlay)
        alone = (share >= fraction)[labels] & overlay
        alone_frames[np.unique(parts[alone])] += 1
        moving_frames[np.unique(parts[mask.astype(bool) & overlay])] += 1
    confirmed = (alone_frames >= 0.5 * moving_frames) & (moving_frames > 0)
    confirmed[0] = False
    return confirmed[parts]


def remove_overlays(mask: np.ndarray, overlay: np.ndarray, fraction: float) -> np.ndarray:
    """The moving mask (H, W) without overlays: its 8-connected regions with at least
    ``fraction`` of their pixels on the (confirmed) overlay map are dropped whole (a graphic
    and its residual halo), and the map's pixels are cleared from the others (a graphic never
    belongs to the athlete; a diver passing under a score bug merges with it into one region,
    taller than the diver and scored by the bug's residual too)."""
    labels, share = _region_overlay_share(mask, overlay)
    keep = share < fraction
    keep[0] = False
    return keep[labels] & ~overlay
