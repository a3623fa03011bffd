"""The one diver-mask reader, used by training, evaluation and the inspection tool."""

from __future__ import annotations

import os

import numpy as np

from flowguide.utils.h5 import read_mask_dataset, read_shard, video_group

MASK_DATASET = "mask"


def read_video_masks(
    shard_path: str | os.PathLike, vid_name: str, indices: np.ndarray | list[int] | None = None
) -> np.ndarray:
    """(len(indices), H, W) bool diver masks of one video, reading only those frames."""
    with read_shard(shard_path) as fh:
        group = video_group(fh, vid_name, shard_path)
        return read_mask_dataset(group[MASK_DATASET], indices)
