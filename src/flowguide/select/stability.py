"""How well selected masks hold over time: the figures to judge masks on footage with no truth.

Per video:

- ``nonempty_share``: share of frames with a non-empty mask;
- ``area``: mean mask area as a fraction of the frame, over the non-empty frames;
- ``warped_iou``: mean over consecutive frame pairs (t, t+1) that both have a mask of the IoU of
  mask t with mask t+1 carried back to frame t by the flow (``utils/maskwarp.py``); 1 = the mask
  moves exactly with the flow, low = it jumps or changes shape (NaN without such pairs).

With true masks (SynthDive) also:

- ``mean_iou``: mean IoU with the truth (both empty = 1, as in ``quality.py``);
- ``identity``: share of consecutive pairs (both masks non-empty) in which both masks lie on the
  true object (at least half of the mask's pixels inside the true mask): 1 = the selection
  never leaves the athlete between two frames;
- ``switches``: share of those pairs in which one mask lies on the athlete and the other not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from flowguide.select.quality import frame_ious, resize_masks
from flowguide.utils.atomic import atomic_path
from flowguide.utils.flowio import list_videos, read_flow
from flowguide.utils.masks import read_mask_info, read_video_masks
from flowguide.utils.maskwarp import carry_mask

ON_OBJECT = 0.5  # share of a mask's pixels inside the true mask for it to lie "on" the athlete
OVERALL = "ALL"


def warped_ious(masks: np.ndarray, flow: np.ndarray, used_gap: np.ndarray) -> np.ndarray:
    """(P,) IoU of mask t with mask t+1 carried to frame t, for pairs where both are non-empty."""
    has = masks.reshape(len(masks), -1).any(1)
    out = []
    for t in range(len(masks) - 1):
        if not (has[t] and has[t + 1]):
            continue
        carried = carry_mask(masks[t + 1], flow, used_gap, t + 1, t)
        if carried is None:
            continue
        union = (carried | masks[t]).sum()
        out.append((carried & masks[t]).sum() / union if union else 1.0)
    return np.asarray(out, dtype=np.float64)


def identity_pairs(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(identity, switches) of consecutive pairs of non-empty masks (see the module docstring)."""
    area = pred.reshape(len(pred), -1).sum(1)
    inside = (pred & truth).reshape(len(pred), -1).sum(1)
    on = inside >= ON_OBJECT * np.maximum(area, 1)
    both = (area[:-1] > 0) & (area[1:] > 0)
    if not both.any():
        return float("nan"), float("nan")
    same_on = (on[:-1] & on[1:])[both]
    switch = (on[:-1] != on[1:])[both]
    return float(same_on.mean()), float(switch.mean())


def video_stability(
    masks_path: str | os.PathLike,
    flow_path: str | os.PathLike,
    vid: str,
    truth_path: str | os.PathLike | None = None,
) -> dict:
    masks = read_video_masks(masks_path, vid)
    flow, used_gap = read_flow(flow_path, vid)
    if flow.shape[-2:] != masks.shape[1:]:
        raise ValueError(f"{flow_path}: {vid} flow frames do not match the masks of {masks_path}")
    area = masks.reshape(len(masks), -1).mean(1)
    has = area > 0
    ious = warped_ious(masks, flow, used_gap)
    row = {
        "vid_name": vid,
        "frames": len(masks),
        "nonempty_share": float(has.mean()),
        "area": float(area[has].mean()) if has.any() else 0.0,
        "warped_iou": float(ious.mean()) if len(ious) else float("nan"),
    }
    if truth_path is not None:
        start = int(read_mask_info(masks_path, vid)["start_frame"])
        truth = read_video_masks(truth_path, vid, np.arange(start, start + len(masks)))
        truth = resize_masks(truth, masks.shape[1:])
        row["mean_iou"] = float(frame_ious(masks, truth).mean())
        row["identity"], row["switches"] = identity_pairs(masks, truth)
    return row


def mask_stability(
    pairs: list[tuple[str | os.PathLike, str | os.PathLike]],
    truth_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """(masks shard, flow shard) pairs -> one row per video, then an overall row (mean over
    videos, NaNs skipped)."""
    rows = []
    for masks_path, flow_path in pairs:
        stored = set(list_videos(flow_path))
        for vid in sorted(read_mask_info(masks_path)):
            if vid in stored:
                rows.append(
                    {"shard": Path(masks_path).stem,
                     **video_stability(masks_path, flow_path, vid, truth_path)}
                )  # fmt: skip
    table = pd.DataFrame(rows)
    if len(table):
        overall = table.drop(columns=["shard", "vid_name"]).mean(numeric_only=True).to_dict()
        overall.update(shard=OVERALL, vid_name=OVERALL, frames=int(table["frames"].sum()))
        table = pd.concat([table, pd.DataFrame([overall])], ignore_index=True)
    return table


def write_stability(table: pd.DataFrame, out_path: str | os.PathLike) -> None:
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
