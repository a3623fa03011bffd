"""The one reader of flow files (``results/flow/{shard}.h5``, written by the flow stage).

Used by the segment stage and the inspection tool; reads only the frames asked for.
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from flowguide.utils.h5 import ShardError, iter_video_groups, read_shard, video_group

FLOW_DATASET = "flow"
USED_GAP_DATASET = "used_gap"


def _decode_attr(value: Any) -> Any:
    """HDF5 attribute -> Python value (set_attrs stores dicts, string lists and None as JSON)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        if value == "null" or value[:1] in "[{":
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {key: _decode_attr(value) for key, value in obj.attrs.items()}


def _read_frames(dset: h5py.Dataset, indices: np.ndarray | list[int] | None) -> np.ndarray:
    if indices is None:
        return dset[()]
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = dset.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ShardError(f"{dset.file.filename}:{dset.name}: frame index out of range 0..{n - 1}")
    if not idx.size:
        return np.zeros((0, *dset.shape[1:]), dtype=dset.dtype)
    # h5py fancy indexing needs increasing unique indices; map back afterwards.
    uniq, inverse = np.unique(idx, return_inverse=True)
    return dset[uniq.tolist()][inverse]


def read_flow(
    path: str | os.PathLike, vid_name: str, indices: np.ndarray | list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flow (N, G, 2, H, W) float32 (dx, dy in pixels) and used gaps (N, G) of clip frames
    ``indices`` (all when None; 0 = the manifest's start_frame), reading only those frames."""
    with read_shard(path) as fh:
        group = video_group(fh, vid_name, path)
        if FLOW_DATASET not in group:
            raise ShardError(f"{path}: video {vid_name!r} has no {FLOW_DATASET!r} dataset")
        flow = _read_frames(group[FLOW_DATASET], indices).astype(np.float32)
        used = _read_frames(group[USED_GAP_DATASET], indices).astype(np.int64)
    return flow, used


def list_videos(path: str | os.PathLike) -> list[str]:
    """Names of the videos stored in a flow file, sorted."""
    with read_shard(path) as fh:
        return [k for k, v in iter_video_groups(fh, path) if FLOW_DATASET in v]


def flow_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """File attributes: backend, weights, gaps, num_flow_updates, short_side, units, ..."""
    with read_shard(path) as fh:
        return decode_attrs(fh)


def flow_video_attrs(path: str | os.PathLike, vid_name: str) -> dict[str, Any]:
    """Per-video attributes: start_frame, n_frames, frame_shape, source_path, label, split."""
    with read_shard(path) as fh:
        return decode_attrs(video_group(fh, vid_name, path))
