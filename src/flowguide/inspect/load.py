"""Reading what the inspection tool shows: video statistics and per-frame panels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowguide.inspect.render import (
    BAND_COLUMN,
    VideoPanels,
    color_labels,
    mask_image,
    resize_frames,
)
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
    """start_frame, n_frames, frame_shape from the first file that has the video; the video
    file from the first whose recorded path resolves (utils/provenance.py: relative to the
    dataset root, which is recorded relative to the shard and absolute)."""
    from flowguide.utils.provenance import resolve_video

    info: dict[str, Any] | None = None
    for kind in ("candidates", "masks", "flow"):
        path = paths.get(kind)
        if path is None:
            continue
        with read_shard(path) as fh:
            g = video_group(fh, vid, path)
            attrs = {k: _attr(v) for k, v in g.attrs.items()}
        if info is None:
            info = {
                "start_frame": int(attrs.get("start_frame", 0)),
                "n_frames": int(attrs["n_frames"]),
                "frame_shape": tuple(int(v) for v in attrs["frame_shape"]),
                "video_path": None,
            }
        if info["video_path"] is None:
            info["video_path"] = resolve_video(attrs, path)
    if info is None:
        raise FlowguideError(
            "inspect: give at least one of --flow, --candidates, --masks (or --results and --shard)"
        )
    return info


def mask_notes(path: Path, vid: str, idx: np.ndarray) -> tuple[list[str], float]:
    """Per frame "label k, conf c" / "bridged, conf c" / "empty: no evidence", and the
    selection's central-band fraction (the file's parameters)."""
    import json

    from flowguide.utils.flowio import _read_frames

    with read_shard(path) as fh:
        params = json.loads(_attr(fh.attrs.get("parameters", "{}")) or "{}")
        g = video_group(fh, vid, path)
        if "confidence" not in g:  # written before per-frame flags: the label only
            chosen = _read_frames(g["chosen_label"], idx) if "chosen_label" in g else None
            notes = (
                [f"label {int(c)}" if c else "empty" for c in chosen] if chosen is not None else []
            )
            return notes, float(params.get("center_fraction", 1 / 3))
        chosen = _read_frames(g["chosen_label"], idx)
        conf = _read_frames(g["confidence"], idx)
        bridged = _read_frames(g["bridged"], idx) if "bridged" in g else np.zeros(len(idx), bool)
        has = _read_frames(g["has_mask"], idx)
    notes = []
    for c, p, b, h in zip(chosen, conf, bridged, has, strict=True):
        if not h:
            notes.append("empty: no evidence")
        elif b:
            notes.append(f"bridged, conf {p:.2f}")
        else:
            notes.append(f"label {int(c)}, conf {p:.2f}")
    return notes, float(params.get("center_fraction", 1 / 3))


def load_panels(
    paths: dict[str, Path | None], vid: str, frames: list[int] | None, gap_index: int = 0
) -> VideoPanels:
    """Panels of ``frames`` (clip indices; all when None) from the files that are given."""
    from flowguide.select.rule import center_band
    from flowguide.utils.flowio import read_flow
    from flowguide.utils.flowviz import flow_to_color, max_magnitude
    from flowguide.utils.masks import read_video_masks
    from flowguide.utils.video import read_frames

    info = video_info(paths, vid)
    idx = np.arange(info["n_frames"]) if frames is None else np.asarray(frames, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= info["n_frames"]:
        raise FlowguideError(f"inspect: frames must lie in 0..{info['n_frames'] - 1} for {vid}")
    shape = info["frame_shape"]
    columns: dict[str, np.ndarray] = {}
    notes: dict[str, list[str]] = {}
    band, legend = None, []
    if info["video_path"]:
        rgb = read_frames(info["video_path"], idx + info["start_frame"])
        columns["RGB"] = resize_frames(rgb, shape)
    if paths.get("flow"):
        flow, used_gap = read_flow(paths["flow"], vid, idx)
        # One colour scale for all rows (the largest magnitude shown), named in the title.
        title = f"flow (|f| / {max_magnitude(flow[:, gap_index]):.1f} px)"
        columns[title] = flow_to_color(flow[:, gap_index], per_frame=False)
        notes[title] = ["backward flow" if g < 0 else "" for g in used_gap[:, gap_index]]
    center_fraction = 1 / 3
    if paths.get("masks"):
        mask_title = "diver mask"
        notes[mask_title], center_fraction = mask_notes(paths["masks"], vid, idx)
        if not notes[mask_title]:
            del notes[mask_title]
    if paths.get("candidates"):
        with read_shard(paths["candidates"]) as fh:
            labels = video_group(fh, vid, paths["candidates"])["labels"]
            uniq, inverse = np.unique(idx, return_inverse=True)
            shown = labels[uniq.tolist()][inverse]
        columns[BAND_COLUMN] = color_labels(shown)
        band = center_band(shape[1], center_fraction)
        legend = [int(k) for k in np.unique(shown) if k > 0]
    if paths.get("masks"):
        columns["diver mask"] = mask_image(read_video_masks(paths["masks"], vid, idx))
    return VideoPanels(
        vid_name=vid, frames=idx, columns=columns, notes=notes, band=band, legend=legend
    )
