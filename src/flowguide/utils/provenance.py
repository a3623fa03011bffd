"""Provenance a second person can trace: where a shard's videos and parameters came from.

Candidate and mask shards record, per file, the attributes of the file they were computed from
(``upstream_attrs``, JSON) and its SHA-256 (``upstream_sha256``), so the flow and segment
parameters travel down the chain; per video, the video's path relative to the dataset root
(``video_path``), with the root recorded twice: absolute (``dataset_root``) and relative to the
shard's own folder (``dataset_root_rel``). A reader resolves the video from either, so a results
folder can be inspected from any working directory, and still after it was copied elsewhere
together with its dataset (SynthDive lives inside results/).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py


def attrs_json(obj: h5py.HLObject) -> str:
    """An HDF5 object's attributes as canonical JSON text."""
    from flowguide.utils.flowio import decode_attrs

    return json.dumps(decode_attrs(obj), sort_keys=True, default=str)


def upstream_attrs(fh: h5py.File, path: str | os.PathLike, kind: str) -> dict[str, str]:
    """File attributes recording an upstream shard (``kind``: flow, candidates)."""
    text = attrs_json(fh)
    return {
        f"{kind}_file": Path(path).name,
        f"{kind}_attrs": text,
        f"{kind}_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def dataset_attrs(
    video: str | os.PathLike, dataset_root: str | os.PathLike, out_path: str | os.PathLike
) -> dict[str, str]:
    """Per-video path attributes (see the module docstring)."""
    root = Path(dataset_root).resolve()
    out_dir = Path(out_path).resolve().parent
    return {
        "video_path": os.path.relpath(Path(video).resolve(), root),
        "dataset_root": str(root),
        "dataset_root_rel": os.path.relpath(root, out_dir),
    }


def resolve_video(attrs: dict[str, Any], shard_path: str | os.PathLike) -> Path | None:
    """The video file of a group's attributes: root relative to the shard first, then the
    absolute root, then a path as stored (older files: relative to the run's folder)."""
    video = attrs.get("video_path") or attrs.get("source_path")
    if not video:
        return None
    tries = []
    if attrs.get("dataset_root_rel") is not None:
        tries.append(Path(shard_path).resolve().parent / attrs["dataset_root_rel"] / video)
    if attrs.get("dataset_root"):
        tries.append(Path(attrs["dataset_root"]) / video)
    tries.append(Path(video))
    for path in tries:
        if path.is_file():
            return path
    return None
