"""SynthDive's realism knobs beyond the base scene (README "SynthDive realism knobs").

Which stage each knob makes harder:

- ``background: photo`` (a scikit-image photograph as the stand) and ``background_contrast`` > 1:
  more texture behind the diver, which optical flow locks on to (harder for the masks) and
  which a classifier can memorise (harder for the classifier);
- ``camera_shake``: global motion the flow must explain away (masks);
- ``motion_blur``: smeared diver edges (masks) and weaker pose detail (classifier);
- ``occluder``: a pillar in front of the platform end hides part of the diver at takeoff (both;
  the true mask excludes the hidden pixels);
- ``splash``: the spray where the diver enters the water hides the legs (both; the true mask
  excludes the hidden pixels);
- ``qscale`` (MPEG-4 quantiser): block artefacts (both);
- ``diver_scale`` < 1: a smaller diver (both);
- the cue's ``train_p`` (strength) and ``kind`` (colour, texture, position): how easy the
  shortcut is (classifier only; the masks never see the label).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

CUE_KINDS = ("colour", "texture", "position")
BACKGROUNDS = ("crowd", "photo")
PHOTOS = ("coffee", "chelsea", "rocket", "astronaut", "immunohistochemistry", "hubble_deep_field")
PANEL_GREY = (128.0, 128.0, 128.0)


def texture_panel(cue: int, height: int, width: int) -> np.ndarray:
    """A grey panel with stripes whose orientation and period encode the cue's class."""
    angle = np.pi * ((cue * 0.381966) % 1.0)
    period = 3.0 + 2.0 * (cue % 3)  # pixels
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period
    value = 128.0 + 90.0 * np.sign(np.sin(phase))
    return np.repeat(value[..., None], 3, axis=2)


def panel_fill(
    kind: str, cue: int, index: int, n_panels: int, colour, height: int, width: int
) -> np.ndarray | tuple[float, float, float]:
    """What panel ``index`` of the scoreboard column shows for cue class ``cue`` (-1: off)."""
    if cue < 0:
        return PANEL_GREY
    if kind == "colour":
        return tuple(float(c) for c in colour)
    if kind == "texture":
        return texture_panel(cue, height, width)
    if kind == "position":  # one lit panel; which one (from the top) is the class
        return (250.0, 250.0, 250.0) if index == cue % max(1, n_panels) else PANEL_GREY
    raise ValueError(f"unknown cue kind {kind!r}; known: {CUE_KINDS}")


@functools.lru_cache(maxsize=8)
def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.float32)


def photo_stand(canvas: np.ndarray, texture_seed: int) -> None:
    """Paint the stand with a photograph (chosen by the clip's texture seed), tiled and muted so
    that no pixel looks like a saturated cue colour."""
    photo = _photo(PHOTOS[texture_seed % len(PHOTOS)])
    h, w = canvas.shape[:2]
    scale = h / (0.5 * photo.shape[0])
    tile = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
    reps = (-(-h // tile.shape[0]), -(-w // tile.shape[1]), 1)
    big = np.tile(tile, reps)[:h, :w]
    grey = big.mean(axis=2, keepdims=True)
    canvas[:] = 0.35 * big + 0.65 * grey  # desaturated


def occluder_box(board_height: float) -> tuple[float, float, float, float]:
    """World box (u0, v0, u1, v1) of a pillar just past the platform end, in front of the diver."""
    return (0.03, -board_height - 0.15, 0.07, 0.0)


def splash_region(
    shape: tuple[int, int],
    centre: tuple[float, float],
    height: float,
    half_width: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(H, W) bool: a spray column above the water surface at pixel ``centre`` - a half ellipse
    ``height`` px high and ``half_width`` px wide each side, with a ragged, per-frame edge."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx = (xs - centre[0]) / max(half_width, 1e-6)
    dy = (centre[1] - ys) / max(height, 1e-6)
    radius = np.hypot(dx, dy)
    ragged = 1.0 - 0.3 * rng.random(shape)
    return (dy >= 0) & (radius < ragged)


def blur_frame(frame: np.ndarray, previous: np.ndarray | None, amount: float) -> np.ndarray:
    """Exposure-time smear: a blend with the previous frame (amount 0 = sharp)."""
    if previous is None or amount <= 0:
        return frame
    mixed = (1 - amount) * frame.astype(np.float32) + amount * previous.astype(np.float32)
    return np.clip(mixed.round(), 0, 255).astype(np.uint8)
