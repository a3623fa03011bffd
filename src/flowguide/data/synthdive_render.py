"""SynthDive's renderer: a diving pool scene and an articulated diver, drawn with OpenCV.

World coordinates are in units of the frame height: ``u`` to the right, ``v`` down, the water
surface at ``v = 0`` and the platform's end at ``u = 0``. The camera looks at ``(cu, cv)`` and
follows the diver. The diver is drawn into a separate layer with anti-aliasing off, so the true
mask is exactly the set of pixels the diver covers in the (uncompressed) frame.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from flowguide.data import synthdive_realism as realism
from flowguide.data.synthdive_diver import (
    camera_path,
    diver_state,
    render_diver,
    water_rows,
    world_to_pixel,
)

# --- what a class is --------------------------------------------------------------------------

#: takeoff -> (facing: +1 faces the water (right), -1 faces the board; spin: +1 forward rotation)
TAKEOFFS = {"Forward": (1, 1), "Back": (-1, -1), "Reverse": (1, -1), "Inward": (-1, 1)}
SOMERSAULTS = {
    "Dive": 0.5, "1som": 1.0, "15som": 1.5, "2som": 2.0, "25som": 2.5,
    "3som": 3.0, "35som": 3.5, "45som": 4.5,
}  # fmt: skip
TWISTS = {
    "NoTwis": 0.0, "05Twis": 0.5, "1Twis": 1.0, "15Twis": 1.5, "2Twis": 2.0,
    "25Twis": 2.5, "3Twis": 3.0, "35Twis": 3.5,
}  # fmt: skip
POSITIONS = ("TUCK", "PIKE", "STR", "FREE")


@dataclass(frozen=True)
class Dive:
    """How a dive unfolds: the class's four vocabulary words turned into kinematics."""

    takeoff: str
    somersaults: float
    twists: float
    position: str

    @classmethod
    def from_vocab(cls, words: list[str] | tuple[str, ...]) -> Dive:
        takeoff, som, twist, position = words
        return cls(takeoff, SOMERSAULTS[som], TWISTS[twist], position)

    @property
    def facing(self) -> int:
        return TAKEOFFS[self.takeoff][0]

    @property
    def spin(self) -> int:
        return TAKEOFFS[self.takeoff][1]


# --- per-clip random parameters -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ClipSpec:
    """Everything needed to render one clip; sampled once from the clip's own RNG."""

    width: int
    height: int
    frames: int
    dive: Dive
    cue_rgb: tuple[int, int, int]
    body_len: float  # standing diver height, in frame heights
    board_height: float  # platform above the water, in frame heights
    takeoff_frame: float
    entry_frame: float
    travel: float  # horizontal distance covered in flight
    apex: float  # fraction of the flight at which the hip is highest
    skin: tuple[int, int, int]
    suit: tuple[int, int, int]
    hair: tuple[int, int, int]
    texture_seed: int
    pan_amp: float
    pan_cycles: float
    pan_phase: float
    jitter: np.ndarray  # (frames, 2) camera shake, frame heights
    ripples: np.ndarray  # (3, 5) rows: amplitude, u freq, v freq, angular speed, phase
    background_contrast: float = 1.0  # crowd's contrast around its mean (1 = as painted)
    # Realism knobs (flowguide.data.synthdive_realism): the cue's class and how it is shown,
    # the stand (crowd or photo), exposure smear, a pillar in front of the platform end, the
    # entry spray's height (body lengths).
    cue: int = -1
    cue_kind: str = "colour"
    background: str = "crowd"
    motion_blur: float = 0.0
    occluder: bool = False
    splash: float = 0.0


SKINS = ((224, 172, 140), (198, 140, 105), (160, 110, 80), (235, 195, 165), (120, 80, 60))
SUITS = ((30, 30, 35), (20, 40, 110), (130, 20, 30), (20, 90, 60), (90, 40, 110))
HAIRS = ((30, 20, 15), (70, 45, 25), (150, 110, 60), (15, 15, 15))


