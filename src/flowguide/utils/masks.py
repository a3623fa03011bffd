"""The one diver-mask reader, used by training, evaluation and the inspection tool."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from flowguide.utils.h5 import (
    ShardError,
    mask_frame_shape,
    read_mask_dataset,
    read_mask_rows,
    read_shard,
    video_group,
)

MASK_DATASET = "mask"


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

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
