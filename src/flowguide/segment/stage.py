"""The segment stage: a flow shard -> a candidates shard (per frame a ranked label map + scores)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from flowguide.segment.labels import LABEL_VALUES, PAINTING_ORDER, paint_label_map
from flowguide.utils.device import resolve_device
from flowguide.utils.failures import FailureLog
from flowguide.utils.h5 import create_video_group, write_frames_dataset, write_shard

log = logging.getLogger("flowguide.segment")

# A frame segmenter: (flows (G,2,H,W), gaps (G,), rgb (H,W,3) or None) -> (masks, scores).
FrameSegmenter = Callable[
    [np.ndarray, np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]
]
# A video segmenter: (flow (N,G,2,H,W), used gaps (N,G), n_frames, rgb (T,H,W,3) or None)
# -> per frame (masks (K,H,W), scores (K,)). The motion backend works per video (its colour cue
# compares a frame with its camera-compensated neighbours).
VideoSegmenter = Callable[
    [np.ndarray, np.ndarray, int, np.ndarray | None], list[tuple[np.ndarray, np.ndarray]]
]


def motion_segmenter(options: dict[str, Any]) -> tuple[VideoSegmenter, bool, dict[str, Any]]:
    from dataclasses import asdict

    from flowguide.segment.motion import MotionParams, segment_video_motion

    params = MotionParams.from_options(options)

    def run(flow: np.ndarray, used_gap: np.ndarray, n_frames: int, rgb: np.ndarray | None):
        return segment_video_motion(flow, used_gap, n_frames, params, rgb)

    return run, params.needs_rgb, asdict(params)


def per_frame(segment: FrameSegmenter) -> VideoSegmenter:
    """A frame segmenter applied to every frame (frames past the stored flow fields reuse the
    nearest earlier field)."""

    def run(flow: np.ndarray, used_gap: np.ndarray, n_frames: int, rgb: np.ndarray | None):
        out = []
        for t in range(n_frames):
            i = flow_index(t, len(flow))
            out.append(segment(flow[i], used_gap[i], None if rgb is None else rgb[t]))
        return out

    return run


def sam_segmenter(
    options: dict[str, Any], device: str, sam: Any = None
) -> tuple[FrameSegmenter, bool, dict[str, Any], dict[str, Any]]:
    """``sam`` lets tests pass a tiny model; otherwise the mode's checkpoints are loaded (all
    missing ones are named in one error before anything runs)."""
    from dataclasses import asdict

    from flowguide.segment.sam import SamParams, SamSegmenter
    from flowguide.segment.weights import build_segmentation_model
    from flowguide.utils.flowviz import flow_to_color

    params = SamParams.from_options(options)
    if sam is None:
        sam, checkpoints = build_segmentation_model(params)
    else:
        checkpoints = [{"role": "model passed in by the caller (tests)", "file": "", "sha256": ""}]
    segmenter = SamSegmenter(sam, params, device)

    def run(flows: np.ndarray, gaps: np.ndarray, rgb: np.ndarray | None):
        return segmenter.segment_frame([flow_to_color(f) for f in flows], rgb)

    attrs = {
        "sam_mode": params.mode,
        "sam_checkpoints": json.dumps(checkpoints),
        "sam_prompts": json.dumps(params.prompt_settings()),
    }
    return run, params.mode == "flowp", asdict(params), attrs


def flow_index(frame: int, n_flow: int) -> int:
    """Flow field of a frame; frames past the stored fields (the last one when the file holds
    T-1 fields) reuse the nearest earlier field."""
    return min(frame, n_flow - 1)


def read_rgb(path: str, start: int, n_frames: int, frame_shape: tuple[int, int]) -> np.ndarray:
    from flowguide.utils.video import read_video

    video = read_video(path, start, start + n_frames)
    height, width = frame_shape
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in video])


def segment_video(
    flow: np.ndarray,
    used_gap: np.ndarray,
    n_frames: int,
    segment: VideoSegmenter,
    max_objects: int,
    rgb: np.ndarray | None = None,
    sequence_matching: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(N,G,2,H,W) flow of one video -> ((T,H,W) uint8 labels, (T,K) float32 scores); with
    ``sequence_matching`` the labels are object ids kept across frames (segment/sequence.py)."""
    height, width = flow.shape[-2:]
    labels = np.zeros((n_frames, height, width), dtype=np.uint8)
    scores = np.full((n_frames, max_objects), np.nan, dtype=np.float32)
    for t, (masks, raw) in enumerate(segment(flow, used_gap, n_frames, rgb)):
        labels[t], scores[t] = paint_label_map(masks, raw, max_objects)
    if sequence_matching:
        from flowguide.segment.sequence import match_sequence

        labels, scores = match_sequence(labels, scores, flow, used_gap)
    return labels, scores


