"""The photometric camera check: textured pixels, the exhaustive translation search, the choice."""

from __future__ import annotations

import numpy as np
import pytest

from flowguide.segment.camera import (
    SEARCH_TOP_SIDE,
    check_cameras,
    search_translation,
    textured_colour_error,
    textured_pixels,
)


def flat_scene(height: int, width: int, seed: int = 0, patches: int | None = None) -> np.ndarray:
    """A flat grey wall with a few small textured patches: most pixels carry no motion
    evidence, as on SynthDive's calm stand."""
    rng = np.random.default_rng(seed)
    scene = np.full((height, width, 3), 120, np.uint8)
    for _ in range(patches or height * width // 400):  # ~2% of the wall
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        scene[y : y + 6, x : x + 6] = rng.integers(0, 255, (6, 6, 3))
    return scene


def panned_pair(height, width, pan, pad=40, seed=0, patches=None):
    """Frames t and t+1 of a camera that moves by ``pan`` (dx, dy) px: a scene point at (x, y)
    in frame t lies at (x - dx, y - dy) in frame t+1."""
    scene = flat_scene(height + 2 * pad, width + 2 * pad, seed, patches)
    a = scene[pad : pad + height, pad : pad + width]
    b = scene[pad + pan[1] : pad + pan[1] + height, pad + pan[0] : pad + pan[0] + width]
    return a.astype(np.float32), b.astype(np.float32)


def test_textured_pixels_threshold_in_grey_levels_per_pixel():
    # Left half: a ramp of 3 grey levels per pixel; right half: 10 per pixel.
    ramp = np.concatenate([3.0 * np.arange(20), 60 + 10.0 * np.arange(20)])
    image = np.tile(ramp, (10, 1)).astype(np.float32)
    textured = textured_pixels(image, 5.0)
    assert not textured[2:-2, 1:18].any()
    assert textured[2:-2, 22:39].all()
    assert textured_pixels(image, 2.0)[2:-2, 1:39].all()


def test_textured_colour_error_is_the_mean_over_textured_pixels():
    a, b = panned_pair(40, 50, (3, -2), pad=10, patches=40)
    textured = np.zeros(a.shape[:2], bool)
    textured[5:35:2, 5:45:3] = True  # any mask of enough pixels inside both frames
    shift = np.array([[1.0, 0, -3], [0, 1.0, 2], [0, 0, 1]])  # the true model: error 0
    assert textured_colour_error(a, b, shift, textured) == pytest.approx(0.0, abs=1e-4)
    identity = np.eye(3)
    expected = np.abs(a - b).max(axis=2)[textured].mean()  # the same pixels, no warp
    assert textured_colour_error(a, b, identity, textured) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("size", "pan"),
    [((72, 96), (-5, 12)), ((72, 96), (0, -15)), ((2 * SEARCH_TOP_SIDE + 8, 260), (-13, 7))],
)
def test_search_translation_recovers_the_camera_over_a_flat_wall(size, pan):
    a, b = panned_pair(*size, pan)
    found = search_translation(a, b, 0.25, 5.0)
    np.testing.assert_allclose(found[:2, 2], [-pan[0], -pan[1]])
    np.testing.assert_allclose(found[:2, :2], np.eye(2))


def test_search_translation_on_a_flat_frame_gives_none():
    flat = np.full((40, 50, 3), 90, np.float32)
    assert search_translation(flat, flat, 0.25, 5.0) is None


def test_check_cameras_replaces_a_failed_flow_fit_by_the_search():
    """Over a flat wall the flow's fill-in is ~0: the fitted camera is the identity while the
    camera moved 11 px. The search's translation aligns the textured pixels; it is kept."""
    a, b = panned_pair(72, 96, (2, 11))
    rgb = np.stack([a, b])
    matrices = [[np.eye(3)], [np.eye(3)]]
    used_gap = np.array([[1], [-1]])
    checked = check_cameras(rgb, matrices, used_gap, search_fraction=0.25, min_gradient=5.0)
    np.testing.assert_allclose(checked[0][0][:2, 2], [-2, -11])
    np.testing.assert_allclose(checked[1][0][:2, 2], [2, 11])  # frame 1 to frame 0
