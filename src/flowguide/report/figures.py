"""The report's figures (matplotlib, Agg): Figures 4.2, 5.1, 5.2, 5.3 and 5.4 of the thesis.

Every function writes one PNG and returns its path, or returns None with the reason logged
when the data it needs is absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import h5py  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from flowguide.report.tables import display_name, method_sort_key  # noqa: E402
from flowguide.utils.h5 import read_mask_dataset, read_shard  # noqa: E402
from flowguide.utils.masks import read_video_masks  # noqa: E402
from flowguide.utils.video import read_frames  # noqa: E402

log = logging.getLogger("flowguide")
DPI = 110


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def accuracy_vs_t(complexity: pd.DataFrame, path: str | os.PathLike) -> Path | None:
    """Figure 5.1: top-1 accuracy against T, one line per method."""
    if complexity.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted(complexity["method"].unique(), key=method_sort_key):
        part = complexity[complexity["method"] == method].sort_values("T")
        ax.plot(part["T"], part["top1"], marker="o", label=display_name(method))
    ts = sorted(complexity["T"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set_xlabel("temporal resolution T (frames)")
    ax.set_ylabel("test top-1 accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def accuracy_vs_gflops(complexity: pd.DataFrame, path: str | os.PathLike) -> Path | None:
    """Figure 5.4: accuracy against GFLOPs (multiply-adds per clip), points labelled with T."""
    data = complexity.dropna(subset=["gflops", "top1"])
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted(data["method"].unique(), key=method_sort_key):
        part = data[data["method"] == method].sort_values("gflops")
        ax.plot(part["gflops"], part["top1"], marker="o", label=display_name(method))
        for _, row in part.iterrows():
            ax.annotate(
                f"T={row['T']}",
                (row["gflops"], row["top1"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    ax.set_xlabel("GFLOPs per clip (fvcore: multiply-adds)")
    ax.set_ylabel("test top-1 accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def alpha_sweep(table: pd.DataFrame, path: str | os.PathLike) -> Path | None:
    """Figure 5.2: (a) alpha vs accuracy, (b) alpha vs GradCAM IoU and Dice, per T."""
    if table.empty:
        return None
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 4))
    for t, part in table.groupby("T"):
        part = part.sort_values("alpha")
        ax_a.plot(part["alpha"], part["top1"], marker="o", label=f"T={t}")
        for column in [c for c in part if c.endswith(("_iou", "_dice"))]:
            ax_b.plot(part["alpha"], part[column], marker="o", label=f"{column} T={t}")
    ax_a.set(
        xlabel="alpha (cross-entropy weight; beta = 1 - alpha)",
        ylabel="test top-1 accuracy",
        title="(a) alpha vs accuracy",
    )
    ax_b.set(xlabel="alpha", ylabel="GradCAM vs mask", title="(b) alpha vs IoU and Dice")
    for ax in (ax_a, ax_b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def cam_vs_mask(
    cams_h5: str | os.PathLike, path: str | os.PathLike, n_frames: int = 4, title: str = ""
) -> Path | None:
    """Figure 5.3: each saved map (rows) and the diver mask over ``n_frames`` frames of one clip."""
    with h5py.File(cams_h5, "r") as fh:
        clips = list(fh)
        if not clips:
            return None
        group = fh[clips[0]]
        mask = read_mask_dataset(group["mask"])
        maps = {name: group[name][()].astype(np.float32) for name in group if name != "mask"}
        threshold = float(fh.attrs.get("threshold", 0.5))
        label, pred = group.attrs.get("label"), group.attrs.get("pred")
    frames = np.linspace(0, len(mask) - 1, min(n_frames, len(mask))).round().astype(int)
    rows = [*maps.items(), ("mask", mask.astype(np.float32))]
    fig, axes = plt.subplots(
        len(rows), len(frames), figsize=(2.2 * len(frames), 2.0 * len(rows)), squeeze=False
    )
    for r, (name, volume) in enumerate(rows):
        for c, f in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(volume[f], cmap="gray" if name == "mask" else "jet", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=8)
    fig.suptitle(
        f"{title} {clips[0]} (label {label}, pred {pred}; attended >= {threshold})", fontsize=9
    )
    return _save(fig, path)


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """(2, H, W) or (H, W, 2) flow -> (H, W, 3) uint8: hue = direction, value = magnitude."""
    if flow.shape[0] == 2 and flow.ndim == 3:
        flow = np.moveaxis(flow, 0, -1)
    flow = flow.astype(np.float32)
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    hsv = np.zeros((*flow.shape[:2], 3), np.uint8)
    hsv[..., 0] = (angle * 90 / np.pi).astype(np.uint8)
    hsv[..., 1] = 255
    top = float(np.percentile(magnitude, 99)) or 1.0
    hsv[..., 2] = np.clip(magnitude / top * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


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
        if vid not in fh:
            return f"not in {where}"
        dset = _find_dataset(fh[vid], kind)
        if dset is None:
            return f"no {kind} data in {where}"
        images = [dset[min(int(f), dset.shape[0] - 1)] for f in frames]
    return [image[0] if image.ndim == 4 else image for image in images]  # first flow gap


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
        rgb = read_frames(video["path"], [int(video["start_frame"]) + int(f) for f in frames])
        panels["RGB"] = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in rgb]
    except Exception as exc:  # the gallery shows the reason; the report goes on
        panels["RGB"] = f"{video['path']}: {exc}"
    flows = _shard_frames(results / "flow" / f"{shard}.h5", vid, "flow", frames)
    panels["flow"] = flows if isinstance(flows, str) else [flow_to_rgb(f) for f in flows]
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
                if c == 0:
                    ax.text(
                        0.02,
                        0.5,
                        f"missing: {images}",
                        fontsize=6,
                        wrap=True,
                        transform=ax.transAxes,
                    )
            elif name == "candidates":
                ax.imshow(images[c], cmap="tab10", vmin=0, vmax=10, interpolation="nearest")
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
