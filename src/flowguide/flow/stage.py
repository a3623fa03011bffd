"""The flow stage: one HDF5 file of optical flow per shard of videos.

Layout (self-describing; read it with ``flowguide.utils.flowio``):

    /                      attrs: backend, weights, gaps, num_flow_updates, short_side, units, ...
    /videos/<vid_name>/    attrs: start_frame, n_frames, frame_shape, source_path, label, split
      flow                 (T, G, 2, H, W) float16, one chunk per frame; [t, j] = flow from clip
                           frame t to frame t + used_gap[t, j]; channel 0 = dx, 1 = dy, pixels
      used_gap             (T, G) int16, the gap actually used (the configured one, or its
                           opposite at the clip's ends)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import flowguide
from flowguide.config import validate_config
from flowguide.flow.backends import OPENCV_BACKENDS, FlowBackend, build_backend
from flowguide.utils.device import resolve_device
from flowguide.utils.failures import FailureLog, FlowguideError, VideoError
from flowguide.utils.h5 import create_video_group, set_attrs, write_frames_dataset, write_shard
from flowguide.utils.video import read_video

log = logging.getLogger("flowguide.flow")

FLOW_DATASET = "flow"
USED_GAP_DATASET = "used_gap"
UNITS = "pixels of the stored frame size (frame_shape)"
SIGN_CONVENTION = (
    "flow[t, j] is the flow from clip frame t to clip frame t + used_gap[t, j]: pixel (x, y) of "
    "frame t moves to (x + flow[t, j, 0], y + flow[t, j, 1]); x to the right, y down"
)
# Lossless: HDF5's byte shuffle groups the float16 high bytes (sign/exponent, smooth across a
# field) apart from the noisy low bytes before gzip; 1.3-1.5x smaller than gzip alone
# (benchmarks/flow_storage.py, docs/benchmarks.md).
FLOW_FILTERS = {"shuffle": True, "compression": "gzip", "compression_opts": 4}
GAP_RULE = (
    "gap g at frame t uses frame t + g; where t + g is outside the clip, frame t - g (FlowSAM's "
    "loader); where both are outside (clip shorter than |g| + 1), the farthest clip frame in "
    "the direction of g, else in the opposite direction"
)


def flow_options(options: dict[str, Any]) -> dict[str, Any]:
    """The ``flow`` section validated against the config schema, defaults filled.

    Goes through the whole-config validator so that errors name the key as ``flow.<key>``.
    """
    if not isinstance(options, dict):
        raise FlowguideError("flow options must be a JSON object")
    checked = validate_config({"dataset": {"kind": "synthdive"}, "flow": dict(options)})
    return checked["flow"]


def partner_frame(t: int, gap: int, n_frames: int) -> int:
    """The frame that ``gap`` pairs with frame ``t`` in a clip of ``n_frames`` (see GAP_RULE)."""
    for target in (t + gap, t - gap):
        if 0 <= target < n_frames:
            return target
    forward = n_frames - 1 if gap > 0 else 0
    return forward if forward != t else n_frames - 1 - forward


def plan_gaps(n_frames: int, gaps: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which frame pairs to compute for a clip.

    Returns ``used_gap`` (T, G) int16, ``pairs`` (P, 2) unique (source, target) frame indices, and
    ``pair_index`` (T, G) into ``pairs`` (the end fallbacks repeat pairs that are computed once).
    """
    if n_frames < 2:
        raise VideoError(f"a clip of {n_frames} frame(s) has no frame pairs for optical flow")
    used = np.zeros((n_frames, len(gaps)), dtype=np.int16)
    pair_ids: dict[tuple[int, int], int] = {}
    pair_index = np.zeros((n_frames, len(gaps)), dtype=np.int64)
    for t in range(n_frames):
        for j, gap in enumerate(gaps):
            target = partner_frame(t, gap, n_frames)
            used[t, j] = target - t
            pair_index[t, j] = pair_ids.setdefault((t, target), len(pair_ids))
    pairs = np.array(list(pair_ids), dtype=np.int64).reshape(-1, 2)
    return used, pairs, pair_index


