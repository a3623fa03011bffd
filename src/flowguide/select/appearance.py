"""Colour refinement of the selected masks (``select.appearance``, on by default).

Motion evidence marks where the athlete moved against the scene, not his outline: a leg that
stays still for the only frames that see the wall behind it is missed, the deck edge he touches
is taken. His colours, though, are known from the frames where the choice is confident. Per
video:

1. Two colour models for the whole clip (OpenCV GrabCut's 5-component Gaussian mixtures): the
   athlete from the cores (eroded by ``core_erode`` px) of the chosen masks of the most
   confident ``confident_share`` of the frames with a mask; the scene from the pixels of those
   frames outside the mask widened by ``ring`` px and of every other frame with a mask farther
   than ``scene_margin`` px from it (at most ``max_scene_samples`` pixels, a fixed-seed draw;
   a frame without a mask may show the undetected athlete anywhere and teaches nothing).
2. Each frame with a mask is settled by one graph cut with both models frozen
   (``GC_EVAL_FREEZE_MODEL``) inside a prior region: the frame's mask and its neighbours'
   masks carried by the flow, widened by ``radius`` px; outside it is fixed background. Inside,
   the frame's own mask starts as probable foreground, the rest as probable background.

GrabCut's smoothness weight is fixed (gamma 50 per neighbour pair). At the 72-96 px short side
of the masks a limb two pixels wide then costs more boundary than its colour earns, and the cut
drops it; the cut runs on the region's crop upscaled by ``upscale`` (boundary cost grows with
the scale, colour evidence with its square) and is read back by area.

Frames without a mask stay empty: no evidence is not made up from colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from flowguide.utils.maskwarp import carry_mask
from flowguide.utils.morphology import disk


@dataclass(frozen=True)
class AppearanceParams:
    enabled: bool = True
    confident_share: float = 0.5
    radius: int = 3
    upscale: int = 6
    core_erode: int = 1
    ring: int = 2
    scene_margin: int = 6
    max_scene_samples: int = 20000

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> AppearanceParams:
        return cls(**(options or {}))


def confident_frames(has: np.ndarray, confidence: np.ndarray, share: float) -> np.ndarray:
    """(T,) bool: of the frames with a mask (``has``), those whose confidence is in the top
    ``share`` of them."""
    if not has.any():
        return has
    threshold = np.quantile(confidence[has], 1.0 - share)
    return has & (confidence >= threshold)


def training_pixels(
    rgb: np.ndarray, masks: np.ndarray, confident: np.ndarray, params: AppearanceParams
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) athlete and (M, 3) scene colour samples (see the module docstring)."""
    athlete, scene = [], []
    for frame, mask, sure in zip(rgb, masks, confident, strict=True):
        m = mask.astype(np.uint8)
        if sure:
            athlete.append(frame[cv2.erode(m, disk(params.core_erode)).astype(bool)])
            scene.append(frame[~cv2.dilate(m, disk(params.ring)).astype(bool)])
        elif m.any():  # a frame without a mask may still show the athlete somewhere
            scene.append(frame[~cv2.dilate(m, disk(params.scene_margin)).astype(bool)])
    scene_pixels = np.concatenate(scene)
    if len(scene_pixels) > params.max_scene_samples:
        pick = np.random.default_rng(0).choice(
            len(scene_pixels), params.max_scene_samples, replace=False
        )
        scene_pixels = scene_pixels[np.sort(pick)]
    return np.concatenate(athlete), scene_pixels


def colour_models(athlete: np.ndarray, scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GrabCut's (1, 65) scene and athlete mixtures learned from the samples, laid out as one
    pixel column with every pixel fixed (one iteration learns the models from the labels)."""
    pixels = np.concatenate([athlete, scene])[:, None, :].astype(np.uint8)
    labels = np.concatenate(
        [np.full(len(athlete), cv2.GC_FGD), np.full(len(scene), cv2.GC_BGD)]
    ).astype(np.uint8)[:, None]
    scene_model, athlete_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut seeds its k-means from OpenCV's global generator
    cv2.grabCut(pixels, labels, None, scene_model, athlete_model, 1, cv2.GC_INIT_WITH_MASK)
    return scene_model, athlete_model


def prior_region(
    masks: np.ndarray, flow: np.ndarray, used_gap: np.ndarray, t: int, radius: int
) -> np.ndarray:
    """Frame t's mask and its neighbours' masks carried onto it, widened by ``radius`` px."""
    prior = masks[t].copy()
    for s in (t - 1, t + 1):
        if 0 <= s < len(masks) and masks[s].any():
            carried = carry_mask(masks[s], flow, used_gap, s, t)
            if carried is not None:
                prior |= carried
    return cv2.dilate(prior.astype(np.uint8), disk(radius)).astype(bool)


def cut_frame(
    frame: np.ndarray,
    mask: np.ndarray,
    region: np.ndarray,
    models: tuple[np.ndarray, np.ndarray],
    upscale: int,
) -> np.ndarray:
    """One frozen-model graph cut of ``frame`` inside ``region`` (see the module docstring)."""
    rows, cols = np.nonzero(region)
    y0, y1, x0, x1 = rows.min(), rows.max() + 2, cols.min(), cols.max() + 2
    y0, x0 = max(y0 - 1, 0), max(x0 - 1, 0)  # a 1 px margin of fixed background
    crop = (slice(y0, y1), slice(x0, x1))
    labels = np.full(region[crop].shape, cv2.GC_BGD, np.uint8)
    labels[region[crop]] = cv2.GC_PR_BGD
    labels[region[crop] & mask[crop]] = cv2.GC_PR_FGD
    height, width = labels.shape
    size = (width * upscale, height * upscale)
    image = cv2.resize(np.ascontiguousarray(frame[crop]), size, interpolation=cv2.INTER_LINEAR)
    labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    scene_model, athlete_model = (m.copy() for m in models)
    cv2.grabCut(image, labels, None, scene_model, athlete_model, 1, cv2.GC_EVAL_FREEZE_MODEL)
    athlete = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    out = np.zeros_like(mask)
    out[crop] = cv2.resize(athlete, (width, height), interpolation=cv2.INTER_AREA) >= 0.5
    return out


def refine_masks(
    rgb: np.ndarray,
    masks: np.ndarray,
    confidence: np.ndarray,
    flow: np.ndarray,
    used_gap: np.ndarray,
    params: AppearanceParams,
) -> np.ndarray:
    """(T, H, W) masks settled by the clip's colour models; frames without a mask stay empty."""
    if rgb.shape[:3] != masks.shape:
        raise ValueError(f"RGB frames {rgb.shape[:3]} do not match the masks {masks.shape}")
    has = masks.reshape(len(masks), -1).any(1)
    confident = confident_frames(has, confidence, params.confident_share)
    if not confident.any():
        return masks
    models = colour_models(*training_pixels(rgb, masks, confident, params))
    out = np.zeros_like(masks)
    for t in np.flatnonzero(has):
        region = prior_region(masks, flow, used_gap, t, params.radius)
        out[t] = cut_frame(rgb[t], masks[t], region, models, params.upscale)
    return out
