"""The one video reader and writer (PyAV). Frames are RGB uint8 arrays shaped (T, H, W, 3)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from flowguide.utils.atomic import atomic_path
from flowguide.utils.failures import VideoError


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: video file does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _decode(path: str | os.PathLike, stop: int | None = None, wanted: set[int] | None = None):
    """Yield (index, RGB array) of decoded frames; only ``wanted`` ones are converted to arrays
    (the conversion dominates decoding time). Decoding errors name the file."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if stop is not None and i >= stop:
                break
            if wanted is None or i in wanted:
                yield i, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count (by decoding: container headers lie for some files), fps and size."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate)
    finally:
        container.close()
    n, height, width = 0, 0, 0
    container = _open(path)
    try:
        for frame in container.decode(container.streams.video[0]):
            height, width = frame.height, frame.width
            n += 1
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()
    if n == 0:
        raise VideoError(f"{path}: video has zero decodable frames")
    return VideoInfo(n_frames=n, fps=fps, width=width, height=height)


def read_video(
    path: str | os.PathLike,
    start: int = 0,
    end: int | None = None,
    short_side: int | None = None,
) -> np.ndarray:
    """Frames ``start`` (inclusive) to ``end`` (exclusive), optionally resized to ``short_side``."""
    frames = [f for i, f in _decode(path, stop=end) if i >= start]
    if not frames:
        raise VideoError(f"{path}: no frames in range [{start}, {end})")
    video = np.stack(frames)
    return resize_short_side(video, short_side) if short_side else video


def read_frames(path: str | os.PathLike, indices: np.ndarray | list[int]) -> np.ndarray:
    """Frames at ``indices`` (repeats allowed), decoding only up to the last one needed."""
    indices = np.asarray(indices, dtype=np.int64)
    wanted = set(indices.tolist())
    stop = int(indices.max()) + 1
    decoded = dict(_decode(path, stop=stop, wanted=wanted))
    missing = sorted(wanted - decoded.keys())
    if missing:
        raise VideoError(f"{path}: frame(s) {missing[:5]} past the end of the video")
    return np.stack([decoded[i] for i in indices.tolist()])


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side equal to ``short_side``, aspect kept."""
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_short_side(video: np.ndarray, short_side: int) -> np.ndarray:
    height, width = video.shape[1:3]
    new_h, new_w = scaled_size(height, width, short_side)
    if (new_h, new_w) == (height, width):
        return video
    return np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_AREA) for f in video])


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, qscale: int = 8) -> None:
    """Encode RGB frames as MPEG-4 Part 2 (mp4v) at fixed quantiser ``qscale`` (2 best, 31 worst).

    Lossy on purpose: the block artefacts mimic Diving48's compression.
    """
    frames = np.asarray(frames, dtype=np.uint8)
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            # Pinning qmin = qmax fixes the quantiser (PyAV's qscale property has no effect here).
            stream.codec_context.options = {"qmin": str(qscale), "qmax": str(qscale)}
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        finally:
            container.close()
