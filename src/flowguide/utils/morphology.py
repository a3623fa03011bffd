"""Structuring elements shared by the stages' morphology."""

from __future__ import annotations

import cv2
import numpy as np


def disk(radius: int) -> np.ndarray:
    """OpenCV's elliptic kernel of diameter 2 * radius + 1 (1x1 for radius <= 0)."""
    size = 2 * max(int(radius), 0) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
