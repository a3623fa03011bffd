"""The select stage: candidates shard -> diver-mask shard (bit-packed masks + per-video index)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from flowguide.select.rule import RULE, select_masks
from flowguide.utils.failures import FailureLog
from flowguide.utils.h5 import (
    create_video_group,
    iter_video_groups,
    read_shard,
    write_frames_dataset,
    write_masks,
    write_shard,
)

log = logging.getLogger("flowguide.select")

INDEX_DTYPE = np.dtype(
    [
        ("vid_name", h5py.string_dtype("utf-8")),
        ("frames", np.int64),
        ("coverage", np.float64),
        ("empty_ratio", np.float64),
    ]
)


def select_video(
    group: h5py.Group, center_fraction: float, num_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    labels = group["labels"][()]
    if labels.ndim != 3:
        raise ValueError(f"{group.name}/labels: expected (T, H, W), found shape {labels.shape}")
    return select_masks(labels, center_fraction, num_layers)


def write_mask_group(
    fh: h5py.File, vid: str, masks: np.ndarray, chosen: np.ndarray, attrs: dict[str, Any]
) -> dict[str, Any]:
    """Write one video's masks; returns its index row."""
    group = create_video_group(fh, vid)
    empty = chosen == 0
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
        group, "chosen_label", chosen, {"value": "candidate label chosen, 0 = none"}
    )
    write_frames_dataset(
        group, "empty", empty, {"value": "true = no candidate chosen (empty mask)"}
    )
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


def run_select(
    candidates_path: str | os.PathLike,
    out_path: str | os.PathLike,
    failures_path: str | os.PathLike,
    options: dict[str, Any],
    fail_fast: bool = False,
) -> int:
    center_fraction = float(options.get("center_fraction", 1 / 3))
    num_layers = int(options.get("num_layers", 3))
    failures = FailureLog("select", fail_fast=fail_fast)
    rows: list[dict[str, Any]] = []
    with read_shard(candidates_path) as src:
        file_attrs = {
            "stage": "select",
            "rule": RULE,
            "parameters": json.dumps(
                {"center_fraction": center_fraction, "num_layers": num_layers}
            ),
            "candidates_file": str(candidates_path),
            "segment_backend": str(src.attrs.get("backend", "")),
            "layout": "/videos/<vid_name>/mask (bit-packed), chosen_label, empty; /index per video",
        }
        videos = list(iter_video_groups(src, candidates_path))
        with write_shard(out_path, file_attrs) as fh:
            for vid, group in tqdm(videos, desc="select", unit="video"):
                try:
                    masks, chosen = select_video(group, center_fraction, num_layers)
                    keep = ("start_frame", "frame_shape", "video_path")
                    attrs = {k: group.attrs[k] for k in keep if k in group.attrs}
                    attrs["n_frames"] = len(masks)
                    rows.append(write_mask_group(fh, vid, masks, chosen, attrs))
                except Exception as exc:  # one bad video must not stop the shard
                    failures.record(vid, exc)
            write_index(fh, rows)
    failures.write(failures_path)
    log.info("select: %d videos -> %s, %d failed", len(rows), out_path, len(failures.rows))
    return len(rows)
