"""SynthDive's diver and camera: the articulated body, its pose over the dive, the panning
camera, and the diver's colours and id mask in a frame. Moved out of synthdive_render.py
unchanged; the scene and the frame compositing stay there.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from flowguide.data.synthdive_render import ClipSpec

# --- the diver ------------------------------------------------------------------------------------

# Joint angles (degrees) of each pose, in the body frame: 0 = along the torso towards the head,
# positive = towards the diver's front. (upper arm, forearm, thigh, shin, foot)
POSES = {
    "STAND": (172.0, 176.0, 180.0, 180.0, 90.0),
    "PREP": (40.0, 20.0, 150.0, 205.0, 100.0),
    "STRAIGHT": (2.0, 0.0, 180.0, 180.0, 180.0),
    "TUCK": (115.0, 175.0, 45.0, 200.0, 210.0),
    "PIKE": (45.0, 150.0, 25.0, 25.0, 25.0),
    "STR": (95.0, 95.0, 180.0, 180.0, 180.0),
    "FREE": (170.0, 40.0, 180.0, 180.0, 180.0),
}
UPPER_ARM, FOREARM, THIGH, SHIN, FOOT = 0.16, 0.16, 0.25, 0.24, 0.06
SHOULDER, HIP = (0.0, 0.27), (0.0, 0.0)
TORSO = np.array(
    [(-0.07, -0.03), (0.07, -0.03), (0.078, 0.12), (0.092, 0.21), (0.07, 0.295),
     (-0.07, 0.295), (-0.08, 0.15)]
)  # fmt: skip
NECK = np.array([(-0.028, 0.27), (0.032, 0.27), (0.032, 0.33), (-0.028, 0.33)])
HEAD_CENTRE, HEAD_RADIUS = (0.012, 0.38), 0.068
LIMB_WIDTH = 1.6  # limb radii below are multiplied by this: several pixels wide at 96 px


def _direction(angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([math.sin(a), math.cos(a)])


_ARCS = {
    n: np.column_stack([np.cos(np.linspace(0, math.pi, n)), np.sin(np.linspace(0, math.pi, n))])
    for n in (3, 5)
}  # unit half circles, rotated into place for each limb end


def _rotated_arc(n: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return _ARCS[n] @ np.array([[c, s], [-s, c]])


def _capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, n: int = 5) -> np.ndarray:
    """A limb: a tapered segment with round ends, as a polygon."""
    base = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
    r0, r1 = r0 * LIMB_WIDTH, r1 * LIMB_WIDTH
    end = p1 + r1 * _rotated_arc(n, base - math.pi / 2)
    start = p0 + r0 * _rotated_arc(n, base + math.pi / 2)
    return np.concatenate([end, start])


def _circle(centre: tuple[float, float], radius: float, start: float, stop: float, n: int):
    angles = np.radians(np.linspace(start, stop, n))
    return np.asarray(centre) + radius * np.column_stack([np.cos(angles), np.sin(angles)])


HEAD = _circle(HEAD_CENTRE, HEAD_RADIUS, 0, 360, 14)
HAIR = _circle(HEAD_CENTRE, HEAD_RADIUS, 70, 250, 9)


def body_parts(pose: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(colour role, polygon in the body frame) in drawing order: far side first."""
    a1, a2, l1, l2, foot = pose
    parts: list[tuple[str, np.ndarray]] = []
    # The far arm and leg are offset a little so both sides show, as in a real side view.
    for shade, da, dl in (("far", 9.0, -6.0), ("near", 0.0, 0.0)):
        hip = np.array(HIP)
        knee = hip + THIGH * _direction(l1 + dl)
        ankle = knee + SHIN * _direction(l2 + dl)
        toe = ankle + FOOT * _direction(foot + dl)
        parts.append((f"leg_{shade}", _capsule(hip, knee, 0.045, 0.034)))
        parts.append((f"leg_{shade}", _capsule(knee, ankle, 0.033, 0.024)))
        parts.append((f"leg_{shade}", _capsule(ankle, toe, 0.02, 0.015, n=3)))
        if shade == "near":
            parts.append(("suit", TORSO))
            parts.append(("skin", NECK))
            parts.append(("skin", HEAD))
            parts.append(("hair", HAIR))
        shoulder = np.array(SHOULDER)
        elbow = shoulder + UPPER_ARM * _direction(a1 + da)
        hand = elbow + FOREARM * _direction(a2 + da)
        parts.append((f"arm_{shade}", _capsule(shoulder, elbow, 0.028, 0.023)))
        parts.append((f"arm_{shade}", _capsule(elbow, hand, 0.023, 0.019)))
    return parts


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _blend(a: str, b: str, w: float) -> np.ndarray:
    return (1 - w) * np.array(POSES[a]) + w * np.array(POSES[b])


