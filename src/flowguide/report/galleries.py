"""The report's galleries (matplotlib, Agg): Figure 4.2 (RGB, flow, candidates, mask of a video)
and the post-hoc explanation gallery (every explainer's map of one clip over its frames).

Every function writes one PNG and returns its path, or returns None with the reason logged
when the data it needs is absent.
"""

from __future__ import annotations

import logging
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pandas as pd

from flowguide.report.figures import _save, plt
from flowguide.utils.flowviz import flow_to_color
from flowguide.utils.h5 import (
    find_video_group,
    iter_video_groups,
    read_mask_dataset,
    read_shard,
)
from flowguide.utils.masks import read_video_masks
from flowguide.utils.video import read_frames

log = logging.getLogger("flowguide")


def _find_dataset(group: h5py.Group, kind: str) -> h5py.Dataset | None:
    """Flow ((N, [G,] 2, H, W) float; gap 0 shown) or candidate ((N, H, W) integer) dataset."""
    preferred = {"flow": "flow", "candidates": "labels"}[kind]
    names = (
        [preferred, *[n for n in group if n != preferred]] if preferred in group else list(group)
    )
    for name in names:
        dset = group[name]
        if not isinstance(dset, h5py.Dataset):
            continue
        if (
            kind == "flow"
            and dset.ndim in (4, 5)
            and dset.shape[-3] == 2
            and dset.dtype.kind == "f"
        ):
            return dset
        if kind == "candidates" and dset.ndim == 3 and dset.dtype.kind in "ui":
            return dset
    return None


def _shard_frames(path: Path, vid: str, kind: str, frames: np.ndarray) -> list[np.ndarray] | str:
    where = f"{path.parent.name}/{path.name}"
    if not path.exists():
        return f"{where} absent"
    with read_shard(path) as fh:
        group = find_video_group(fh, vid, path)
        if group is None:
            return f"not in {where}"
        dset = _find_dataset(group, kind)
        if dset is None:
            return f"no {kind} data in {where}"
        images = [dset[min(int(f), dset.shape[0] - 1)] for f in frames]
    return [image[0] if image.ndim == 4 else image for image in images]  # first flow gap


def video_path(results: Path, path: str) -> Path:
    """A manifest's video path; a relative one that does not resolve from here is taken as
    relative to the folder holding results/ (the Snakemake working directory that wrote it)."""
    source = Path(path)
    if not source.is_absolute() and not source.exists():
        beside = results.parent / source
        if beside.exists():
            return beside
    return source


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(H, W) candidate ids -> RGB: 0 (no candidate) black, ids 1.. tab10's colours in turn."""
    palette = np.array([(0.0, 0.0, 0.0), *plt.get_cmap("tab10").colors])
    ids = labels.astype(np.int64)
    return palette[np.where(ids > 0, (ids - 1) % 10 + 1, 0)]


def mask_gallery(
    results: str | os.PathLike, video: pd.Series, path: str | os.PathLike, n_frames: int = 4
) -> Path | None:
    """Figure 4.2: RGB, flow, candidate layers and diver mask of ``n_frames`` frames of a video.

    ``video`` is its manifest row (vid_name, shard, path, start_frame, end_frame). Panels whose
    file is absent say so instead of failing the report.
    """
    results = Path(results)
    vid, shard = str(video["vid_name"]), str(video["shard"])
    mask_path = results / "masks" / f"{shard}.h5"
    if not mask_path.exists():
        return None
    masks = read_video_masks(mask_path, vid)
    frames = np.linspace(0, len(masks) - 1, min(n_frames, len(masks))).round().astype(int)
    height, width = masks.shape[1:]
    panels: dict[str, list[np.ndarray] | str] = {}
    try:
        source = video_path(results, video["path"])
        rgb = read_frames(source, [int(video["start_frame"]) + int(f) for f in frames])
        panels["RGB"] = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in rgb]
    except Exception as exc:  # the gallery shows the reason; the report goes on
        panels["RGB"] = f"{video['path']}: {exc}"
    flows = _shard_frames(results / "flow" / f"{shard}.h5", vid, "flow", frames)
    panels["flow"] = flows if isinstance(flows, str) else [flow_to_color(f) for f in flows]
    panels["candidates"] = _shard_frames(
        results / "candidates" / f"{shard}.h5", vid, "candidates", frames
    )
    panels["mask"] = [masks[f] for f in frames]
    fig, axes = plt.subplots(
        len(panels), len(frames), figsize=(2.4 * len(frames), 2.0 * len(panels)), squeeze=False
    )
    for r, (name, images) in enumerate(panels.items()):
        for c, f in enumerate(frames):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if isinstance(images, str):
                if c == 0:  # wrapped to the panel's width: the reason, not the neighbours
                    reason = textwrap.fill(f"missing: {images}", 34)
                    ax.text(0.03, 0.5, reason, fontsize=6, va="center", transform=ax.transAxes)
            elif name == "candidates":
                ax.imshow(label_colors(images[c]), interpolation="nearest")
            elif name == "mask":
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(images[c])
            if c == 0:
                ax.set_ylabel(name)
            if r == 0:
                ax.set_title(f"frame {int(video['start_frame']) + int(f)}", fontsize=8)
    fig.suptitle(f"{vid} ({shard})", fontsize=9)
    return _save(fig, path)


