"""The one flow colour image: Middlebury colour wheel, normalised per frame."""

from __future__ import annotations

import numpy as np


def _channels_first(flow: np.ndarray) -> np.ndarray:
    """(N, 2, H, W) from (2, H, W), (H, W, 2), (N, 2, H, W) or (N, H, W, 2); channels-first wins
    when both readings fit (the flow files' layout)."""
    if flow.ndim == 3:
        flow = flow[None]
    if flow.ndim != 4:
        raise ValueError(f"flow must have 3 or 4 dimensions, got shape {flow.shape}")
    if flow.shape[1] == 2:
        return flow
    if flow.shape[-1] == 2:
        return flow.transpose(0, 3, 1, 2)
    raise ValueError(f"flow needs a channel axis of size 2 (dx, dy), got shape {flow.shape}")


def max_magnitude(flow: np.ndarray) -> float:
    """Largest flow magnitude (px) over all frames given."""
    arr = _channels_first(np.nan_to_num(np.asarray(flow, dtype=np.float32)))
    return float(np.hypot(arr[:, 0], arr[:, 1]).max()) if arr.size else 0.0


def flow_to_color(flow: np.ndarray, per_frame: bool = True) -> np.ndarray:
    """RGB uint8 image(s) of flow: hue = direction, saturation = magnitude / the frame's max
    (``per_frame``) or / the largest magnitude of all the frames given (one scale for a figure).

    ``flow`` is one frame ((2, H, W) or (H, W, 2)) -> (H, W, 3), or a batch ((N, 2, H, W) or
    (N, H, W, 2)) -> (N, H, W, 3). Each frame is normalised by its own largest magnitude
    (torchvision's ``flow_to_image`` normalises a batch by the batch's largest, so it is called
    one frame at a time).
    """
    import torch
    from torchvision.utils import flow_to_image

    arr = np.asarray(flow, dtype=np.float32)
    single = arr.ndim == 3
    batch = torch.from_numpy(np.ascontiguousarray(_channels_first(arr)))
    if not len(batch):
        images = np.zeros((0, *batch.shape[2:], 3), dtype=np.uint8)
    elif per_frame:
        images = np.stack([flow_to_image(frame).permute(1, 2, 0).numpy() for frame in batch])
    else:
        images = flow_to_image(batch).permute(0, 2, 3, 1).numpy()
    return images[0] if single else images