@functools.lru_cache(maxsize=256)
def _lowest_point(pose: tuple[float, ...]) -> float:
    """How far below the hip the body reaches when upright (to stand on the platform)."""
    legs = [poly for role, poly in body_parts(np.array(pose)) if role.startswith("leg")]
    return float(-min(poly[:, 1].min() for poly in legs))


@dataclass(frozen=True)
class DiverState:
    hip: tuple[float, float]  # world (u, v)
    somersault: float  # rotation, radians, positive = towards the diver's front
    width_scale: float  # twist foreshortening, signed (negative: seen from the other side)
    pose: np.ndarray


def _flight_pose(position: str, s: float) -> np.ndarray:
    """PREP -> STRAIGHT at takeoff, -> the flight position, and open again before the entry."""
    if s < 0.08:
        return _blend("PREP", "STRAIGHT", _smoothstep(s / 0.08))
    if s < 0.8:
        return _blend("STRAIGHT", position, _smoothstep((s - 0.08) / 0.14))
    return _blend(position, "STRAIGHT", _smoothstep((s - 0.8) / 0.16))


def diver_state(spec: ClipSpec, t: float) -> DiverState:
    dive = spec.dive
    lean_max = math.radians(12.0) * dive.spin
    stand_u = -0.02 - 0.02 * dive.facing
    takeoff_pose = np.array(POSES["PREP"])
    takeoff_v = -spec.board_height - _lowest_point(tuple(takeoff_pose)) * spec.body_len
    if t < spec.takeoff_frame:
        w = _smoothstep((t / spec.takeoff_frame - 0.35) / 0.65)
        pose = _blend("STAND", "PREP", w)
        hip_v = -spec.board_height - _lowest_point(tuple(pose)) * spec.body_len
        return DiverState((stand_u, hip_v), lean_max * w, 1.0, pose)
    total = dive.spin * 2 * math.pi * dive.somersaults
    if t <= spec.entry_frame:
        s = (t - spec.takeoff_frame) / (spec.entry_frame - spec.takeoff_frame)
        # Parabola through the takeoff height at s=0 and the water at s=1, highest at s=apex.
        drop = -takeoff_v
        b = drop / (1 - 2 * spec.apex)
        hip_v = takeoff_v - 2 * b * spec.apex * s + b * s * s
        ease = 0.5 * s + 0.5 * (s * s * (3 - 2 * s))
        turn = lean_max + (total - lean_max) * ease
        twist = 2 * math.pi * dive.twists * _smoothstep((s - 0.15) / 0.7)
        c = math.cos(twist)
        scale = math.copysign(max(abs(c), 0.25), c)
        hip = (stand_u + spec.travel * s, hip_v)
        return DiverState(hip, turn, scale, _flight_pose(dive.position, s))
    # Entry: the diver slows in the water and stays partly visible to the end of the clip.
    depth = 0.22 * spec.body_len * (1 - math.exp(-(t - spec.entry_frame) / 1.5))
    end_scale = math.copysign(1.0, math.cos(2 * math.pi * dive.twists))
    return DiverState(
        (stand_u + spec.travel * (1 + 0.02 * (t - spec.entry_frame)), depth),
        total,
        end_scale,
        np.array(POSES["STRAIGHT"]),
    )


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in rgb)


