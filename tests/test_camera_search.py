"""The photometric camera check (textured pixels, the exhaustive translation search, the choice)
and the overlay removal of the motion backend."""

from __future__ import annotations

import numpy as np
import pytest

from flowguide.segment.camera import (
    SEARCH_TOP_SIDE,
    check_cameras,
    search_translation,
    textured_error,
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


def test_textured_error_is_the_median_grey_error_over_textured_pixels():
    a, b = panned_pair(40, 50, (3, -2), pad=10, patches=40)
    textured = np.zeros(a.shape[:2], bool)
    textured[5:35:2, 5:45:3] = True  # any mask of enough pixels inside both frames
    shift = np.array([[1.0, 0, -3], [0, 1.0, 2], [0, 0, 1]])  # the true model: error 0
    assert textured_error(a, b, shift, textured) == pytest.approx(0.0, abs=1e-3)
    weights = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as OpenCV's RGB2GRAY
    expected = np.median(np.abs(a @ weights - b @ weights)[textured])  # no warp: the identity
    assert textured_error(a, b, np.eye(3), textured) == pytest.approx(expected, abs=1e-3)
    # Outside frame s: the shift moves every textured pixel out, so the model is refused.
    far = np.array([[1.0, 0, 60], [0, 1.0, 0], [0, 0, 1]])
    assert textured_error(a, b, far, textured) == np.inf


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


def test_remove_overlays_clears_the_graphic_and_keeps_an_athlete_merged_with_it():
    from flowguide.segment.overlay import remove_overlays

    overlay = np.zeros((40, 60), bool)
    overlay[2:10, 20:40] = True  # the score bug's map: 160 pixels
    mask = np.zeros_like(overlay)
    mask[2:10, 20:40] = True  # the bug's residual ...
    mask[10:20, 28:32] = True  # ... merged with an athlete's head and arm: 40 of 200 pixels
    mask[30:36, 2:8] = True  # a separate object, off the map
    halo = np.zeros_like(overlay)
    halo[2:10, 45:50] = True  # a region almost all on a second graphic
    overlay[2:10, 46:50] = True  # 32 of its 40 pixels (0.8) ... then 38 of 40 (0.95)
    out = remove_overlays(mask | halo, overlay, 0.9)
    expected = np.zeros_like(mask)
    expected[10:20, 28:32] = True  # 0.8 of the merged region is bug, < 0.9: kept, bug cleared
    expected[30:36, 2:8] = True
    expected[2:10, 45] = True  # the halo region at 0.8: kept minus its map pixels
    np.testing.assert_array_equal(out, expected)
    overlay[2:10, 45] = True
    overlay[2:4, 45] = False  # 38 of 40 pixels on the map: >= 0.9, dropped whole
    expected[2:10, 45] = False
    np.testing.assert_array_equal(remove_overlays(mask | halo, overlay, 0.9), expected)
    # At 0.5 the merged athlete goes with the bug (the old rule).
    expected[10:20, 28:32] = False
    np.testing.assert_array_equal(remove_overlays(mask | halo, overlay, 0.5), expected)


def test_confirmed_overlay_needs_the_graphic_on_its_own_in_half_of_its_frames():
    from flowguide.segment.overlay import confirmed_overlay

    overlay = np.zeros((40, 60), bool)
    overlay[2:8, 20:30] = True  # a score bug (60 px)
    overlay[20:24, 40:44] = True  # the core of a slow uniform object (16 px)
    bug_alone = np.zeros_like(overlay)
    bug_alone[2:8, 20:30] = True  # frame 0: the bug's residual by itself
    bug_alone[14:30, 36:48] = True  # and the object's region, the core embedded in it
    merged = bug_alone.copy()
    merged[8:16, 24:26] = True  # frame 1: an athlete joins the bug (16 of 76 px)
    only_object = np.zeros_like(overlay)
    only_object[14:30, 36:48] = True
    expected = np.zeros_like(overlay)
    expected[2:8, 20:30] = True
    got = confirmed_overlay([merged, bug_alone], overlay, 0.9)
    np.testing.assert_array_equal(got, expected)  # the object's core is never confirmed
    assert not confirmed_overlay([merged, only_object], overlay, 0.9).any()  # 60/76 < 0.9
    np.testing.assert_array_equal(confirmed_overlay([merged], overlay, 0.75), expected)
    # On its own in 1 of the 3 frames in which it moves: not confirmed.
    assert not confirmed_overlay([merged, bug_alone, merged], overlay, 0.9).any()
    np.testing.assert_array_equal(
        confirmed_overlay([merged, bug_alone, merged, bug_alone], overlay, 0.9), expected
    )


def test_check_cameras_keeps_a_sub_pixel_model_within_one_pixel_of_the_search():
    """A camera moving 2.5 px: the integer search finds 2 or 3 px, within its 1 px step of the
    flow's exact sub-pixel model, which stays: the search corrects gross failures, it does not
    round a good model to whole pixels."""
    import cv2

    scene = np.random.default_rng(1).integers(0, 255, (72, 96, 3)).astype(np.float32)
    a = cv2.GaussianBlur(scene, (9, 9), 2.0)  # smooth texture: interpolation keeps it close
    shift = np.float32([[1, 0, -2.5], [0, 1, 0]])  # b(x) = a(x + 2.5): the scene moved 2.5 px left
    b = cv2.warpAffine(a, shift, (96, 72), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    flow_model = np.array([[1.0, 0, -2.5], [0, 1.0, 0], [0, 0, 1]])
    checked = check_cameras(
        np.stack([a, b]), [[flow_model], [np.linalg.inv(flow_model)]], np.array([[1], [-1]]),
        search_fraction=0.25, min_gradient=5.0,
    )  # fmt: skip
    found = search_translation(a, b, 0.25, 5.0)[0, 2]
    assert found in (-2.0, -3.0)
    assert abs(checked[0][0][0, 2] + 2.5) < 0.2  # the flow's model or phase correlation
