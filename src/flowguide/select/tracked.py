"""Tracked selection (``select.rule: tracked``): one object followed through the clip.

The thesis rule (``rule.py``) decides every frame on its own, so the chosen label can jump from
the diver to a splash or a spectator and back. The tracked rule keeps the thesis' notion of
which object is wanted (the one filling the central band) but follows it with the optical flow:

1. Seeds: the ``seeds`` frames whose thesis choice has the most pixels in the central band
   (the confident frames).
2. From each seed, the track runs forward and backward. At each step the track's mask is carried
   to the next frame with the stored flow (``utils/maskwarp.py``), widened by ``tolerance`` px
   (flow error), and compared with every candidate of that frame by their overlap: the
   intersection over the smaller of the two masks, so that an athlete whose candidate grows,
   shrinks or splits from one frame to the next still matches. The thesis' choice of the frame
   continues the track when its overlap is >= ``min_overlap``; otherwise the candidate of
   highest overlap does, if that is >= ``min_overlap``. The frame's mask is that candidate's
   region and its confidence the overlap. A candidate more than ``max_growth`` times the
   carried mask's area is the athlete merged with what touches it (a deck, the water): its
   mask is cut to the carried mask widened by ``trim_px`` (0 = never cut).
3. No candidate overlaps enough: the frame is a gap. A gap of at most ``max_gap`` frames that
   the track closes (a later frame matches again) is bridged with the carried mask (flagged
   ``bridged``; confidence decays linearly from the last matched frame's, by 1/(max_gap + 1) per
   frame). Longer gaps, and gaps that run to the clip's end, stay empty: the object was lost.
   The track keeps moving its last mask with the flow and resumes only on a candidate that
   overlaps it, never on another object (no identity switch), however central that object is.
4. Of the seeds' tracks, the one with the most central-band pixels summed over its matched
   frames wins (ties: the earlier seed). Its empty frames are filled from the other tracks
   that follow the same object: tracks that share a frame with it and overlap it (>=
   ``min_overlap``) on every shared frame, in order of their score.

A frame's confidence is 1 at the seed, the overlap with the carried mask on matched frames, the
decayed value on bridged frames and 0 on empty ones. It works on any candidate label maps
(motion layers or SAM), given the flow file the candidates were computed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flowguide.select.rule import center_band, choose_label
from flowguide.utils.maskwarp import carry_mask
from flowguide.utils.morphology import disk

TRACKED_RULE = (
    "seeds: the frames whose thesis choice fills the central band most; each seed's object is "
    "followed forward and backward by carrying its mask with the flow and keeping the candidate "
    "of highest overlap (intersection / smaller mask, carried mask widened by tolerance px) "
    ">= min_overlap; up to max_gap frames without one are bridged by the carried "
    "mask, longer gaps are empty; no switch to a candidate that does not overlap the track; "
    "a candidate over max_growth times the carried mask is cut to the carried mask widened by "
    "trim_px; the track with the most central-band pixels over its matched frames wins"
)


@dataclass(frozen=True)
class TrackParams:
    center_fraction: float = 1 / 3
    num_layers: int = 3
    min_overlap: float = 0.5
    tolerance: int = 1
    max_gap: int = 0
    seeds: int = 5
    max_growth: float = 1.5
    trim_px: int = 2


@dataclass
class Track:
    """Per-frame result of one track (T frames)."""

    masks: np.ndarray  # (T, H, W) bool
    chosen: np.ndarray  # (T,) int16 label, 0 = none (empty or bridged)
    confidence: np.ndarray  # (T,) float32 in [0, 1]
    bridged: np.ndarray  # (T,) bool
    score: float = 0.0  # central-band pixels over matched frames


def band_pixels(labels: np.ndarray, center_fraction: float) -> np.ndarray:
    """(L,) pixel count of each label value 0..L-1 inside the central band of one frame."""
    x0, x1 = center_band(labels.shape[1], center_fraction)
    return np.bincount(labels[:, x0:x1].ravel(), minlength=256)


def widen(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` dilated by a disc of radius ``px`` (unchanged for px <= 0 or an empty mask)."""
    if px <= 0 or not mask.any():
        return mask
    return cv2.dilate(mask.astype(np.uint8), disk(px)).astype(bool)


def candidate_overlaps(labels: np.ndarray, carried: np.ndarray, tolerance: int) -> np.ndarray:
    """(256,) overlap of each label's region with the carried mask: |region & widened carried|
    / min(|region|, |carried|) (index 0 = background: 0)."""
    area = np.bincount(labels.ravel(), minlength=256).astype(np.float64)
    widened = widen(carried, tolerance)
    inter = np.bincount(labels[widened].ravel(), minlength=256).astype(np.float64)
    smaller = np.minimum(area, carried.sum())
    overlap = np.where(smaller > 0, np.minimum(inter / np.maximum(smaller, 1), 1.0), 0.0)
    overlap[0] = 0.0
    return overlap


