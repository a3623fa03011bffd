"""The one diver-mask reader, used by training, evaluation and the inspection tool.

Besides the masks, the select stage stores per frame whether it found evidence: an empty mask
means "no evidence" (no candidate was chosen), not "no athlete". ``read_frame_flags`` (and
``MaskShardReader.read_flags``) return, for the frames asked for, ``has_mask`` (the mask is
non-empty), ``confidence`` (0..1, see select/rule.py and select/tracked.py; 0 on empty frames)
and ``bridged`` (the tracked rule carried the mask over a short gap with the flow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from flowguide.utils.h5 import (
    ShardError,
    iter_video_groups,
    mask_frame_shape,
    read_mask_dataset,
    read_mask_rows,
    read_shard,
    video_group,
)

MASK_DATASET = "mask"
HAS_MASK_DATASET = "has_mask"
CONFIDENCE_DATASET = "confidence"
BRIDGED_DATASET = "bridged"


@dataclass(frozen=True)
class FrameFlags:
    """Per-frame evidence of the selected masks, (N,) arrays for the N frames asked for."""

    has_mask: np.ndarray  # bool: the mask is non-empty (False = no evidence in this frame)
    confidence: np.ndarray  # float32 in [0, 1]; 0 where has_mask is False
    bridged: np.ndarray  # bool: mask carried over a gap by the flow (tracked rule)


def _flags(group: h5py.Group, path: str | os.PathLike, indices: Any) -> FrameFlags:
    from flowguide.utils.flowio import _read_frames

    missing = [d for d in (HAS_MASK_DATASET, CONFIDENCE_DATASET) if d not in group]
    if missing:
        raise ShardError(
            f"{path}: video {group.name.lstrip('/')!r} has no {', '.join(missing)} "
            "(written before per-frame flags were stored: rerun the select stage)"
        )
    has = _read_frames(group[HAS_MASK_DATASET], indices).astype(bool)
    conf = _read_frames(group[CONFIDENCE_DATASET], indices).astype(np.float32)
    bridged = (
        _read_frames(group[BRIDGED_DATASET], indices).astype(bool)
        if BRIDGED_DATASET in group
        else np.zeros(len(has), bool)
    )
    return FrameFlags(has_mask=has, confidence=conf, bridged=bridged)


def read_frame_flags(
    shard_path: str | os.PathLike, vid_name: str, indices: np.ndarray | list[int] | None = None
) -> FrameFlags:
    """has_mask / confidence / bridged of frames ``indices`` (all when None) of one video."""
    with read_shard(shard_path) as fh:
        return _flags(video_group(fh, vid_name, shard_path), shard_path, indices)


def read_mask_info(shard_path: str | os.PathLike, vid_name: str | None = None) -> dict[str, Any]:
    """A video's attributes (start_frame, n_frames, frame_shape, provenance), decoded; without
    ``vid_name``, {vid_name: attributes} of every video in the shard."""
    from flowguide.utils.flowio import decode_attrs

    with read_shard(shard_path) as fh:
        if vid_name is not None:
            return decode_attrs(video_group(fh, vid_name, shard_path))
        return {k: decode_attrs(v) for k, v in iter_video_groups(fh, shard_path)}


def read_video_masks(
    shard_path: str | os.PathLike, vid_name: str, indices: np.ndarray | list[int] | None = None
) -> np.ndarray:
    """(len(indices), H, W) bool diver masks of one video, reading only those frames."""
    with read_shard(shard_path) as fh:
        group = video_group(fh, vid_name, shard_path)
        return read_mask_dataset(group[MASK_DATASET], indices)


class MaskShardReader:
    """Diver masks of many clips: shard files stay open and each video's dataset is looked up
    once (a loader reads one clip's few frames at a time; opening files and reading attributes
    would dominate). Handles are per process: a reader copied into a forked loader worker opens
    its own, and none travel to spawned workers."""

    def __init__(self) -> None:
        self._files: dict[Path, h5py.File] = {}
        self._datasets: dict[tuple[Path, str], tuple[h5py.Dataset, tuple[int, int]]] = {}
        self._pid = os.getpid()

    def _dataset(self, shard_path: Path, vid_name: str) -> tuple[h5py.Dataset, tuple[int, int]]:
        if self._pid != os.getpid():
            self.__init__()
        key = (shard_path, vid_name)
        if key not in self._datasets:
            if shard_path not in self._files:
                try:
                    self._files[shard_path] = h5py.File(shard_path, "r")
                except OSError as exc:
                    raise ShardError(f"{shard_path}: cannot read HDF5 shard: {exc}") from exc
            dset = video_group(self._files[shard_path], vid_name, shard_path)[MASK_DATASET]
            self._datasets[key] = (dset, mask_frame_shape(dset))
        return self._datasets[key]

    def read(
        self, shard_path: str | os.PathLike, vid_name: str, indices: np.ndarray | list[int]
    ) -> np.ndarray:
        """Same as ``read_video_masks``."""
        dset, frame_shape = self._dataset(Path(shard_path), vid_name)
        return read_mask_rows(dset, frame_shape, indices)

    def read_flags(
        self, shard_path: str | os.PathLike, vid_name: str, indices: np.ndarray | list[int]
    ) -> FrameFlags:
        """Same as ``read_frame_flags``, through the open file."""
        dset, _ = self._dataset(Path(shard_path), vid_name)
        return _flags(dset.parent, shard_path, indices)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
