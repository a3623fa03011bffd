"""Reading what the inspection tool shows: video statistics and per-frame panels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowguide.inspect.render import VideoPanels, color_labels, mask_image, resize_frames
from flowguide.utils.failures import FlowguideError
from flowguide.utils.h5 import iter_video_groups, read_shard, video_group


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def video_table(path: str | os.PathLike) -> pd.DataFrame:
    """One row per video of a shard file (flow, candidates or masks .h5, or a shard .csv)."""
    path = Path(path)
    if path.suffix == ".csv":
        from flowguide.utils.manifest import read_manifest

        if not path.exists():
            raise FlowguideError(f"{path}: shard CSV does not exist")
        return read_manifest(path)
    rows = []
    with read_shard(path) as fh:
        stage = _attr(fh.attrs.get("stage", ""))
        for vid, g in iter_video_groups(fh, path):
            row: dict[str, Any] = {
                "vid_name": vid,
                "start_frame": _attr(g.attrs.get("start_frame")),
            }
            row["frame_shape"] = "x".join(str(v) for v in _attr(g.attrs.get("frame_shape", [])))
            if "flow" in g:
                flow = g["flow"]
                row["frames"] = flow.shape[0]
                row["gaps"] = flow.shape[1]
                row["mean_flow_px"] = float(
                    np.hypot(*np.moveaxis(flow[()].astype(np.float32), 2, 0)).mean()
                )
            if "labels" in g:
                labels, scores = g["labels"][()], g["scores"][()]
                row["frames"] = labels.shape[0]
                row["mean_candidates"] = float(np.isfinite(scores).sum(1).mean())
                row["mean_top_score"] = (
                    float(np.nanmean(scores[:, 0])) if np.isfinite(scores[:, 0]).any() else np.nan
                )
                row["candidate_coverage"] = float((labels > 0).mean())
            if "mask" in g:
                row["frames"] = int(g["mask"].shape[0])
                row["coverage"] = float(_attr(g.attrs.get("coverage", np.nan)))
                row["empty_ratio"] = float(_attr(g.attrs.get("empty_ratio", np.nan)))
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["stage"] = stage
    return table


def results_paths(results: str | os.PathLike, shard: str) -> dict[str, Path]:
    root = Path(results)
    return {
        "flow": root / "flow" / f"{shard}.h5",
        "candidates": root / "candidates" / f"{shard}.h5",
        "masks": root / "masks" / f"{shard}.h5",
    }


def video_info(paths: dict[str, Path | None], vid: str) -> dict[str, Any]:
    """start_frame, n_frames, frame_shape, video path: from the first file that has the video."""
    for kind in ("flow", "candidates", "masks"):
        path = paths.get(kind)
        if path is None:
            continue
        with read_shard(path) as fh:
            g = video_group(fh, vid, path)
            attrs = {k: _attr(v) for k, v in g.attrs.items()}
        video = attrs.get("source_path") or attrs.get("video_path")
        return {
            "start_frame": int(attrs.get("start_frame", 0)),
            "n_frames": int(attrs["n_frames"]),
            "frame_shape": tuple(int(v) for v in attrs["frame_shape"]),
            "video_path": video,
        }
    raise FlowguideError(
        "inspect: give at least one of --flow, --candidates, --masks (or --results and --shard)"
    )


def load_panels(
    paths: dict[str, Path | None], vid: str, frames: list[int] | None, gap_index: int = 0
) -> VideoPanels:
    """Panels of ``frames`` (clip indices; all when None) from the files that are given."""
    from flowguide.utils.flowio import read_flow
    from flowguide.utils.flowviz import flow_to_color
    from flowguide.utils.masks import read_video_masks
    from flowguide.utils.video import read_frames

    info = video_info(paths, vid)
    idx = np.arange(info["n_frames"]) if frames is None else np.asarray(frames, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= info["n_frames"]:
        raise FlowguideError(f"inspect: frames must lie in 0..{info['n_frames'] - 1} for {vid}")
    shape = info["frame_shape"]
    columns: dict[str, np.ndarray] = {}
    if info["video_path"]:
        rgb = read_frames(info["video_path"], idx + info["start_frame"])
        columns["RGB"] = resize_frames(rgb, shape)
    if paths.get("flow"):
        flow, _ = read_flow(paths["flow"], vid, idx)
        columns["flow"] = flow_to_color(flow[:, gap_index])
    if paths.get("candidates"):
        with read_shard(paths["candidates"]) as fh:
            labels = video_group(fh, vid, paths["candidates"])["labels"]
            uniq, inverse = np.unique(idx, return_inverse=True)
            columns["candidates"] = color_labels(labels[uniq.tolist()][inverse])
    if paths.get("masks"):
        columns["diver mask"] = mask_image(read_video_masks(paths["masks"], vid, idx))
    return VideoPanels(vid_name=vid, frames=idx, columns=columns)