def sample_spec(
    rng: np.random.Generator,
    dive: Dive,
    cue_rgb: tuple[int, int, int],
    frames: int,
    width: int,
    height: int,
    diver_scale: float = 1.0,
    background_contrast: float = 1.0,
    camera_shake: float = 1.0,
    **knobs,
) -> ClipSpec:
    """Draw a clip's scene parameters. The draws never depend on the class, so appearance
    (colours, sizes, timing) is distributed identically for every class. ``diver_scale`` and
    ``background_contrast`` scale drawn values without changing the draws."""
    takeoff = frames * rng.uniform(0.08, 0.18)
    entry = frames * rng.uniform(0.80, 0.90)
    return ClipSpec(
        background_contrast=float(background_contrast),
        **knobs,
        width=width,
        height=height,
        frames=frames,
        dive=dive,
        cue_rgb=tuple(int(c) for c in cue_rgb),
        body_len=float(rng.uniform(0.42, 0.5)) * diver_scale,
        board_height=float(rng.uniform(0.55, 0.8)),  # a 2-3 m springboard
        takeoff_frame=float(takeoff),
        entry_frame=float(max(entry, takeoff + 2.0)),
        travel=float(rng.uniform(0.15, 0.28)),
        apex=float(rng.uniform(0.25, 0.35)),
        skin=SKINS[rng.integers(len(SKINS))],
        suit=SUITS[rng.integers(len(SUITS))],
        hair=HAIRS[rng.integers(len(HAIRS))],
        texture_seed=int(rng.integers(2**31)),
        pan_amp=float(rng.uniform(0.01, 0.04)),
        pan_cycles=float(rng.uniform(0.3, 1.0)),
        pan_phase=float(rng.uniform(0, 2 * math.pi)),
        jitter=rng.normal(0.0, 0.004, size=(frames, 2)) * camera_shake,
        ripples=np.column_stack(
            [
                rng.uniform(2.0, 5.0, 3),  # amplitude (grey levels): low contrast
                rng.uniform(-6.0, 6.0, 3),
                rng.uniform(10.0, 25.0, 3),
                rng.uniform(0.4, 1.2, 3),
                rng.uniform(0, 2 * math.pi, 3),
            ]
        ),
    )


# --- the scene --------------------------------------------------------------------------------

# The static scene is painted once per clip on a world canvas covering every camera position.
CANVAS_U = (-1.7, 2.1)
CANVAS_V = (-2.8, 1.0)
DECK_TOP = -0.07
PANEL_W, PANEL_H, PANEL_STEP, PANEL_BORDER = 0.1, 0.075, 0.2, 0.014
TOWER_U = (-0.64, -0.5)
PLATFORM_THICK = 0.035


def panel_boxes(spec: ClipSpec) -> list[tuple[float, float, float, float]]:
    """World boxes (u0, v0, u1, v1) of the scoreboard panels that carry the cue colour."""
    left = spec.width / (2 * spec.height) - 0.22
    boxes = []
    top = -0.2
    while top - PANEL_H > CANVAS_V[0] + 0.05:
        boxes.append((left, top - PANEL_H, left + PANEL_W, top))
        top -= PANEL_STEP
    return boxes