def trim_merged(region: np.ndarray, carried: np.ndarray, params: TrackParams) -> np.ndarray:
    """The matched candidate's region, cut to the carried mask widened by ``trim_px`` when it
    is more than ``max_growth`` times the carried mask (see the module docstring)."""
    if params.max_growth <= 0 or region.sum() <= params.max_growth * carried.sum():
        return region
    return region & widen(carried, params.trim_px)


def follow(
    labels: np.ndarray, flow: np.ndarray, used_gap: np.ndarray, seed: int, params: TrackParams
) -> Track:
    """The track of the thesis choice at frame ``seed``, forward then backward."""
    n = len(labels)
    track = Track(
        masks=np.zeros(labels.shape, bool),
        chosen=np.zeros(n, np.int16),
        confidence=np.zeros(n, np.float32),
        bridged=np.zeros(n, bool),
    )
    label = choose_label(labels[seed], params.center_fraction, params.num_layers)
    if label == 0:
        return track
    track.masks[seed] = labels[seed] == label
    track.chosen[seed] = label
    track.confidence[seed] = 1.0
    track.score = float(band_pixels(labels[seed], params.center_fraction)[label])
    for step in (1, -1):
        reference, last_conf = track.masks[seed], 1.0
        pending: list[tuple[int, np.ndarray]] = []  # gap frames since the last match
        for t in range(seed + step, n if step == 1 else -1, step):
            carried = carry_mask(reference, flow, used_gap, t - step, t)
            carried = reference if carried is None else carried
            overlaps = candidate_overlaps(labels[t], carried, params.tolerance)
            best = int(np.argmax(overlaps))
            thesis = choose_label(labels[t], params.center_fraction, params.num_layers)
            if thesis and overlaps[thesis] >= params.min_overlap:
                best = thesis  # the thesis' choice is the tracked object: take it
            if overlaps[best] < params.min_overlap:
                pending.append((t, carried))
                reference = carried  # the object moves on with the flow while unseen
                continue
            if len(pending) <= params.max_gap:  # a short gap, closed by this match: bridge it
                for k, (u, bridge) in enumerate(pending, start=1):
                    track.masks[u] = bridge
                    track.bridged[u] = bridge.any()
                    track.confidence[u] = last_conf * (1 - k / (params.max_gap + 1)) * bridge.any()
            pending = []
            track.masks[t] = trim_merged(labels[t] == best, carried, params)
            track.chosen[t] = best
            track.confidence[t] = overlaps[best]
            track.score += float(band_pixels(labels[t], params.center_fraction)[best])
            reference, last_conf = track.masks[t], float(overlaps[best])
    return track


def seed_frames(labels: np.ndarray, params: TrackParams) -> list[int]:
    """Frames whose thesis choice has the most central-band pixels, best first (ties: earlier)."""
    evidence = np.zeros(len(labels))
    for t, frame in enumerate(labels):
        label = choose_label(frame, params.center_fraction, params.num_layers)
        if label:
            evidence[t] = band_pixels(frame, params.center_fraction)[label]
    order = np.argsort(-evidence, kind="stable")
    return [int(t) for t in order[: params.seeds] if evidence[t] > 0]


def track_masks(
    labels: np.ndarray, flow: np.ndarray, used_gap: np.ndarray, params: TrackParams
) -> Track:
    """(T, H, W) label maps + their (N, G, 2, H, W) flow and (N, G) used gaps -> the track."""
    if flow.shape[-2:] != labels.shape[1:]:
        raise ValueError(f"flow {flow.shape[-2:]} does not match the labels {labels.shape[1:]}")
    tracks = [follow(labels, flow, used_gap, seed, params) for seed in seed_frames(labels, params)]
    if not tracks:  # no frame has a candidate in the band
        n = len(labels)
        return Track(np.zeros(labels.shape, bool), np.zeros(n, np.int16),
                     np.zeros(n, np.float32), np.zeros(n, bool))  # fmt: skip
    order = sorted(range(len(tracks)), key=lambda i: -tracks[i].score)  # stable: earlier seed
    best = tracks[order[0]]
    for i in order[1:]:
        merge_compatible(best, tracks[i], params.min_overlap)
    return best


def mask_overlap(a: np.ndarray, b: np.ndarray) -> float:
    smaller = min(a.sum(), b.sum())
    return float((a & b).sum() / smaller) if smaller else 0.0


def merge_compatible(best: Track, other: Track, min_overlap: float) -> None:
    """Fill ``best``'s empty frames from ``other`` when the two follow the same object: they
    share at least one frame with a mask and overlap >= min_overlap on every shared frame."""
    has_best = best.masks.reshape(len(best.masks), -1).any(1)
    has_other = other.masks.reshape(len(other.masks), -1).any(1)
    shared = np.flatnonzero(has_best & has_other)
    if not len(shared) or any(
        mask_overlap(best.masks[t], other.masks[t]) < min_overlap for t in shared
    ):
        return
    fill = has_other & ~has_best
    best.masks[fill] = other.masks[fill]
    best.chosen[fill] = other.chosen[fill]
    best.confidence[fill] = other.confidence[fill]
    best.bridged[fill] = other.bridged[fill]
