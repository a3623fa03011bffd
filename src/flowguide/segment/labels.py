"""The candidate label-map format shared by both backends.

Per frame: a (H, W) uint8 map, 0 = background and k = the candidate of rank k (1 = highest
score), and the K scores of ranks 1..K (NaN where fewer candidates were found). Masks are
painted from the lowest score to the highest, so where two overlap the better one lies on top
(as FlowSAM's ``hard_thres`` overlay does).
"""

from __future__ import annotations

import numpy as np

LABEL_VALUES = "0 = background; k >= 1 = candidate of rank k by score (1 = highest score)"
PAINTING_ORDER = (
    "masks painted from the lowest score to the highest: where candidates overlap, "
    "the better-ranked one (lower label) wins"
)
MAX_LABELS = 255  # uint8 label maps


def paint_label_map(
    masks: np.ndarray, scores: np.ndarray, max_objects: int
) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) bool masks + (K,) scores -> ((H, W) uint8 labels, (max_objects,) float32 scores).

    Candidates are ranked by descending score (ties keep input order); only the best
    ``max_objects`` are kept. Empty masks keep their rank but paint nothing.
    """
    if max_objects > MAX_LABELS:
        raise ValueError(f"max_objects {max_objects} exceeds {MAX_LABELS} (uint8 label maps)")
    masks = np.asarray(masks, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if masks.ndim != 3 or scores.shape != (masks.shape[0],):
        raise ValueError(
            f"masks (K,H,W) and scores (K,) expected, got {masks.shape}, {scores.shape}"
        )
    order = np.argsort(-scores, kind="stable")[:max_objects]
    labels = np.zeros(masks.shape[1:], dtype=np.uint8)
    # Paint worst first so that better candidates overwrite it where they overlap.
    for rank in range(len(order) - 1, -1, -1):
        labels[masks[order[rank]]] = rank + 1
    ranked = np.full(max_objects, np.nan, dtype=np.float32)
    ranked[: len(order)] = scores[order]
    return labels, ranked