def video_flow(
    frames: np.ndarray, backend: FlowBackend, gaps: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(T, G, 2, H, W) float32 flow and (T, G) used gaps of one clip."""
    used, pairs, pair_index = plan_gaps(len(frames), gaps)
    flows = backend.compute_pairs(frames, pairs)
    return flows[pair_index], used


def file_attrs(options: dict[str, Any], backend: FlowBackend) -> dict[str, Any]:
    return {
        "stage": "flow",
        "flowguide_version": flowguide.__version__,
        "backend": options["backend"],
        "gaps": np.asarray(options["gaps"], dtype=np.int64),
        "short_side": options["short_side"],
        "units": UNITS,
        "sign_convention": SIGN_CONVENTION,
        "gap_rule": GAP_RULE,
        "layout": "/videos/<vid_name>/flow (T, G, 2, H, W) float16 dx/dy; .../used_gap (T, G)",
        "options": dict(options),
        **backend.describe(),  # weights, and num_flow_updates (RAFT) or dis_preset (DIS)
    }


def write_video_flow(
    fh, row: dict[str, Any], flow: np.ndarray, used: np.ndarray, gaps: list[int]
) -> None:
    group = create_video_group(fh, str(row["vid_name"]))
    height, width = flow.shape[-2:]
    set_attrs(
        group,
        {
            "start_frame": int(row["start_frame"]),
            "end_frame": int(row["end_frame"]),
            "n_frames": int(flow.shape[0]),
            "frame_shape": np.array([height, width], dtype=np.int64),
            "source_size": np.array([int(row["height"]), int(row["width"])], dtype=np.int64),
            "source_path": str(row["path"]),
            "label": int(row["label"]),
            "split": str(row["split"]),
        },
    )
    data = flow.astype(np.float16)
    dset = group.create_dataset(
        FLOW_DATASET, data=data, chunks=(1, *data.shape[1:]), **FLOW_FILTERS
    )  # one chunk per frame: readers fetch single frames
    set_attrs(
        dset,
        {
            "axes": "frame t (clip index, 0 = start_frame), gap j, channel (0 = dx, 1 = dy), y, x",
            "gaps": np.asarray(gaps, dtype=np.int64),
            "units": UNITS,
            "sign_convention": SIGN_CONVENTION,
            "filters": "HDF5 shuffle + gzip 4 (lossless)",
        },
    )
    write_frames_dataset(
        group,
        USED_GAP_DATASET,
        used.astype(np.int16),
        {"axes": "frame t, gap j", "meaning": "frame offset actually used", "gap_rule": GAP_RULE},
    )


def read_clip(row: dict[str, Any], short_side: int | None) -> np.ndarray:
    start, end = int(row["start_frame"]), int(row["end_frame"])
    return read_video(row["path"], start, end + 1, short_side)


def naming_file(error: VideoError, path: str | os.PathLike) -> VideoError:
    """The error itself when its message names the video file, else one that does."""
    if str(path) in str(error):
        return error
    named = VideoError(f"{path}: {error}")
    named.__cause__ = error
    return named


def run_flow(
    shard_csv: str | os.PathLike,
    out_path: str | os.PathLike,
    failures_path: str | os.PathLike,
    options: dict[str, Any],
    device: str = "auto",
    fail_fast: bool = False,
) -> dict[str, int]:
    """Compute the flow of every video of a shard; per-video failures go to ``failures_path``."""
    from flowguide.utils.manifest import read_manifest

    options = flow_options(options)
    if not Path(shard_csv).is_file():
        raise FlowguideError(f"{shard_csv}: shard CSV does not exist")
    rows = read_manifest(shard_csv).to_dict("records")
    # OpenCV backends run on the CPU: check the name, but hold no GPU.
    device = resolve_device(device, claim=options["backend"] not in OPENCV_BACKENDS)
    backend = build_backend(options, str(device))
    failures = FailureLog("flow", fail_fast=fail_fast)
    gaps = list(options["gaps"])
    written = 0
    with write_shard(out_path, file_attrs(options, backend)) as fh:
        for row in tqdm(rows, desc=f"flow {Path(shard_csv).stem}", unit="video"):
            try:
                frames = read_clip(row, options["short_side"])
                flow, used = video_flow(frames, backend, gaps)
            except VideoError as exc:
                failures.record(str(row["vid_name"]), naming_file(exc, row["path"]))
                continue
            write_video_flow(fh, row, flow, used, gaps)
            written += 1
    failures.write(failures_path)
    return {"videos": len(rows), "written": written, "failed": len(failures.rows)}
