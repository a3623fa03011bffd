"""Mask quality against true masks (SynthDive): per-video mean IoU and empty-frame share.

The true mask of a frame is resized to the selected mask's frame size (nearest neighbour) and
aligned by absolute frame number (the mask group's ``start_frame``). A frame whose selected and
true masks are both empty counts as IoU 1 (they agree); one empty and one not counts as 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd

from flowguide.utils.atomic import atomic_path
from flowguide.utils.h5 import iter_video_groups, read_mask_dataset, read_shard
from flowguide.utils.masks import MASK_DATASET, read_video_masks

QUALITY_COLUMNS = ["shard", "vid_name", "frames", "mean_iou", "empty_ratio", "true_empty_ratio"]
OVERALL = "ALL"


def frame_ious(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) IoU of (T, H, W) bool masks; both empty -> 1."""
    inter = (pred & truth).reshape(len(pred), -1).sum(1)
    union = (pred | truth).reshape(len(pred), -1).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def resize_masks(masks: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
    height, width = frame_shape
    if masks.shape[1:] == (height, width):
        return masks
    return np.stack(
        [
            cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            for m in masks
        ]
    ).astype(bool)


def video_quality(
    masks_path: str | os.PathLike, vid: str, group: h5py.Group, truth_path: str | os.PathLike
) -> dict:
    pred = read_mask_dataset(group[MASK_DATASET])
    start = int(group.attrs.get("start_frame", 0))
    truth = read_video_masks(truth_path, vid, np.arange(start, start + len(pred)))
    truth = resize_masks(truth, pred.shape[1:])
    return {
        "shard": Path(masks_path).stem,
        "vid_name": vid,
        "frames": len(pred),
        "mean_iou": float(frame_ious(pred, truth).mean()),
        "empty_ratio": float((~pred.reshape(len(pred), -1).any(1)).mean()),
        "true_empty_ratio": float((~truth.reshape(len(truth), -1).any(1)).mean()),
    }


def mask_quality(
    truth_path: str | os.PathLike, masks_paths: list[str | os.PathLike]
) -> pd.DataFrame:
    """One row per video, then an overall row (mean over videos of the per-video figures)."""
    rows = []
    for path in sorted(masks_paths, key=str):
        with read_shard(path) as fh:
            for vid, group in iter_video_groups(fh, path):
                rows.append(video_quality(path, vid, group, truth_path))
    table = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
    overall = {
        "shard": OVERALL,
        "vid_name": OVERALL,
        "frames": int(table["frames"].sum()),
        "mean_iou": float(table["mean_iou"].mean()) if len(table) else float("nan"),
        "empty_ratio": float(table["empty_ratio"].mean()) if len(table) else float("nan"),
        "true_empty_ratio": float(table["true_empty_ratio"].mean()) if len(table) else float("nan"),
    }
    return pd.concat([table, pd.DataFrame([overall])], ignore_index=True)


def write_quality(table: pd.DataFrame, out_path: str | os.PathLike) -> None:
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
