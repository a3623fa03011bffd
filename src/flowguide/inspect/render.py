"""Figure 4.2 of the thesis for one video: RGB | flow colour | candidate layers | diver mask.

Panels are composed into one uint8 image in numpy (so the PNG's pixel size is exact: a header
band of ``HEADER_PX`` rows for the column titles, one row of panels per chosen frame, then, when
there are candidates, a legend band of ``LEGEND_PX`` rows with the colour of each candidate
rank) and saved with matplotlib's Agg backend; animations are the same rows for every frame, as
GIF (PIL) or MP4 (flowguide.utils.video.write_video).

What a reader needs is drawn in: the selection rule's central band as dashed lines over the
candidates, the chosen label (or "no evidence") and its confidence under the mask, "backward
flow" on frames whose flow goes to the previous frame (the clip's last frame), and the flow
colour scale in the column title (one scale for all rows, not normalised per frame).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

HEADER_PX = 20
LEGEND_PX = 16
GAP_PX = 2
BACKGROUND = 255
BAND_COLOUR = (255, 255, 0)
BAND_COLUMN = "candidates"


@dataclass
class VideoPanels:
    """Per-frame panel images (N, H, W, 3) uint8 of one video, keyed by column title.

    ``notes``: per column, one text per frame written into the panel; ``band``: the central
    band's columns [x0, x1) drawn over the candidates; ``legend``: candidate ranks shown in the
    legend band (empty: no legend)."""

    vid_name: str
    frames: np.ndarray
    columns: dict[str, np.ndarray]
    notes: dict[str, list[str]] = field(default_factory=dict)
    band: tuple[int, int] | None = None
    legend: list[int] = field(default_factory=list)


def label_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours: 0 black, 1..10 matplotlib's tab10, then a golden-ratio hue walk."""
    import matplotlib

    palette = np.zeros((n, 3), dtype=np.uint8)
    tab10 = matplotlib.colormaps["tab10"].colors
    for k in range(1, n):
        if k <= len(tab10):
            palette[k] = np.round(np.asarray(tab10[k - 1]) * 255)
        else:
            hue = np.uint8(((k * 0.618034) % 1.0) * 179)
            hsv = np.array([[[hue, 200, 230]]], dtype=np.uint8)
            palette[k] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return palette


def color_labels(labels: np.ndarray) -> np.ndarray:
    return label_palette()[labels]


def mask_image(masks: np.ndarray) -> np.ndarray:
    return np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1)


