"""The thesis' selection rule f(M_c) (Section 4.3.1).

Inside the central vertical band (``center_fraction`` of the width, centred), among the labels
1..num_layers, count each label's pixels and choose the label with the most. Ties go to the lower
label (the better-ranked candidate). When no such label has a pixel in the band, the frame's
mask is empty. The mask is the chosen label's whole region, inside and outside the band.
"""

from __future__ import annotations

import numpy as np

RULE = (
    "central vertical band of center_fraction of the width (centred); among labels "
    "1..num_layers the label with the most pixels in the band; ties -> lower label; "
    "none -> empty mask; mask = all pixels of the chosen label"
)


def center_band(width: int, center_fraction: float) -> tuple[int, int]:
    """Column range [x0, x1) of the centred band; at least one column wide."""
    band = min(width, max(1, round(center_fraction * width)))
    x0 = (width - band) // 2
    return x0, x0 + band


def choose_label(labels: np.ndarray, center_fraction: float, num_layers: int) -> int:
    """The chosen label of one (H, W) label map, 0 when none."""
    x0, x1 = center_band(labels.shape[1], center_fraction)
    counts = np.bincount(labels[:, x0:x1].ravel(), minlength=num_layers + 1)[1 : num_layers + 1]
    if counts.size == 0 or counts.max() == 0:
        return 0
    return int(np.argmax(counts)) + 1  # argmax returns the first maximum: the lower label


def select_masks(
    labels: np.ndarray, center_fraction: float, num_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) label maps -> ((T, H, W) bool masks, (T,) int16 chosen labels, 0 = none)."""
    chosen = np.array(
        [choose_label(frame, center_fraction, num_layers) for frame in labels], dtype=np.int16
    )
    masks = (labels == chosen[:, None, None]) & (chosen[:, None, None] > 0)
    return masks, chosen


def thesis_confidence(
    labels: np.ndarray, chosen: int, center_fraction: float, num_layers: int
) -> float:
    """Share of the band's pixels of labels 1..num_layers that belong to the chosen label
    (1 = uncontested, 0 when nothing was chosen)."""
    if chosen == 0:
        return 0.0
    x0, x1 = center_band(labels.shape[1], center_fraction)
    counts = np.bincount(labels[:, x0:x1].ravel(), minlength=num_layers + 1)[1 : num_layers + 1]
    return float(counts[chosen - 1] / counts.sum())
