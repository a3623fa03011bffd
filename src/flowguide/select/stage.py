"""The select stage: candidates shard -> diver-mask shard (bit-packed masks + per-video index).

``select.rule`` picks the per-frame thesis rule (``rule.py``) or the tracked rule
(``tracked.py``, which also reads the flow shard). Per frame the file stores the mask, the
chosen label, ``has_mask`` / ``empty`` (an empty mask means "no evidence", not "no athlete"),
``confidence`` and ``bridged``; read them through ``flowguide.utils.masks``. With
``select.appearance`` on (the default) either rule's masks are then settled by the clip's colour
models (``appearance.py``), which reads the video's frames.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from flowguide.select.appearance import AppearanceParams, refine_masks
from flowguide.select.rule import RULE, select_masks, thesis_confidence
from flowguide.select.tracked import TRACKED_RULE, TrackParams, track_masks
from flowguide.utils.failures import FailureLog, FlowguideError
from flowguide.utils.flowio import read_flow
from flowguide.utils.h5 import (
    create_video_group,
    iter_video_groups,
    read_shard,
    write_frames_dataset,
    write_masks,
    write_shard,
)
from flowguide.utils.masks import BRIDGED_DATASET, CONFIDENCE_DATASET, HAS_MASK_DATASET
from flowguide.utils.provenance import resolve_video, upstream_attrs

log = logging.getLogger("flowguide.select")

RULES = {"thesis": RULE, "tracked": TRACKED_RULE}
INDEX_DTYPE = np.dtype(
    [
        ("vid_name", h5py.string_dtype("utf-8")),
        ("frames", np.int64),
        ("coverage", np.float64),
        ("empty_ratio", np.float64),
    ]
)
# Per-video attributes carried over from the candidates file (frame size and provenance).
KEEP_ATTRS = (
    "start_frame", "frame_shape", "source_size", "short_side", "video_path", "dataset_root",
    "dataset_root_rel",
)  # fmt: skip


Flow = tuple[np.ndarray, np.ndarray]  # one video's (flow (N, G, 2, H, W), used_gap (N, G))


def select_video(
    group: h5py.Group, options: dict[str, Any], flow: Flow | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(masks (T,H,W), chosen (T,), confidence (T,), bridged (T,)) of one candidates group;
    the tracked rule needs the video's ``flow`` (``run_select`` reads it once per video)."""
    labels = group["labels"][()]
    if labels.ndim != 3:
        raise ValueError(f"{group.name}/labels: expected (T, H, W), found shape {labels.shape}")
    center_fraction = float(options.get("center_fraction", 1 / 3))
    num_layers = int(options.get("num_layers", 3))
    if options.get("rule", "thesis") == "thesis":
        masks, chosen = select_masks(labels, center_fraction, num_layers)
        conf = np.array(
            [
                thesis_confidence(f, int(c), center_fraction, num_layers)
                for f, c in zip(labels, chosen, strict=True)
            ],
            dtype=np.float32,
        )
        return masks, chosen, conf, np.zeros(len(labels), bool)
    if flow is None:
        raise FlowguideError("select.rule 'tracked' needs the flow shard (--flow)")
    params = TrackParams(center_fraction, num_layers, **options.get("tracked", {}))
    track = track_masks(labels, *flow, params)
    return track.masks, track.chosen, track.confidence, track.bridged


def refine_video(
    group: h5py.Group,
    masks: np.ndarray,
    confidence: np.ndarray,
    params: AppearanceParams,
    candidates_path: str | os.PathLike,
    flow: Flow,
) -> np.ndarray:
    """The colour refinement of one video's selected masks (reads its frames)."""
    from flowguide.segment.stage import read_rgb
    from flowguide.utils.flowio import decode_attrs

    attrs = decode_attrs(group)
    video = resolve_video(attrs, candidates_path)
    if video is None:
        raise FlowguideError(
            f"{candidates_path}: video {attrs.get('video_path')!r} of {group.name} not found "
            "(select.appearance reads the frames; set select.appearance.enabled: false to skip)"
        )
    start = int(attrs.get("start_frame", 0))
    rgb = read_rgb(str(video), start, len(masks), masks.shape[1:])
    return refine_masks(rgb, masks, confidence, *flow, params)