@dataclass
class ExplainedClip:
    """One clip of an explain stage's maps.h5: its maps (name -> float32 (T, H, W)) and attrs."""

    vid_name: str
    label: int | None
    target: int | None
    frame_indices: list[int]
    maps: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.maps.values())).shape


def first_explained_clip(maps_h5: str | os.PathLike) -> ExplainedClip | None:
    """The first video group of maps.h5 (h5py's name order) with at least one map; None if none."""
    with read_shard(maps_h5) as fh:
        for vid, group in iter_video_groups(fh, maps_h5):
            maps = {
                name: dset[()].astype(np.float32)
                for name, dset in group.items()
                if isinstance(dset, h5py.Dataset) and dset.ndim == 3
            }
            if not maps:
                continue
            attrs = dict(group.attrs)
            indices = attrs.get("frame_indices")
            n = next(iter(maps.values())).shape[0]
            return ExplainedClip(
                vid,
                _optional_int(attrs.get("label")),
                _optional_int(attrs.get("target")),
                [int(i) for i in indices] if indices is not None else list(range(n)),
                maps,
            )
    return None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def eval_clip_mask(
    cams_h5: str | os.PathLike, vid: str, shape: tuple[int, ...]
) -> np.ndarray | None:
    """The evaluation's diver mask of ``vid`` from its cams.h5 ((T, H, W) bool at the model
    input geometry), when that file holds this clip at exactly ``shape``; else None."""
    if not Path(cams_h5).exists():
        return None
    with read_shard(cams_h5) as fh:
        group = find_video_group(fh, vid, cams_h5)
        if group is None or "mask" not in group:
            return None
        mask = read_mask_dataset(group["mask"])
    return mask.astype(bool) if mask.shape == tuple(shape) else None


def minmax_clip(volume: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] over the whole clip (all frames together); a constant map -> zeros."""
    finite = np.nan_to_num(volume.astype(np.float32))
    low, high = float(finite.min()), float(finite.max())
    return (finite - low) / (high - low) if high > low else np.zeros_like(finite)


def signed_clip(volume: np.ndarray) -> np.ndarray:
    """Scaled to [-1, 1] by the largest magnitude over the clip, so that 0 stays 0."""
    finite = np.nan_to_num(volume.astype(np.float32))
    top = float(np.abs(finite).max())
    return finite / top if top > 0 else finite


def map_order(names: list[str], order: list[str] | None = None) -> list[str]:
    """``order``'s names first (the explain stage's: each explainer, then its selective
    version), then the rest, each base name followed by its ``selective_`` version."""
    first = [n for n in order or [] if n in names]
    bases = sorted({n.removeprefix("selective_") for n in names if n not in first})
    rest = [n for b in bases for n in (b, f"selective_{b}") if n in names and n not in first]
    return [*first, *rest]


UNSIGNED_CMAP, SIGNED_CMAP = "jet", "RdBu_r"


def explain_gallery(
    clip: ExplainedClip,
    path: str | os.PathLike,
    n_frames: int = 4,
    title: str = "",
    mask: np.ndarray | None = None,
    order: list[str] | None = None,
) -> Path:
    """Post-hoc maps of one clip: rows explainers, columns ``n_frames`` frames spread over the
    clip; the diver mask's outline when given. A map without negative values is min-max scaled
    over its clip (jet); a signed map (occlusion, LOCO, ...) is divided by its largest magnitude
    over the clip (blue-white-red, 0 = white), so that its sign stays readable."""
    n = clip.shape[0]
    frames = np.linspace(0, n - 1, min(n_frames, n)).round().astype(int)
    names = map_order(list(clip.maps), order)
    fig, axes = plt.subplots(
        len(names),
        len(frames),
        figsize=(1.7 * len(frames) + 1.6, 1.6 * len(names) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    signed_rows = []
    for r, name in enumerate(names):
        signed = bool((clip.maps[name] < 0).any())
        signed_rows.append(signed)
        volume = signed_clip(clip.maps[name]) if signed else minmax_clip(clip.maps[name])
        for c, f in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(
                volume[f],
                cmap=SIGNED_CMAP if signed else UNSIGNED_CMAP,
                vmin=-1 if signed else 0,
                vmax=1,
                interpolation="nearest",
            )
            if mask is not None and mask[f].any():
                ax.contour(mask[f], levels=[0.5], colors="black" if signed else "white",
                           linewidths=1.0)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{name}\n(signed)" if signed else name, fontsize=8)
            if r == 0:
                ax.set_title(f"frame {clip.frame_indices[f]}", fontsize=8)
    bars = [(UNSIGNED_CMAP, 0, "min-max over the clip")]
    if any(signed_rows):
        bars.append((SIGNED_CMAP, -1, "signed: relevance / max |relevance| over the clip"))
    for cmap, low, label in bars:
        bar = fig.colorbar(
            plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(low, 1)),
            ax=axes,
            shrink=0.4,
            aspect=30,
        )
        bar.set_label(label, fontsize=8)
    outline = "; outline = diver mask" if mask is not None else ""
    fig.suptitle(
        f"{title} {clip.vid_name} (label {clip.label}, explained class {clip.target}{outline})",
        fontsize=9,
    )
    return _save(fig, path)
