"""Motion evidence -> silhouettes (segment/refine.py) and flow-carried accumulation."""

from __future__ import annotations

import cv2
import numpy as np

from flowguide.segment.refine import (
    RefineParams,
    accumulate,
    close_padded,
    component_hulls,
    refine_frame,
)


def disk(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_an_outline_of_moving_edges_becomes_the_whole_object():
    h, w = 96, 128
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(60, 8, (h, w, 3)), 0, 255).astype(np.uint8)  # dark textured ground
    obj = disk(h, w, 48, 64, 18)
    rgb[obj] = (200, 170, 120)  # a uniform bright object
    # Motion evidence only on the object's edge (what a colour residual of a moving uniform
    # object gives), broken in places.
    edge = obj & ~cv2.erode(obj.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    edge[:, 60:68] = False
    refined = refine_frame(rgb, edge, edge, RefineParams())
    assert iou(edge, obj) < 0.3
    assert iou(refined, obj) > 0.85


def test_closing_does_not_grow_along_the_border_and_hulls_fill_outlines():
    mask = np.zeros((10, 12), bool)
    mask[0:4, 2:9] = True
    mask[1:3, 4:6] = False  # a hole
    np.testing.assert_array_equal(close_padded(mask, 1)[4:], False)
    filled = component_hulls(mask)
    assert filled[1:3, 4:6].all() and filled.sum() == 4 * 7


def test_accumulation_carries_neighbouring_masks_with_the_flow():
    # An object moving 3 px right per frame: frame t's own mask is empty, its neighbours' masks
    # carried by the flow land on its position at t (no trail behind it).
    n, h, w = 5, 12, 30
    pos = [rect for rect in (slice(5 + 3 * t, 9 + 3 * t) for t in range(n))]
    moving = []
    for t in range(n):
        m = np.zeros((h, w), bool)
        m[4:8, pos[t]] = True
        moving.append(m)
    moving[2][:] = False
    flow = np.zeros((n, 1, 2, h, w), np.float32)
    flow[:, 0, 0] = 3.0
    used = np.ones((n, 1), np.int64)
    flow[-1, 0, 0], used[-1] = -3.0, -1
    expected = np.zeros((h, w), bool)
    expected[4:8, pos[2]] = True
    np.testing.assert_array_equal(accumulate(moving, flow, used, 2, 2), expected)


def test_dense_evidence_is_kept_as_it_is():
    h, w = 48, 64
    rgb = np.full((h, w, 3), 90, np.uint8)
    own = disk(h, w, 24, 32, 6)
    accumulated = own | disk(h, w, 24, 35, 6)  # neighbours add a bit: still dense
    np.testing.assert_array_equal(refine_frame(rgb, own, accumulated, RefineParams()), own)
