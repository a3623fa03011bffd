"""FlowSAM's sequence-level step: match each frame's masks to the previous output so that an
object keeps its label (id) through the clip.

Follows the authors' ``seq_level_postprocess.py`` (github Jyxarthur/flowsam): at frame t the
previous output, warped into frame t with the flow, is matched one-to-one (Hungarian on mask
IoU) to frame t's candidates. The match of each previous object is checked against the
candidates of frames t-1, t-2, t+1 and t+2, each warped into frame t and aligned to frame t's
candidates by their own Hungarian match: a neighbour agrees when the previous object's match
through it is the same candidate. With 3 or 4 agreeing neighbours the object takes the
candidate's mask; with none it keeps its warped previous mask; otherwise the union of both.
The label map makes the objects disjoint (a lower id wins overlaps). Frame 0's ids are its
ranks.

A match without any overlap gets no votes (our addition), so an object keeps its warped mask
through a frame without candidates. Where a neighbour frame is outside the clip, the authors
use frame t's own candidates in its place (an agreeing vote); we do the same. Warping reads
the stored flow field of frame t whose used gap is the neighbour's offset; when that gap was
not computed, the opposite gap's field is negated (an approximation), and without either the
mask is not moved.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

NEIGHBOURS = (-1, -2, 1, 2)
AGREE_KEEP_CANDIDATE = 3  # votes (of 4) for taking the candidate's mask outright

SEQUENCE_LABEL_VALUES = (
    "0 = background; k >= 1 = object id k, kept across frames by FlowSAM's sequence-level "
    "matching (ids start as frame 0's ranks by score)"
)


def label_masks(labels: np.ndarray, slots: int) -> np.ndarray:
    """(H, W) label map -> (slots, H, W) bool masks of labels 1..slots."""
    return labels[None] == np.arange(1, slots + 1, dtype=labels.dtype)[:, None, None]


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of (A, H, W) and (B, H, W) bool masks; 0 where both are empty."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index into ``b`` of the Hungarian (max IoU) partner of every mask of ``a``."""
    rows, cols = linear_sum_assignment(-mask_iou(a, b))
    out = np.empty(len(a), dtype=np.int64)
    out[rows] = cols
    return out


def field(flow: np.ndarray, used_gap: np.ndarray, offset: int) -> np.ndarray | None:
    """(2, H, W) flow from the frame to frame + ``offset``, from one frame's (G, 2, H, W)."""
    for sign in (1, -1):
        hits = np.nonzero(used_gap == sign * offset)[0]
        if len(hits):
            return sign * flow[hits[0]].astype(np.float32)
    return None


def warp(masks: np.ndarray, flow: np.ndarray | None) -> np.ndarray:
    """Masks of frame t+d brought into frame t with the flow t -> t+d (backward warping)."""
    if flow is None or not len(masks):
        return masks
    height, width = masks.shape[1:]
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = gx + flow[0], gy + flow[1]
    return np.stack(
        [cv2.remap(m.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR) > 0.5 for m in masks]
    )


def disjoint(masks: np.ndarray) -> np.ndarray:
    """Remove from each mask the pixels of every lower-indexed mask."""
    out = masks.copy()
    taken = np.zeros(masks.shape[1:], dtype=bool)
    for i in range(len(out)):
        out[i] &= ~taken
        taken |= out[i]
    return out


def match_sequence(
    labels: np.ndarray, scores: np.ndarray, flow: np.ndarray, used_gap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) ranked label maps + (T, K) scores + (N, G, 2, H, W) flow and (N, G) used gaps
    -> (T, H, W) label maps whose label k is the same object in every frame, and (T, K) scores
    (of the candidate an object took; NaN where it kept its warped previous mask)."""
    n_frames, slots = scores.shape
    candidates = [label_masks(labels[t], slots) for t in range(n_frames)]
    out_labels = np.zeros_like(labels)
    out_scores = np.full_like(scores, np.nan)
    previous = None
    for t in range(n_frames):
        i = min(t, len(flow) - 1)
        current = candidates[t]
        if previous is None:
            objects, taken = current, np.arange(slots)
            votes = np.full(slots, len(NEIGHBOURS))
        else:
            prev = warp(previous, field(flow[i], used_gap[i], -1))
            ious = mask_iou(prev, current)
            rows, cols = linear_sum_assignment(-ious)
            taken = np.empty(slots, dtype=np.int64)
            taken[rows] = cols
            votes = np.zeros(slots, dtype=np.int64)
            for offset in NEIGHBOURS:
                j = t + offset
                if 0 <= j < n_frames:
                    neighbour = warp(candidates[j], field(flow[i], used_gap[i], offset))
                else:
                    neighbour = current
                aligned = neighbour[match(current, neighbour)]  # aligned[c] ~ current[c]
                votes += match(prev, aligned) == taken
            # Our one addition: a match with no overlap is no match (the authors' votes would let
            # an object take an empty or unrelated candidate, e.g. in a frame without any).
            votes[ious[np.arange(slots), taken] == 0] = 0
            objects = np.where(
                (votes >= AGREE_KEEP_CANDIDATE)[:, None, None],
                current[taken],
                np.where((votes == 0)[:, None, None], prev, current[taken] | prev),
            )
        for k, mask in enumerate(disjoint(objects)):
            out_labels[t][mask] = k + 1
        out_scores[t] = np.where(votes > 0, scores[t][taken], np.nan)
        previous = objects  # the authors warp the output before it is made disjoint
    return out_labels, out_scores
