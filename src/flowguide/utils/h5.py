"""The one HDF5 layer: atomic shard files, self-describing datasets, bit-packed masks.

Shard files hold one group per video under ``/videos`` (``/videos/<vid_name>/...``) and the
file's own tables (e.g. select's ``/index``) at the root, so a video may take any safe name,
``index`` included. Every dataset carries attributes that say what it holds, so a reader needs
no documentation to decode it. Writers and readers go through ``create_video_group``,
``video_group``, ``video_names`` and ``iter_video_groups``, never through the layout itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from flowguide.utils.atomic import atomic_path
from flowguide.utils.failures import FlowguideError

MASK_ENCODING = "packbits"
VIDEOS_GROUP = "videos"  # /videos/<vid_name>: one group per video, apart from the file's tables


class ShardError(FlowguideError):
    """A missing, truncated or malformed HDF5 shard."""


@contextlib.contextmanager
def write_shard(
    path: str | os.PathLike, attrs: Mapping[str, Any] | None = None
) -> Iterator[h5py.File]:
    """Open a new HDF5 file at a temporary name; it appears at ``path`` only when complete."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            set_attrs(fh, attrs or {})
            # Present even when no video made it, so an empty shard is told from a foreign file.
            fh.create_group(VIDEOS_GROUP)
            yield fh


@contextlib.contextmanager
def read_shard(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a shard read-only; a missing or truncated file raises an error naming it."""
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: HDF5 shard does not exist")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ShardError(f"{path}: cannot read HDF5 shard (truncated or corrupt?): {exc}") from exc
    try:
        yield fh
    finally:
        fh.close()


def set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Store attributes; dicts, lists of strings and None go in as JSON text."""
    for key, value in attrs.items():
        if (
            value is None
            or isinstance(value, dict)
            or (isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value))
        ):
            obj.attrs[key] = json.dumps(value)
        else:
            obj.attrs[key] = value


def _videos(fh: h5py.File, path: str | os.PathLike | None = None) -> h5py.Group:
    videos = fh.get(VIDEOS_GROUP)
    if not isinstance(videos, h5py.Group):
        where = path if path is not None else fh.filename
        raise ShardError(
            f"{where}: no /{VIDEOS_GROUP} group (written by an older flowguide, which kept videos "
            "at the root, or not a flowguide shard); delete the file and rerun its stage"
        )
    return videos


def create_video_group(fh: h5py.File, vid_name: str) -> h5py.Group:
    """A new, empty group for one video (``/videos/<vid_name>``) in a file from ``write_shard``."""
    videos = _videos(fh)
    if vid_name in videos:
        raise ShardError(f"{fh.filename}: video {vid_name!r} written twice")
    return videos.create_group(vid_name)


def video_group(fh: h5py.File, vid_name: str, path: str | os.PathLike | None = None) -> h5py.Group:
    """The group of one video; an error naming the file when it is absent."""
    group = find_video_group(fh, vid_name, path)
    if group is None:
        where = f"{path}: " if path else ""
        raise ShardError(f"{where}video {vid_name!r} is not in this shard")
    return group


def find_video_group(
    fh: h5py.File, vid_name: str, path: str | os.PathLike | None = None
) -> h5py.Group | None:
    """The group of one video, or None when the file does not hold it."""
    group = _videos(fh, path).get(vid_name)
    return group if isinstance(group, h5py.Group) else None


def video_names(fh: h5py.File, path: str | os.PathLike | None = None) -> list[str]:
    """Names of the videos a file holds, sorted."""
    return sorted(_videos(fh, path))


def iter_video_groups(
    fh: h5py.File, path: str | os.PathLike | None = None
) -> Iterator[tuple[str, h5py.Group]]:
    """(vid_name, group) of every video of a file, in name order."""
    videos = _videos(fh, path)
    for name in sorted(videos):
        yield name, videos[name]


def write_frames_dataset(
    group: h5py.Group, name: str, data: np.ndarray, attrs: Mapping[str, Any]
) -> h5py.Dataset:
    """A per-frame array, chunked one frame per chunk and gzip-compressed."""
    chunks = (1, *data.shape[1:]) if data.ndim > 1 and data.shape[0] > 0 else None
    dset = group.create_dataset(
        name, data=data, chunks=chunks, compression="gzip", compression_opts=4
    )
    set_attrs(dset, attrs)
    return dset


# --- bit-packed masks -----------------------------------------------------------------------


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool -> (T, ceil(H*W/8)) uint8, row-major, most significant bit first."""
    masks = np.asarray(masks, dtype=bool)
    return np.packbits(masks.reshape(masks.shape[0], -1), axis=1, bitorder="big")


def unpack_masks(packed: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
    height, width = frame_shape
    flat = np.unpackbits(packed, axis=1, count=height * width, bitorder="big")
    return flat.reshape(packed.shape[0], height, width).astype(bool)


def write_masks(
    group: h5py.Group, name: str, masks: np.ndarray, attrs: Mapping[str, Any] | None = None
) -> h5py.Dataset:
    """Store (T, H, W) boolean masks bit-packed, one frame per chunk, with decoding attributes."""
    masks = np.asarray(masks, dtype=bool)
    height, width = masks.shape[1:]
    describe = {
        "encoding": MASK_ENCODING,
        "bitorder": "big",
        "frame_shape": np.array([height, width], dtype=np.int64),
        "decode": "np.unpackbits(row, count=H*W, bitorder='big').reshape(H, W) per frame row",
        "value": "1 = athlete pixel, 0 = background",
    }
    return write_frames_dataset(group, name, pack_masks(masks), {**describe, **(attrs or {})})


def mask_frame_shape(dset: h5py.Dataset) -> tuple[int, int]:
    """The (H, W) a bit-packed mask dataset decodes to (checks that it is one)."""
    if dset.attrs.get("encoding") != MASK_ENCODING:
        raise ShardError(f"{dset.file.filename}:{dset.name}: not a {MASK_ENCODING} mask dataset")
    height, width = (int(v) for v in dset.attrs["frame_shape"])
    return height, width


def read_mask_rows(
    dset: h5py.Dataset,
    frame_shape: tuple[int, int],
    indices: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """Decode frames ``indices`` (all when None; repeats allowed) of a bit-packed mask dataset.

    One contiguous read from the first to the last wanted frame: HDF5 point selections cost
    more than the few packed bytes in between."""
    n = dset.shape[0]
    if indices is None:
        return unpack_masks(dset[()], frame_shape)
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return np.zeros((0, *frame_shape), dtype=bool)
    if idx.min() < 0 or idx.max() >= n:
        raise ShardError(f"{dset.file.filename}:{dset.name}: frame index out of range 0..{n - 1}")
    first = int(idx.min())
    packed = dset[first : int(idx.max()) + 1]
    return unpack_masks(packed[idx - first], frame_shape)


def read_mask_dataset(
    dset: h5py.Dataset, indices: np.ndarray | list[int] | None = None
) -> np.ndarray:
    """Decode bit-packed masks at frame ``indices`` (all when None), reading only that range."""
    return read_mask_rows(dset, mask_frame_shape(dset), indices)
