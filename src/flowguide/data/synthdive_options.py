"""SynthDive's options: the ``synth`` config section (validated), the class compositions and
the cue palette. ``flowguide.data.synthdive`` generates the dataset from them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from flowguide.data.synthdive_realism import BACKGROUNDS, CUE_KINDS
from flowguide.utils.failures import FlowguideError

SPLITS = ("train", "test")

# Diving48's 48 compositions. The first four (the default set) share the takeoff (Forward), so
# they start alike; they differ in what the dive does in flight: somersaults (0.5 / 1 / 2.5 / 1.5),
# flight position (straight / pike / tuck / free) and twists (none / 2). A small 3D CNN at T=8 can
# tell them apart from the diver alone, which is what makes the cue a shortcut rather than the
# only signal. (An earlier default, Forward/Reverse x 1.5/2.5 PIKE, differed only in rotation
# direction and amount, which aliases at T=8: no model learned it.)
COMPOSITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("Forward", "Dive", "NoTwis", "STR"),
    ("Forward", "1som", "NoTwis", "PIKE"),
    ("Forward", "25som", "NoTwis", "TUCK"),
    ("Forward", "15som", "2Twis", "FREE"),
    ("Forward", "15som", "NoTwis", "PIKE"),
    ("Reverse", "15som", "NoTwis", "PIKE"),
    ("Forward", "25som", "NoTwis", "PIKE"),
    ("Reverse", "25som", "NoTwis", "PIKE"),
    ("Back", "15som", "05Twis", "FREE"),
    ("Back", "15som", "15Twis", "FREE"),
    ("Back", "15som", "25Twis", "FREE"),
    ("Back", "15som", "NoTwis", "PIKE"),
    ("Back", "15som", "NoTwis", "TUCK"),
    ("Back", "25som", "15Twis", "PIKE"),
    ("Back", "25som", "25Twis", "PIKE"),
    ("Back", "25som", "NoTwis", "PIKE"),
    ("Back", "25som", "NoTwis", "TUCK"),
    ("Back", "2som", "15Twis", "FREE"),
    ("Back", "2som", "25Twis", "FREE"),
    ("Back", "35som", "NoTwis", "PIKE"),
    ("Back", "35som", "NoTwis", "TUCK"),
    ("Back", "3som", "NoTwis", "PIKE"),
    ("Back", "3som", "NoTwis", "TUCK"),
    ("Back", "Dive", "NoTwis", "PIKE"),
    ("Back", "Dive", "NoTwis", "TUCK"),
    ("Forward", "15som", "1Twis", "FREE"),
    ("Forward", "25som", "1Twis", "PIKE"),
    ("Forward", "25som", "2Twis", "PIKE"),
    ("Forward", "25som", "3Twis", "PIKE"),
    ("Forward", "35som", "NoTwis", "PIKE"),
    ("Forward", "35som", "NoTwis", "TUCK"),
    ("Forward", "45som", "NoTwis", "TUCK"),
    ("Forward", "Dive", "NoTwis", "PIKE"),
    ("Inward", "15som", "NoTwis", "PIKE"),
    ("Inward", "15som", "NoTwis", "TUCK"),
    ("Inward", "25som", "NoTwis", "PIKE"),
    ("Inward", "25som", "NoTwis", "TUCK"),
    ("Inward", "35som", "NoTwis", "TUCK"),
    ("Inward", "Dive", "NoTwis", "PIKE"),
    ("Reverse", "15som", "05Twis", "FREE"),
    ("Reverse", "15som", "15Twis", "FREE"),
    ("Reverse", "15som", "25Twis", "FREE"),
    ("Reverse", "15som", "35Twis", "FREE"),
    ("Reverse", "25som", "15Twis", "PIKE"),
    ("Reverse", "25som", "NoTwis", "TUCK"),
    ("Reverse", "35som", "NoTwis", "TUCK"),
    ("Reverse", "Dive", "NoTwis", "PIKE"),
    ("Reverse", "Dive", "NoTwis", "TUCK"),
)

# Scoreboard colours, one per class: saturated, so they stand apart from the muted crowd.
_FIRST_CUES = (
    (230, 30, 30), (30, 200, 40), (40, 60, 235), (245, 220, 30),
    (225, 40, 205), (250, 130, 20), (245, 245, 245), (130, 60, 230),
)  # fmt: skip
NEUTRAL_CUE = (128, 128, 128)  # the panels' colour when the confounder is off


def _cue_palette(n: int = len(COMPOSITIONS)) -> tuple[tuple[int, int, int], ...]:
    import colorsys

    colours = list(_FIRST_CUES)
    k = 0
    while len(colours) < n:
        hue = (k * 0.381966 + 0.05) % 1.0
        sat, val = (1.0, 0.95) if k % 2 == 0 else (0.85, 0.7)
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)))
        k += 1
    return tuple(colours[:n])


CUE_PALETTE = _cue_palette()


@dataclass(frozen=True)
class ConfounderOptions:
    """The planted cue. ``train_p``: probability that a training clip's cue shows its label
    (the cue's strength); ``None`` makes the training cue independent of the label, as in test
    (the ``no_cue`` control's training set)."""

    enabled: bool = True
    train_p: float | None = 0.9
    kind: str = "colour"  # colour | texture | position (flowguide.data.synthdive_realism)


@dataclass(frozen=True)
class SynthOptions:
    """The config's ``synth`` section."""

    seed: int = 0
    num_classes: int = 4
    clips_per_class_train: int = 24
    clips_per_class_test: int = 8
    frames: int = 32
    width: int = 160
    height: int = 120
    fps: float = 25.0
    qscale: int = 6
    confounder: ConfounderOptions = ConfounderOptions()
    # Realism knobs (README "SynthDive realism knobs").
    diver_scale: float = 1.0  # diver height relative to the default 0.42-0.5 frame heights
    background_contrast: float = 1.0  # crowd contrast: < 1 calmer, > 1 busier
    background: str = "crowd"  # crowd | photo (scikit-image photographs)
    camera_shake: float = 1.0  # factor on the per-frame camera jitter
    motion_blur: float = 0.0  # 0..0.9: blend of each frame with the previous one
    occluder: bool = False  # a pillar in front of the platform end
    splash: float = 0.0  # 0..1: entry spray height in body lengths (0 = none)
    # Which splits to render; the other's JSON is written empty. The no_cue control's dataset
    # renders only train (it is tested on the main dataset's test split).
    splits: tuple[str, ...] = SPLITS

    def clips_per_class(self, split: str) -> int:
        return self.clips_per_class_train if split == "train" else self.clips_per_class_test


def _check_range(key: str, value: Any, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FlowguideError(f"synth option '{key}' must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise FlowguideError(f"synth option '{key}' = {value} is out of range ({bound})")


def synth_options(options: dict[str, Any] | None) -> SynthOptions:
    """The ``synth`` config section as options; missing keys take the schema's defaults."""
    options = dict(options or {})
    known = set(SynthOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise FlowguideError(f"unknown synth option(s) {unknown}; known: {sorted(known)}")
    conf = dict(options.pop("confounder", None) or {})
    unknown = sorted(set(conf) - set(ConfounderOptions.__dataclass_fields__))
    if unknown:
        raise FlowguideError(f"unknown synth.confounder option(s) {unknown}")
    confounder = ConfounderOptions(**conf)
    if confounder.train_p is not None:
        _check_range("confounder.train_p", confounder.train_p, 0.0, 1.0)
    splits = tuple(options.pop("splits", SPLITS))
    if not splits or set(splits) - set(SPLITS):
        raise FlowguideError(
            f"synth option 'splits' = {list(splits)}: a non-empty subset of {SPLITS}"
        )
    opts = SynthOptions(**options, confounder=confounder, splits=splits)
    ints = {
        "seed": (-(2**62), None), "num_classes": (2, len(COMPOSITIONS)),
        "clips_per_class_train": (1, None), "clips_per_class_test": (1, None),
        "frames": (4, None), "width": (32, None), "height": (32, None), "qscale": (2, 31),
    }  # fmt: skip
    for key, (low, high) in ints.items():
        value = getattr(opts, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise FlowguideError(f"synth option '{key}' must be an integer, got {value!r}")
        _check_range(key, value, low, high)
    _check_range("fps", opts.fps, 1e-3)
    _check_range("diver_scale", opts.diver_scale, 0.3, 2.0)
    _check_range("background_contrast", opts.background_contrast, 0.0, 3.0)
    _check_range("camera_shake", opts.camera_shake, 0.0, 20.0)
    _check_range("motion_blur", opts.motion_blur, 0.0, 0.9)
    _check_range("splash", opts.splash, 0.0, 1.0)
    if opts.background not in BACKGROUNDS:
        raise FlowguideError(
            f"synth option 'background' = {opts.background!r}; one of {BACKGROUNDS}"
        )
    if opts.confounder.kind not in CUE_KINDS:
        raise FlowguideError(
            f"synth option 'confounder.kind' = {opts.confounder.kind!r}; one of {CUE_KINDS}"
        )
    opts = replace(
        opts,
        fps=float(opts.fps),
        diver_scale=float(opts.diver_scale),
        background_contrast=float(opts.background_contrast),
        camera_shake=float(opts.camera_shake),
        motion_blur=float(opts.motion_blur),
        splash=float(opts.splash),
    )  # 25 and 25.0 must give the same files
    for key in ("width", "height"):
        if getattr(opts, key) % 2:  # the encoder's 4:2:0 chroma needs even sizes
            raise FlowguideError(f"synth option '{key}' = {getattr(opts, key)} must be even")
    return opts
