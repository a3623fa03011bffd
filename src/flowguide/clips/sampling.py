"""Dynamic temporal stride (thesis Section 4.6.1).

T frames of a clip of N frames: stride ``s = ceil(N / T)``, frame ``i`` is ``i * s + t`` for
``i = 0..T-1``. In training the offset ``t`` is drawn uniformly from ``[0, s]`` (both ends
included, as in the thesis); in evaluation ``t = 0``.

Indices past the clip's last frame (when ``t > 0``, or when ``T * s`` overshoots ``N``) are
clamped to the last frame ``N - 1``, so the clip's end repeats rather than wrapping around.
A clip shorter than T (``N < T``) gets ``s = 1``: every frame once, then its last frame repeated.

At large T the clamping is frequent: N = 130, T = 128 gives s = 2, and with offset 0 the slots
65..127 (63 of 128) all show the last frame, 62 of them as repeats. ``repeated_slots`` counts a
clip's slots that show a frame an earlier slot already showed; training logs the share per epoch
(metrics.csv ``repeated_slot_share``). This formula (``sampling: stride``) stays the default.

``sampling: spread`` instead cuts the clip into T equal segments [floor(iN/T), floor((i+1)N/T))
and takes one frame of each: uniform within the segment in training, the segment's centre in
evaluation. With N >= T every segment holds a frame, so no frame repeats; with N < T the frames
``floor(iN/T)`` repeat evenly (T - N repeats, the fewest possible).
"""

from __future__ import annotations

import math

import numpy as np


def temporal_stride(n_frames: int, num_samples: int) -> int:
    if n_frames < 1 or num_samples < 1:
        raise ValueError(f"need n_frames >= 1 and T >= 1, got N={n_frames}, T={num_samples}")
    return math.ceil(n_frames / num_samples)


def frame_indices(n_frames: int, num_samples: int, offset: int = 0) -> np.ndarray:
    """Clip-relative indices ``min(i * s + offset, N - 1)`` for ``i = 0..T-1``."""
    stride = temporal_stride(n_frames, num_samples)
    if not 0 <= offset <= stride:
        raise ValueError(f"offset {offset} outside [0, {stride}]")
    raw = np.arange(num_samples, dtype=np.int64) * stride + offset
    return np.minimum(raw, n_frames - 1)


def draw_offset(n_frames: int, num_samples: int, rng: np.random.Generator) -> int:
    """A training offset, uniform in ``[0, s]`` (inclusive)."""
    return int(rng.integers(0, temporal_stride(n_frames, num_samples) + 1))


SAMPLINGS = ("stride", "spread")


def spread_indices(
    n_frames: int, num_samples: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """One frame of each of T equal segments: random within it with ``rng``, else its centre."""
    if n_frames < 1 or num_samples < 1:
        raise ValueError(f"need n_frames >= 1 and T >= 1, got N={n_frames}, T={num_samples}")
    i = np.arange(num_samples, dtype=np.int64)
    if n_frames < num_samples:
        return i * n_frames // num_samples
    lo = i * n_frames // num_samples
    hi = (i + 1) * n_frames // num_samples  # exclusive; hi > lo since N >= T
    if rng is None:
        return (lo + hi - 1) // 2
    return lo + rng.integers(0, hi - lo)


def repeated_slots(indices: np.ndarray) -> int:
    """Slots showing a frame that an earlier slot already showed."""
    return int(len(indices) - len(np.unique(indices)))


def sample_indices(
    n_frames: int,
    num_samples: int,
    training: bool,
    rng: np.random.Generator | None = None,
    sampling: str = "stride",
) -> np.ndarray:
    """Training: random offset (or position in the segment) from ``rng``; evaluation: offset 0
    (the segment's centre)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"train.sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if training and rng is None:
        raise ValueError("training sampling needs a random generator")
    if sampling == "spread":
        return spread_indices(n_frames, num_samples, rng if training else None)
    if not training:
        return frame_indices(n_frames, num_samples, 0)
    return frame_indices(n_frames, num_samples, draw_offset(n_frames, num_samples, rng))