# --- camera ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _camera_cached(spec: ClipSpec) -> np.ndarray:
    frames = spec.frames
    hips = np.array([diver_state(spec, t).hip for t in range(frames)])
    t = np.arange(frames)
    pan = spec.pan_amp * np.sin(2 * math.pi * spec.pan_cycles * t / frames + spec.pan_phase)
    target_u = hips[:, 0] + pan
    target_v = hips[:, 1] - 0.12 * spec.body_len
    cam = np.zeros((frames, 2))
    cam[0] = target_u[0], target_v[0]
    for i in range(1, frames):  # a camera operator who follows with a little lag
        cam[i, 0] = cam[i - 1, 0] + 0.7 * (target_u[i] - cam[i - 1, 0])
        cam[i, 1] = cam[i - 1, 1] + 0.6 * (target_v[i] - cam[i - 1, 1])
    cam += spec.jitter
    cam.setflags(write=False)
    return cam


def camera_path(spec: ClipSpec) -> np.ndarray:
    """(frames, 2) world point (u, v) at the centre of each frame."""
    return _camera_cached(spec)


def world_to_pixel(spec: ClipSpec, t: int, points: np.ndarray) -> np.ndarray:
    """World (u, v) -> pixel (x, y) of frame ``t``; integer pixel coordinates are pixel centres."""
    cu, cv = camera_path(spec)[t]
    h = spec.height
    return np.column_stack(
        [(points[:, 0] - cu) * h + spec.width / 2 - 0.5, (points[:, 1] - cv) * h + h / 2 - 0.5]
    )


def water_rows(spec: ClipSpec, t: int) -> np.ndarray:
    """(H,) bool: rows whose centre lies below the water surface (v > 0)."""
    cv = camera_path(spec)[t][1]
    v = cv + (np.arange(spec.height) + 0.5 - spec.height / 2) / spec.height
    return v > 0


def render_diver(spec: ClipSpec, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The diver alone in frame ``t``: (H, W, 3) uint8 colour layer and (H, W) bool mask.

    Parts below the water surface are hidden, so the mask is what the camera sees.
    """
    state = diver_state(spec, t)
    f = spec.dive.facing
    a = state.somersault
    up = np.array([f * math.sin(a), -math.cos(a)])
    front = np.array([f * math.cos(a), math.sin(a)])
    hip_px = world_to_pixel(spec, t, np.array([state.hip]))[0]
    scale = spec.body_len * spec.height
    colours = {
        "suit": spec.suit,
        "skin": spec.skin,
        "hair": spec.hair,
        "leg_near": spec.skin,
        "arm_near": spec.skin,
        "leg_far": _shade(spec.skin, 0.72),
        "arm_far": _shade(spec.skin, 0.72),
    }
    parts = body_parts(state.pose)
    polys = np.concatenate([poly for _, poly in parts])
    pts = hip_px + scale * (
        np.outer(polys[:, 0] * state.width_scale, front) + np.outer(polys[:, 1], up)
    )
    fixed = np.round(pts * 16).astype(np.int32)  # 4 fractional bits (shift=4)
    # Paint part indices (later parts over earlier ones), then colour by index: one fill per
    # part, and the mask is exactly the set of painted pixels.
    ids = np.zeros((spec.height, spec.width), np.uint8)
    start = 0
    for k, (_, poly) in enumerate(parts, start=1):
        cv2.fillPoly(ids, [fixed[start : start + len(poly)]], k, lineType=cv2.LINE_8, shift=4)
        start += len(poly)
    ids[water_rows(spec, t)] = 0
    lut = np.array([(0, 0, 0)] + [colours[role] for role, _ in parts], np.uint8)
    return lut[ids], ids > 0