def resize_frames(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def draw_band(img: np.ndarray, band: tuple[int, int], scale: int) -> np.ndarray:
    """Dashed 1-px lines at the band's edges (every other 2-px dash), on an upscaled panel."""
    img = img.copy()
    dashes = (np.arange(img.shape[0]) // 2) % 2 == 0
    for x in (band[0] * scale, band[1] * scale - 1):
        img[dashes, min(max(x, 0), img.shape[1] - 1)] = BAND_COLOUR
    return img


def compose_rows(panels: VideoPanels, scale: int = 1) -> np.ndarray:
    """(N, h, W_total, 3): per frame, the columns side by side (GAP_PX white gaps), upscaled."""
    rows = []
    for i in range(len(panels.frames)):
        parts = []
        for j, (title, col) in enumerate(panels.columns.items()):
            img = col[i]
            if scale > 1:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            if panels.band is not None and title == BAND_COLUMN:
                img = draw_band(img, panels.band, scale)
            if j:
                parts.append(np.full((img.shape[0], GAP_PX, 3), BACKGROUND, np.uint8))
            parts.append(img)
        rows.append(np.concatenate(parts, axis=1))
    return np.stack(rows)


def figure_size(
    frame_shape: tuple[int, int], n_columns: int, n_frames: int, scale: int, legend: bool = False
) -> tuple[int, int]:
    """(height, width) in pixels of the PNG that ``render_png`` writes."""
    h, w = frame_shape[0] * scale, frame_shape[1] * scale
    width = n_columns * w + (n_columns - 1) * GAP_PX
    height = HEADER_PX + n_frames * h + (n_frames - 1) * GAP_PX + (LEGEND_PX if legend else 0)
    return height, width


def legend_boxes(ranks: list[int], width: int) -> list[tuple[int, int, int]]:
    """(x0, x1, rank) of each colour box of the legend band (label text follows each box)."""
    step = min(44, max(1, (width - 70) // max(len(ranks), 1)))
    return [(70 + i * step, 70 + i * step + 10, k) for i, k in enumerate(ranks)]


def compose_grid(panels: VideoPanels, scale: int = 1) -> np.ndarray:
    rows = compose_rows(panels, scale)
    width = rows.shape[2]
    parts = [np.full((HEADER_PX, width, 3), BACKGROUND, np.uint8)]
    for i, row in enumerate(rows):
        if i:
            parts.append(np.full((GAP_PX, width, 3), BACKGROUND, np.uint8))
        parts.append(row)
    if panels.legend:
        band = np.full((LEGEND_PX, width, 3), BACKGROUND, np.uint8)
        palette = label_palette()
        for x0, x1, k in legend_boxes(panels.legend, width):
            band[3 : LEGEND_PX - 3, x0:x1] = palette[k]
        parts.append(band)
    return np.concatenate(parts, axis=0)


def render_png(
    panels: VideoPanels, out: str | os.PathLike, scale: int = 1, dpi: int = 100
) -> tuple[int, int]:
    """Write the figure; returns its (height, width) in pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowguide.utils.atomic import atomic_path

    grid = compose_grid(panels, scale)
    height, width = grid.shape[:2]
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    panel_w = (width - (len(panels.columns) - 1) * GAP_PX) / len(panels.columns)
    for j, title in enumerate(panels.columns):
        x = j * (panel_w + GAP_PX) + panel_w / 2
        ax.text(x, HEADER_PX / 2, title, ha="center", va="center", fontsize=8)
    legend_h = LEGEND_PX if panels.legend else 0
    rows_h = height - HEADER_PX - legend_h
    frame_h = (rows_h - (len(panels.frames) - 1) * GAP_PX) / len(panels.frames)
    for i, frame in enumerate(panels.frames):
        y = HEADER_PX + i * (frame_h + GAP_PX) + 2
        ax.text(2, y, f"t={int(frame)}", ha="left", va="top", fontsize=7, color="white")
        for j, title in enumerate(panels.columns):
            note = panels.notes.get(title, [""] * len(panels.frames))[i]
            if note:
                ax.text(
                    j * (panel_w + GAP_PX) + 2, y + frame_h - 4, note, ha="left", va="bottom",
                    fontsize=6, color="white",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
                )  # fmt: skip
    if panels.legend:
        y = height - legend_h / 2
        ax.text(2, y, "candidate rank:", ha="left", va="center", fontsize=6)
        for _, x1, k in legend_boxes(panels.legend, width):
            ax.text(x1 + 2, y, str(k), ha="left", va="center", fontsize=6)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return height, width


def render_animation(
    panels: VideoPanels, out: str | os.PathLike, fps: float = 8, scale: int = 1
) -> None:
    """GIF (by extension .gif) or MP4 (.mp4) of the per-frame rows."""
    from flowguide.utils.atomic import atomic_path

    rows = compose_rows(panels, scale)
    suffix = Path(out).suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(r) for r in rows]
        with atomic_path(out) as tmp:
            images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:],
                duration=int(1000 / fps), loop=0,
            )  # fmt: skip
    elif suffix == ".mp4":
        from flowguide.utils.video import write_video

        # yuv420p needs even sizes: pad with white.
        h, w = rows.shape[1:3]
        rows = np.pad(rows, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=BACKGROUND)
        write_video(out, rows, fps, qscale=2)
    else:
        raise ValueError(f"{out}: animation must end in .gif or .mp4")
