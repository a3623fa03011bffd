"""The report's plots (matplotlib, Agg): Figures 5.1, 5.2, 5.3 and 5.4 of the thesis (the galleries
of Figure 4.2 and the explainers: report/galleries.py).

Every function writes one PNG and returns its path, or returns None with the reason logged
when the data it needs is absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from flowguide.report.tables import display_name, method_sort_key  # noqa: E402
from flowguide.utils.h5 import (  # noqa: E402
    find_video_group,
    read_mask_dataset,
    read_shard,
    video_names,
)

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


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def method_styles(n: int) -> list[dict]:
    """Line styles that keep methods apart when their points coincide (same accuracy at the same
    T or cost, common on small data): open markers of a different shape, each a bit smaller."""
    return [
        {
            "marker": MARKERS[i % len(MARKERS)],
            "markersize": max(4.0, 11.0 - 1.2 * i),
            "markerfacecolor": "none",
            "markeredgewidth": 1.4,
        }
        for i in range(n)
    ]


def _chance_line(ax: plt.Axes, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance ({chance:.2f})")


def accuracy_vs_t(
    complexity: pd.DataFrame, path: str | os.PathLike, chance: float | None = None
) -> Path | None:
    """Figure 5.1: top-1 accuracy against T, one line per method; dashed: chance."""
    if complexity.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = sorted(complexity["method"].unique(), key=method_sort_key)
    for method, style in zip(methods, method_styles(len(methods)), strict=True):
        part = complexity[complexity["method"] == method].sort_values("T")
        ax.plot(part["T"], part["top1"], label=display_name(method), **style)
    _chance_line(ax, chance)
    ts = sorted(complexity["T"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set_xlabel("temporal resolution T (frames)")
    ax.set_ylabel("test top-1 accuracy")
    ax.margins(x=0.08, y=0.1)  # markers at the extremes stay whole, clear of the frame
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def accuracy_vs_gflops(
    complexity: pd.DataFrame, path: str | os.PathLike, chance: float | None = None
) -> Path | None:
    """Figure 5.4: accuracy against GFLOPs (multiply-adds per clip), points labelled with T;
    dashed: chance."""
    data = complexity.dropna(subset=["gflops", "top1"])
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = sorted(data["method"].unique(), key=method_sort_key)
    for method, style in zip(methods, method_styles(len(methods)), strict=True):
        part = data[data["method"] == method].sort_values("gflops")
        ax.plot(part["gflops"], part["top1"], label=display_name(method), **style)
    _chance_line(ax, chance)
    # One label per point: methods that share a point would print the same text on top of itself.
    for (gflops, top1), part in data.groupby(["gflops", "top1"]):
        ts = ",".join(str(t) for t in sorted(part["T"].unique()))
        ax.annotate(
            f"T={ts}", (gflops, top1), fontsize=7, textcoords="offset points", xytext=(6, 4)
        )
    ax.set_xlabel("GFLOPs per clip (fvcore: multiply-adds)")
    ax.set_ylabel("test top-1 accuracy")
    ax.margins(x=0.08, y=0.1)  # markers at the extremes stay whole, clear of the frame
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
        xlabel="alpha = ce_weight (Section 5.2; Dice weight 1 - alpha)",
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
    with read_shard(cams_h5) as fh:
        clips = video_names(fh, cams_h5)
        if not clips:
            return None
        group = find_video_group(fh, clips[0])
        mask = read_mask_dataset(group["mask"])
        rgb = group["rgb"][()] if "rgb" in group else None
        maps = {
            name: group[name][()].astype(np.float32)
            for name in group
            if name not in ("mask", "rgb")
        }
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
            if rgb is not None:  # maps drawn over the model's input frames
                ax.imshow(rgb[f])
                ax.imshow(
                    volume[f], cmap="gray" if name == "mask" else "jet", vmin=0, vmax=1,
                    alpha=0.45,
                )  # fmt: skip
            else:
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
