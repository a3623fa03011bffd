"""Moving a mask from one frame to its neighbour with the stored optical flow.

The flow files hold, per frame t, the flow to frame t + used_gap[t, j] (pixel (x, y) of frame t
moves to (x + dx, y + dy)). A mask of frame s reaches frame t = s - g by *pulling* with the flow
of frame t to s (every pixel of t looks up where it goes), and reaches frame t = s + g by
*pushing* with the flow of frame s (every mask pixel is moved, then a 3x3 closing fills the
holes that rounding leaves). Pulling is preferred where both flows exist: it leaves no holes.
"""

from __future__ import annotations

import cv2
import numpy as np


def pull_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Mask of frame s seen from frame t, given t's (2, H, W) flow to s."""
    height, width = mask.shape
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    flow = np.nan_to_num(flow.astype(np.float32))
    out = cv2.remap(
        mask.astype(np.uint8), gx + flow[0], gy + flow[1], cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return out.astype(bool)


def push_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Mask of frame s moved to frame t, given s's (2, H, W) flow to t."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    flow = np.nan_to_num(flow.astype(np.float32))
    tx = np.round(xs + flow[0, ys, xs]).astype(np.int64)
    ty = np.round(ys + flow[1, ys, xs]).astype(np.int64)
    inside = (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
    out = np.zeros((height, width), np.uint8)
    out[ty[inside], tx[inside]] = 1
    # Pad first: OpenCV's erosion treats outside pixels as set, so a closing would grow masks
    # that touch the image border by a row.
    padded = cv2.morphologyEx(np.pad(out, 1), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return padded[1:-1, 1:-1].astype(bool)


def flow_between(
    flow: np.ndarray, used_gap: np.ndarray, src: int, dst: int
) -> tuple[np.ndarray, str] | None:
    """The flow that carries a mask from frame ``src`` to ``dst``: ``(field, "pull")`` when frame
    dst has a flow to src, ``(field, "push")`` when src has one to dst, None when neither."""
    gap = src - dst
    if 0 <= dst < len(flow):
        for j, g in enumerate(used_gap[dst]):
            if int(g) == gap:
                return flow[dst, j], "pull"
    if 0 <= src < len(flow):
        for j, g in enumerate(used_gap[src]):
            if int(g) == -gap:
                return flow[src, j], "push"
    return None


def carry_mask(
    mask: np.ndarray, flow: np.ndarray, used_gap: np.ndarray, src: int, dst: int
) -> np.ndarray | None:
    """Mask of frame ``src`` moved to frame ``dst`` (None when no stored flow links them)."""
    found = flow_between(flow, used_gap, src, dst)
    if found is None:
        return None
    field, how = found
    return pull_mask(mask, field) if how == "pull" else push_mask(mask, field)