def write_candidates_group(
    fh: Any,
    vid_name: str,
    labels: np.ndarray,
    scores: np.ndarray,
    attrs: dict[str, Any],
    label_values: str = LABEL_VALUES,
) -> None:
    group = create_video_group(fh, vid_name)
    group.attrs.update(attrs)
    write_frames_dataset(
        group, "labels", labels,
        {"shape": "(T, H, W)", "value": label_values, "painting_order": PAINTING_ORDER},
    )  # fmt: skip
    write_frames_dataset(
        group, "scores", scores,
        {"shape": "(T, K): score of the candidate with label k+1", "absent": "NaN"},
    )  # fmt: skip


def run_segment(
    shard_csv: str | os.PathLike,
    flow_path: str | os.PathLike,
    out_path: str | os.PathLike,
    failures_path: str | os.PathLike,
    options: dict[str, Any],
    device: str = "auto",
    fail_fast: bool = False,
    sam: Any = None,
    dataset_root: str | os.PathLike | None = None,
) -> int:
    """Segment every video of a shard; returns the number of videos written.

    With ``dataset_root``, each video's path is stored relative to it and the root recorded
    (utils/provenance.py), so the file can be read from any folder."""
    from flowguide.segment.sequence import SEQUENCE_LABEL_VALUES
    from flowguide.utils.flowio import list_videos, read_flow
    from flowguide.utils.h5 import read_shard, video_group
    from flowguide.utils.manifest import read_manifest
    from flowguide.utils.provenance import dataset_attrs, upstream_attrs

    backend = options.get("backend", "sam")
    max_objects = int(options.get("max_objects", 10))
    sequence = bool(options.get("sequence_matching", False))
    label_values = SEQUENCE_LABEL_VALUES if sequence else LABEL_VALUES
    if backend == "motion":
        segment, needs_rgb, params = motion_segmenter(options)
        backend_attrs: dict[str, Any] = {}
    else:
        frame_segment, needs_rgb, params, backend_attrs = sam_segmenter(
            options, str(resolve_device(device)), sam
        )
        segment = per_frame(frame_segment)
    rows = read_manifest(shard_csv)
    with read_shard(flow_path) as flow_fh:
        flow_attrs = {k: flow_fh.attrs[k] for k in flow_fh.attrs}
        upstream = upstream_attrs(flow_fh, flow_path, "flow")
        flow_groups = {
            v: dict(video_group(flow_fh, v, flow_path).attrs) for v in list_videos(flow_path)
        }
    failures = FailureLog("segment", fail_fast=fail_fast)
    file_attrs = {
        "stage": "segment",
        "backend": backend,
        "parameters": json.dumps(params),
        "label_values": label_values,
        "sequence_matching": sequence,
        "painting_order": PAINTING_ORDER,
        "max_objects": max_objects,
        "flow_backend": str(flow_attrs.get("backend", "")),
        **upstream,  # flow_file (name), flow_attrs (JSON: the flow parameters), flow_sha256
        "layout": "/videos/<vid_name>/labels (T,H,W) uint8, .../scores (T,K) float32",
        **backend_attrs,
    }
    written = 0
    with write_shard(out_path, file_attrs) as fh:
        for row in tqdm(rows.itertuples(), total=len(rows), desc="segment", unit="video"):
            vid = row.vid_name
            try:
                if vid not in flow_groups:
                    raise KeyError(
                        f"{flow_path}: video {vid!r} has no flow (see the flow failures)"
                    )
                gattrs = flow_groups[vid]
                flow, used_gap = read_flow(flow_path, vid)
                n_frames = int(gattrs["n_frames"])
                frame_shape = tuple(int(v) for v in gattrs["frame_shape"])
                start = int(gattrs["start_frame"])
                rgb = read_rgb(row.path, start, n_frames, frame_shape) if needs_rgb else None
                labels, scores = segment_video(
                    flow, used_gap, n_frames, segment, max_objects, rgb, sequence
                )
                paths = (
                    dataset_attrs(row.path, dataset_root, out_path)
                    if dataset_root is not None
                    else {"video_path": str(row.path)}
                )
                write_candidates_group(fh, vid, labels, scores, {
                    "start_frame": start, "n_frames": n_frames,
                    "frame_shape": np.array(frame_shape, dtype=np.int64),
                    "source_size": np.array(
                        gattrs.get("source_size", [row.height, row.width]), dtype=np.int64
                    ),
                    "short_side": int(min(frame_shape)),  # of the stored frames
                    "backend": backend, **paths,
                }, label_values)  # fmt: skip
                written += 1
            except Exception as exc:  # one bad video must not stop the shard
                failures.record(vid, exc)
    failures.write(failures_path)
    log.info("segment: %d videos written to %s, %d failed", written, out_path, len(failures.rows))
    return written