def write_mask_group(
    fh: h5py.File,
    vid: str,
    masks: np.ndarray,
    chosen: np.ndarray,
    attrs: dict[str, Any],
    confidence: np.ndarray | None = None,
    bridged: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write one video's masks and per-frame flags; returns its index row."""
    group = create_video_group(fh, vid)
    has_mask = masks.reshape(len(masks), -1).any(1)
    confidence = has_mask.astype(np.float32) if confidence is None else confidence
    bridged = np.zeros(len(masks), bool) if bridged is None else bridged
    empty = ~has_mask
    stats = {
        "frames": int(len(masks)),
        "coverage": float(masks.mean()) if masks.size else 0.0,
        "empty_ratio": float(empty.mean()) if len(empty) else 0.0,
    }
    group.attrs.update(
        {**attrs, "coverage": stats["coverage"], "empty_ratio": stats["empty_ratio"]}
    )
    write_masks(group, "mask", masks, {"shape": "(T, H, W) bit-packed per frame"})
    write_frames_dataset(
        group, "chosen_label", chosen, {"value": "candidate label chosen, 0 = none or bridged"}
    )
    write_frames_dataset(group, "empty", empty, {"value": "true = empty mask (no evidence)"})
    write_frames_dataset(
        group, HAS_MASK_DATASET, has_mask,
        {"value": "true = non-empty mask; false = no evidence in this frame (not: no athlete)"},
    )  # fmt: skip
    write_frames_dataset(
        group, CONFIDENCE_DATASET, np.where(has_mask, confidence, 0).astype(np.float32),
        {"value": "0..1, see the file's rule; 0 on empty frames"},
    )  # fmt: skip
    write_frames_dataset(
        group, BRIDGED_DATASET, bridged & has_mask,
        {"value": "true = mask carried over a short gap by the flow (tracked rule)"},
    )  # fmt: skip
    return {"vid_name": vid, **stats}


def write_index(fh: h5py.File, rows: list[dict[str, Any]]) -> None:
    table = np.array(
        [(r["vid_name"], r["frames"], r["coverage"], r["empty_ratio"]) for r in rows],
        dtype=INDEX_DTYPE,
    )
    dset = fh.create_dataset("index", data=table)
    dset.attrs["description"] = (
        "one row per video: vid_name, frames, coverage (mean mask fraction), "
        "empty_ratio (share of frames with an empty mask)"
    )


def select_parameters(options: dict[str, Any]) -> dict[str, Any]:
    rule = options.get("rule", "thesis")
    if rule not in RULES:
        raise FlowguideError(f"select.rule must be one of {sorted(RULES)}, got {rule!r}")
    params = {
        "rule": rule,
        "center_fraction": float(options.get("center_fraction", 1 / 3)),
        "num_layers": int(options.get("num_layers", 3)),
    }
    params["appearance"] = {**AppearanceParams().__dict__, **options.get("appearance", {})}
    if rule == "tracked":
        params["tracked"] = {**TrackParams().__dict__, **options.get("tracked", {})}
        for key in ("center_fraction", "num_layers"):
            params["tracked"].pop(key)
    return params


def run_select(
    candidates_path: str | os.PathLike,
    out_path: str | os.PathLike,
    failures_path: str | os.PathLike,
    options: dict[str, Any],
    fail_fast: bool = False,
    flow_path: str | os.PathLike | None = None,
) -> int:
    params = select_parameters(options)
    appearance = AppearanceParams.from_options(params["appearance"])
    needs_flow = params["rule"] == "tracked" or appearance.enabled
    if needs_flow and flow_path is None:
        raise FlowguideError(
            "select.rule 'tracked' and select.appearance need the flow shard (--flow)"
        )
    failures = FailureLog("select", fail_fast=fail_fast)
    rows: list[dict[str, Any]] = []
    with read_shard(candidates_path) as src:
        file_attrs = {
            "stage": "select",
            "rule": RULES[params["rule"]],
            "parameters": json.dumps(params),
            "segment_backend": str(src.attrs.get("backend", "")),
            **upstream_attrs(src, candidates_path, "candidates"),
            "layout": (
                "/videos/<vid_name>/mask (bit-packed), chosen_label, empty, has_mask, "
                "confidence, bridged; /index per video"
            ),
        }
        videos = list(iter_video_groups(src, candidates_path))
        with write_shard(out_path, file_attrs) as fh:
            for vid, group in tqdm(videos, desc="select", unit="video"):
                try:
                    flow = read_flow(flow_path, vid) if needs_flow else None
                    masks, chosen, conf, bridged = select_video(group, params, flow)
                    if appearance.enabled:
                        masks = refine_video(group, masks, conf, appearance, candidates_path, flow)
                    attrs = {k: group.attrs[k] for k in KEEP_ATTRS if k in group.attrs}
                    attrs["n_frames"] = len(masks)
                    rows.append(write_mask_group(fh, vid, masks, chosen, attrs, conf, bridged))
                except Exception as exc:  # one bad video must not stop the shard
                    failures.record(vid, exc)
            write_index(fh, rows)
    failures.write(failures_path)
    log.info("select: %d videos -> %s, %d failed", len(rows), out_path, len(failures.rows))
    return len(rows)
