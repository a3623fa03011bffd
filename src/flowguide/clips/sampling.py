"""Dynamic temporal stride (thesis Section 4.6.1).

T frames of a clip of N frames: stride ``s = ceil(N / T)``, frame ``i`` is ``i * s + t`` for
``i = 0..T-1``. In training the offset ``t`` is drawn uniformly from ``[0, s]`` (both ends
included, as in the thesis); in evaluation ``t = 0``.

Indices past the clip's last frame (when ``t > 0``, or when ``T * s`` overshoots ``N``) are
clamped to the last frame ``N - 1``, so the clip's end repeats rather than wrapping around.
A clip shorter than T (``N < T``) gets ``s = 1``: every frame once, then its last frame repeated.
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


def sample_indices(
    n_frames: int, num_samples: int, training: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Training: random offset from ``rng``; evaluation: offset 0."""
    if not training:
        return frame_indices(n_frames, num_samples, 0)
    if rng is None:
        raise ValueError("training sampling needs a random generator")
    return frame_indices(n_frames, num_samples, draw_offset(n_frames, num_samples, rng))