def _muted_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Crowd colours: low saturation, so no crowd pixel looks like a scoreboard colour."""
    hsv = np.column_stack(
        [rng.uniform(0, 1, n), rng.uniform(0.05, 0.3, n), rng.uniform(0.32, 0.62, n)]
    )
    return np.array([colorsys.hsv_to_rgb(*c) for c in hsv]) * 255


def _canvas_box(spec: ClipSpec, u0: float, v0: float, u1: float, v1: float) -> tuple[int, ...]:
    h = spec.height
    return (
        round((u0 - CANVAS_U[0]) * h),
        round((v0 - CANVAS_V[0]) * h),
        round((u1 - CANVAS_U[0]) * h),
        round((v1 - CANVAS_V[0]) * h),
    )


def _paint_spectator(canvas: np.ndarray, x: float, y: float, size: float, colour) -> None:
    """One seated spectator at (x, y) (its shoulders' centre), canvas pixels: a head above a
    shoulders blob, both ``size`` px-scaled ellipses."""
    colour = tuple(float(c) for c in colour)
    body = (round(x), round(y)), (max(1, round(0.45 * size)), max(1, round(0.35 * size)))
    head = (round(x), round(y - 0.5 * size)), (max(1, round(0.22 * size)),) * 2
    for centre, axes in (body, head):
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, colour, -1, lineType=cv2.LINE_AA)


def _paint_stand(spec: ClipSpec, rng: np.random.Generator, canvas: np.ndarray) -> None:
    """A crowd in tiers: spectators as slightly blurred coloured blobs a few pixels across.

    Mid-frequency structure (blobs ~6-9 px at 96 px) that optical flow locks on to and that
    survives MPEG-4 compression (per-pixel noise is neither); spacing, height and size are
    jittered so that the crowd is not periodic (a periodic texture makes the flow alias).
    """
    h = spec.height
    spacing, row_h = 0.075 * h, 0.1 * h
    palette = _muted_colours(rng, 64)
    canvas[:] = (70.0, 74.0, 88.0)  # empty seats
    y = row_h * rng.uniform(0.5, 1.0)
    row = 0
    while y < canvas.shape[0] + row_h:
        if row % 3 == 2:  # a walkway every third row: darker, large-scale structure
            band = slice(max(0, round(y - 0.3 * row_h)), max(0, round(y + 0.1 * row_h)))
            canvas[band] *= 0.6
        x = spacing * rng.uniform(0.0, 1.0)
        while x < canvas.shape[1] + spacing:
            if rng.random() < 0.8:  # most seats are taken
                size = row_h * rng.uniform(0.75, 1.05)
                yy = y + row_h * rng.uniform(-0.15, 0.15)
                _paint_spectator(canvas, x, yy, size, palette[rng.integers(len(palette))])
            x += spacing * rng.uniform(0.8, 1.35)
        y += row_h * rng.uniform(0.9, 1.15)
        row += 1
    canvas[:] = cv2.GaussianBlur(canvas, (0, 0), 0.6)
    if spec.background == "photo":
        realism.photo_stand(canvas, spec.texture_seed)
    if spec.background_contrast != 1.0:  # calmer (< 1) or busier (> 1) crowd, same layout
        mean = canvas.reshape(-1, 3).mean(0)
        canvas[:] = mean + spec.background_contrast * (canvas - mean)
    deck = _canvas_box(spec, CANVAS_U[0], DECK_TOP, CANVAS_U[1], 0.0)
    canvas[deck[1] : deck[3]] = (196.0, 200.0, 204.0)
    canvas[deck[1] : deck[3], :: max(2, round(0.05 * h))] = (150.0, 155.0, 160.0)


def _paint_structures(spec: ClipSpec, canvas: np.ndarray) -> None:
    h = spec.height
    boxes = panel_boxes(spec)
    for k, (u0, v0, u1, v1) in enumerate(boxes):
        b = PANEL_BORDER
        x0, y0, x1, y1 = _canvas_box(spec, u0 - b, v0 - b, u1 + b, v1 + b)
        canvas[y0:y1, x0:x1] = (25.0, 25.0, 30.0)
        x0, y0, x1, y1 = _canvas_box(spec, u0, v0, u1, v1)
        canvas[y0:y1, x0:x1] = realism.panel_fill(
            spec.cue_kind, spec.cue, k, len(boxes), spec.cue_rgb, y1 - y0, x1 - x0
        )
    x0, y0, x1, y1 = _canvas_box(spec, TOWER_U[0], -spec.board_height, TOWER_U[1], 0.0)
    canvas[y0:y1, x0:x1] = (150.0, 148.0, 142.0)
    canvas[y0 : y1 : max(2, round(0.1 * h)), x0:x1] = (118.0, 116.0, 112.0)
    x0, y0, x1, y1 = _canvas_box(
        spec, CANVAS_U[0], -spec.board_height, 0.0, -spec.board_height + PLATFORM_THICK
    )
    canvas[y0:y1, x0:x1] = (226.0, 226.0, 216.0)
    canvas[y1 - max(1, round(0.01 * h)) : y1, x0:x1] = (40.0, 90.0, 150.0)


@functools.lru_cache(maxsize=4)
def scene_canvas(spec: ClipSpec) -> np.ndarray:
    """The clip's static background (stand, deck, tower, platform, scoreboard) in world pixels."""
    h = spec.height
    shape = (round((CANVAS_V[1] - CANVAS_V[0]) * h), round((CANVAS_U[1] - CANVAS_U[0]) * h), 3)
    canvas = np.zeros(shape, np.float32)
    rng = np.random.default_rng(spec.texture_seed)
    _paint_stand(spec, rng, canvas)
    _paint_structures(spec, canvas)
    out = np.clip(canvas, 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def _water(spec: ClipSpec, t: int) -> np.ndarray:
    """The water rows of frame ``t``: blue, darker towards the camera, faint moving ripples."""
    cu, cv = camera_path(spec)[t]
    h, w = spec.height, spec.width
    u = cu + (np.arange(w) + 0.5 - w / 2) / h
    v = cv + (np.arange(h) + 0.5 - h / 2) / h
    v = v[water_rows(spec, t)]  # only the rows below the surface
    wave = np.zeros((len(v), w))
    for amp, fu, fv, speed, phase in spec.ripples:
        # sin(a + b) = sin a cos b + cos a sin b: two outer products instead of H*W sines
        a = 2 * math.pi * fu * u
        b = 2 * math.pi * fv * v + speed * t + phase
        wave += amp * (np.outer(np.cos(b), np.sin(a)) + np.outer(np.sin(b), np.cos(a)))
    base = np.array([40.0, 115.0, 160.0])
    depth = np.clip(v, 0, 1)[:, None, None]
    water = base * (1 - 0.25 * depth) + wave[..., None]
    water[v < 0.012] += 25.0  # the bright line where the surface meets the deck
    return water


# The broadcast score bug: a strip of panels fixed on the screen (fractions of width, height)
# that repeats the scoreboard's cue. The world scoreboard leaves the frame as the camera follows
# the diver, and a 56 px crop of a 96x72 frame cuts the frame's sides away, so a cue only in the
# world could be invisible to the model. The strip lies where every training crop (short side up
# to 62, random 56 px crop) and the centre eval crop see it (tests/test_synthdive.py).
SCORE_BUG = (0.35, 0.11, 0.65, 0.2)
SCORE_BUG_PANELS = 4


def score_bug_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1), end exclusive, of the score bug's panels."""
    x0, y0 = round(SCORE_BUG[0] * width), round(SCORE_BUG[1] * height)
    x1, y1 = round(SCORE_BUG[2] * width), round(SCORE_BUG[3] * height)
    edges = np.linspace(x0, x1, SCORE_BUG_PANELS + 1).round().astype(int)
    return [(int(a), y0, int(b), y1) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _paint_score_bug(spec: ClipSpec, frame: np.ndarray, mask: np.ndarray | None) -> None:
    """Draw the score bug over the frame (and diver); the true mask loses what it hides."""
    boxes = score_bug_boxes(spec.width, spec.height)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        fill = realism.panel_fill(
            spec.cue_kind, spec.cue, k, len(boxes), spec.cue_rgb, y1 - y0, x1 - x0 - 1
        )
        frame[y0:y1, x0:x1] = (25, 25, 30)  # a dark separator column on the right
        frame[y0:y1, x0 : x1 - 1] = np.clip(fill, 0, 255)
        if mask is not None:
            mask[y0:y1, x0:x1] = False


def render_background(spec: ClipSpec, t: int) -> np.ndarray:
    """(H, W, 3) uint8: the scene without the diver, seen by the camera at frame ``t``."""
    cu, cv = camera_path(spec)[t]
    h, w = spec.height, spec.width
    offset = ((cu - CANVAS_U[0]) * h - w / 2, (cv - CANVAS_V[0]) * h - h / 2)
    affine = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
    frame = cv2.warpAffine(
        scene_canvas(spec),
        affine,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    below = water_rows(spec, t)
    if below.any():
        frame[below] = np.clip(_water(spec, t), 0, 255).astype(np.uint8)
    _paint_score_bug(spec, frame, None)  # on the screen, not in the world
    return frame


def render_frame(spec: ClipSpec, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 frame ``t`` before compression and its (H, W) bool true diver mask."""
    frame = render_background(spec, t)
    layer, mask = render_diver(spec, t)
    frame = np.where(mask[..., None], layer, frame)
    mask = mask.copy()
    _paint_score_bug(spec, frame, mask)
    if spec.occluder:  # drawn over the diver; the true mask is what the camera sees
        u0, v0, u1, v1 = realism.occluder_box(spec.board_height)
        (x0, y0), (x1, y1) = world_to_pixel(spec, t, np.array([[u0, v0], [u1, v1]]))
        xs = slice(max(0, round(x0)), max(0, round(x1)))
        ys = slice(max(0, round(y0)), max(0, round(y1)))
        frame[ys, xs] = (92, 88, 84)
        mask[ys, xs] = False
    if spec.splash > 0:  # the entry spray, in front of the diver's legs
        _paint_splash(spec, t, frame, mask)
    return frame, mask


def _paint_splash(spec: ClipSpec, t: int, frame: np.ndarray, mask: np.ndarray) -> None:
    """White spray where the diver enters the water, from half a frame before entry on."""
    grow = min(1.0, (t - spec.entry_frame + 1.5) / 2.0)
    if grow <= 0:
        return
    entry_u = diver_state(spec, spec.entry_frame).hip[0]
    ((x, y),) = world_to_pixel(spec, t, np.array([[entry_u, 0.0]]))
    rng = np.random.default_rng([spec.texture_seed, t])
    foam = realism.splash_region(
        (spec.height, spec.width), (x, y), spec.splash * spec.body_len * spec.height * grow,
        0.3 * spec.body_len * spec.height * (0.6 + 0.4 * grow), rng,
    )  # fmt: skip
    frame[foam] = rng.uniform(215, 250, size=(int(foam.sum()), 1)).round()
    mask[foam] = False


def render_clip(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) uint8 and masks (T, H, W) bool of a clip."""
    frames, masks = zip(*(render_frame(spec, t) for t in range(spec.frames)), strict=True)
    if spec.motion_blur > 0:  # each frame smeared with the sharp previous one
        frames = [
            realism.blur_frame(f, frames[t - 1] if t else None, spec.motion_blur)
            for t, f in enumerate(frames)
        ]
    return np.stack(frames), np.stack(masks)
