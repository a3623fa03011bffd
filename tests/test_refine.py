"""Motion evidence -> silhouettes (segment/refine.py), piece by piece, and flow-carried
accumulation."""

from __future__ import annotations

import cv2
import numpy as np

from flowguide.segment.refine import (
    RefineParams,
    accumulate,
    close_padded,
    convex_hull,
    likelier_foreground,
    refine_frame,
    whole_pieces,
)


def disk(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def edge_of(obj: np.ndarray, width: int = 2) -> np.ndarray:
    kernel = np.ones((2 * width + 1,) * 2, np.uint8)
    return obj & ~cv2.erode(obj.astype(np.uint8), kernel).astype(bool)


def textured_scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(60, 8, (h, w, 3)), 0, 255).astype(np.uint8)  # dark textured ground


def test_an_outline_of_moving_edges_becomes_the_whole_object():
    h, w = 96, 128
    rgb = textured_scene(h, w)
    obj = disk(h, w, 48, 64, 18)
    rgb[obj] = (200, 170, 120)  # a uniform bright object
    # Motion evidence only on the object's edge (what a colour residual of a moving uniform
    # object gives), broken in places.
    edge = edge_of(obj)
    edge[:, 60:68] = False
    refined = refine_frame(rgb, edge, edge, RefineParams())
    assert iou(edge, obj) < 0.3
    assert iou(refined, obj) > 0.85


def test_a_textured_object_whose_edges_move_is_filled_and_its_neighbour_stays_apart():
    # A striped object (its own texture) whose edges alone moved, and 6 px to its right a
    # second, differently coloured object with a whole (dense) moving mask.
    h, w = 96, 128
    rgb = textured_scene(h, w, seed=1)
    obj = np.zeros((h, w), bool)
    obj[30:66, 30:60] = True
    stripes = (np.arange(w) // 3) % 2 == 0
    rgb[obj & stripes[None, :]] = (220, 60, 60)
    rgb[obj & ~stripes[None, :]] = (240, 200, 40)
    other = np.zeros((h, w), bool)
    other[36:60, 66:80] = True
    rgb[other] = (60, 200, 230)
    edges = edge_of(obj)
    edges[44:52, :] = False  # the outline is broken on both sides
    own = edges | other
    refined = refine_frame(rgb, own, own, RefineParams())
    assert iou(own & ~other, obj) < 0.4
    assert iou(refined & ~other, obj) > 0.85
    # The neighbour is kept exactly and stays a separate 8-connected component.
    np.testing.assert_array_equal(refined[:, 62:], other[:, 62:])
    count, labels = cv2.connectedComponents(refined.astype(np.uint8), connectivity=8)
    assert len({labels[40, 40], labels[40, 70]}) == 2 and labels[40, 40] and labels[40, 70]


def test_a_group_spanning_a_flat_stand_fills_the_object_and_not_the_stand():
    # A diver-like block on a flat grey stand; its evidence also holds grey "ghost" pixels where
    # it was (the colour residual fires there too), and a fragment 10 px away joins its group,
    # so the group's hull spans grey stand. The block is filled, the stand stays out.
    h, w = 72, 96
    rgb = np.full((h, w, 3), 128, np.uint8)
    block = np.zeros((h, w), bool)
    block[20:50, 40:56] = True
    rgb[block] = (30, 90, 40)
    ghost = np.zeros((h, w), bool)
    ghost[20:50, 36:40] = True  # grey pixels next to it
    frag = np.zeros((h, w), bool)
    frag[30:34, 66:68] = True
    rgb[frag] = (30, 90, 40)
    own = edge_of(block, 1) | ghost | frag
    refined = refine_frame(rgb, own, own, RefineParams())
    stand_in_hull = convex_hull(own) & ~block & ~frag & ~ghost
    assert stand_in_hull.sum() > 150
    assert not (refined & stand_in_hull).any()
    assert (own & block).sum() < 0.5 * block.sum()
    assert (refined & block).sum() >= 0.95 * block.sum()


def test_a_group_touching_a_screen_fixed_overlay_is_not_grown():
    h, w = 96, 128
    rgb = textured_scene(h, w)
    obj = disk(h, w, 48, 64, 18)
    rgb[obj] = (200, 170, 120)
    edge = edge_of(obj)
    fixed = np.zeros((h, w), bool)
    fixed[28:32, 60:70] = True  # an overlay on the object's top edge
    refined = refine_frame(rgb, edge, edge, RefineParams(), fixed)
    np.testing.assert_array_equal(refined, edge)


def test_whole_pieces_by_hand():
    mask = np.zeros((20, 30), bool)
    mask[2:8, 2:8] = True  # 36 px square: fills its hull
    mask[12, 2:20] = True  # 18 px line: fills its hull too
    mask[10:19, 22] = True  # an L of 9 + 6 px whose hull is a triangle of ~35 px
    mask[18, 23:29] = True
    mask[0, 28] = True  # a speck
    # L: pixels 15; convex hull of the L (rasterised, with its edges) 9*7 / 2 + edges ~ 39.
    hull_l = convex_hull(mask[:, 21:] & (np.arange(20)[:, None] >= 10))
    assert 15 < 0.5 * hull_l.sum()
    expected = np.zeros_like(mask)
    expected[2:8, 2:8] = True
    expected[12, 2:20] = True
    np.testing.assert_array_equal(whole_pieces(mask, 0.5, 10), expected)
    expected[12, 2:20] = False  # the line is smaller than 20 px
    np.testing.assert_array_equal(whole_pieces(mask, 0.5, 20), expected)


def test_likelier_foreground_by_hand():
    rgb = np.zeros((1, 6, 3), np.uint8)
    rgb[0, :, 0] = [10, 10, 100, 100, 200, 250]  # red cells (8 bins of 32): 0, 0, 3, 3, 6, 7
    fg = np.array([[True, False, True, False, False, False]])
    bg = np.array([[False, True, False, True, True, True]])
    # fg: cell 0 -> 1/2, cell 3 -> 1/2; bg: cells 0, 3, 6, 7 -> 1/4 each
    np.testing.assert_array_equal(likelier_foreground(rgb, fg, bg)[0], [1, 1, 1, 1, 0, 0])
    bg = np.array([[True, True, False, True, True, False]])  # cell 0 -> 1/2, cell 3 and 6 -> 1/4
    np.testing.assert_array_equal(likelier_foreground(rgb, fg, bg)[0], [0, 0, 1, 1, 0, 0])


def test_closing_does_not_grow_along_the_border_and_hulls_fill_outlines():
    mask = np.zeros((10, 12), bool)
    mask[0:4, 2:9] = True
    mask[1:3, 4:6] = False  # a hole
    np.testing.assert_array_equal(close_padded(mask, 1)[4:], False)
    filled = convex_hull(mask)
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
