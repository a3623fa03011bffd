"""SynthDive: a procedural diving dataset in Diving48's layout, with the true athlete masks.

``generate_dataset(out_dir, synth_options(config["synth"]))`` writes

- ``rgb/<vid_name>.mp4``: lossy mp4v clips of an articulated diver followed by a panning camera;
- ``Diving48_V2_train.json`` / ``Diving48_V2_test.json``: records like Diving48's V2 JSONs;
- ``Diving48_vocab.json``: [takeoff, somersaults, twists, flight position] per class;
- ``true_masks.h5``: the diver's exact mask in every frame (``/videos/<vid_name>/mask``);
- ``clips.csv``: per clip the class words, the planted confounder's class and whether it agrees.

Clip ``i`` of a split is generated from an RNG seeded by (seed, split, i) only and has label
``i % num_classes``, so more clips per class append clips without changing existing ones.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from flowguide.data.synthdive_realism import BACKGROUNDS, CUE_KINDS
from flowguide.data.synthdive_render import ClipSpec, Dive, render_clip, sample_spec
from flowguide.utils.atomic import atomic_write_text
from flowguide.utils.failures import FlowguideError
from flowguide.utils.h5 import create_video_group, set_attrs, write_masks, write_shard
from flowguide.utils.video import write_video

SPLITS = ("train", "test")
SPLIT_IDS = {"train": 0, "test": 1}
MASKS_FILE = "true_masks.h5"
CLIPS_FILE = "clips.csv"
TRAIN_JSON, TEST_JSON, VOCAB_JSON = (
    "Diving48_V2_train.json", "Diving48_V2_test.json", "Diving48_vocab.json",
)  # fmt: skip
VIDEOS_DIR = "rgb"
RENDER_STREAM, CUE_STREAM = 0, 1  # independent RNG streams: the cue never changes the render

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
    )  # 25 and 25.0 must give the same files
    for key in ("width", "height"):
        if getattr(opts, key) % 2:  # the encoder's 4:2:0 chroma needs even sizes
            raise FlowguideError(f"synth option '{key}' = {getattr(opts, key)} must be even")
    return opts


# --- per-clip assignment ------------------------------------------------------------------------


def class_compositions(num_classes: int) -> list[list[str]]:
    """The vocabulary: the first ``num_classes`` compositions of the fixed list."""
    return [list(c) for c in COMPOSITIONS[:num_classes]]


def vid_name(seed: int, split: str, index: int) -> str:
    return f"sd{seed}_{split}_{index:05d}"


def clip_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The RNG of one clip: a function of (seed, split, index) only, never of the options."""
    entropy = [seed % 2**64, SPLIT_IDS[split], index, stream]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def clip_label(opts: SynthOptions, index: int) -> int:
    return index % opts.num_classes


def independent_cue(opts: SynthOptions, index: int) -> int:
    """A cue independent of the label by design, not by chance: the ``j``-th clip of a class
    (``j = index // num_classes``) shows class ``(label + j) % num_classes``. Every (label, cue)
    cell holds the same number of clips (when clips per class is a multiple of num_classes), so
    each class has ``1/num_classes`` of its clips with an agreeing cue and the rest disagreeing,
    spread evenly over the other classes."""
    k = opts.num_classes
    return (clip_label(opts, index) + index // k) % k


def cue_class(opts: SynthOptions, split: str, index: int) -> int:
    """The class the scoreboard shows (-1 when the confounder is off).

    Train: the clip's label with probability ``train_p``, else a uniformly random other class;
    with ``train_p: null`` the balanced independent design of test (the no_cue control).
    Test: the balanced independent design (``independent_cue``), so the cue carries no
    information and every (label, cue) cell can be measured.
    """
    if not opts.confounder.enabled:
        return -1
    if split == "test" or opts.confounder.train_p is None:
        return independent_cue(opts, index)
    label = clip_label(opts, index)
    rng = clip_rng(opts.seed, split, index, CUE_STREAM)
    agree_draw, other_draw = rng.random(), rng.integers(opts.num_classes - 1)
    if agree_draw < opts.confounder.train_p:
        return label
    return int(other_draw if other_draw < label else other_draw + 1)


def cue_colour(cue: int) -> tuple[int, int, int]:
    return NEUTRAL_CUE if cue < 0 else CUE_PALETTE[cue]


def clip_spec(opts: SynthOptions, split: str, index: int) -> ClipSpec:
    """The render parameters of clip ``index`` of ``split``."""
    label = clip_label(opts, index)
    dive = Dive.from_vocab(COMPOSITIONS[label])
    rng = clip_rng(opts.seed, split, index, RENDER_STREAM)
    cue = cue_class(opts, split, index)
    return sample_spec(
        rng, dive, cue_colour(cue), opts.frames, opts.width, opts.height, opts.diver_scale,
        opts.background_contrast, opts.camera_shake, cue=cue, cue_kind=opts.confounder.kind,
        background=opts.background, motion_blur=float(opts.motion_blur),
        occluder=bool(opts.occluder),
    )  # fmt: skip


# --- writing the dataset ------------------------------------------------------------------------


CLIP_COLUMNS = [
    "vid_name", "split", "index", "label", "takeoff", "somersaults", "twists", "position",
    "cue_class", "cue_agrees", "takeoff_frame", "entry_frame", "diver_height_px", "frames",
    "width", "height", "fps", "seed",
]  # fmt: skip


def _clip_row(opts: SynthOptions, split: str, index: int, spec: ClipSpec) -> dict[str, Any]:
    label = clip_label(opts, index)
    cue = cue_class(opts, split, index)
    takeoff, som, twists, position = COMPOSITIONS[label]
    return {
        "vid_name": vid_name(opts.seed, split, index),
        "split": split,
        "index": index,
        "label": label,
        "takeoff": takeoff,
        "somersaults": som,
        "twists": twists,
        "position": position,
        "cue_class": cue,
        "cue_agrees": cue == label,
        "takeoff_frame": round(spec.takeoff_frame, 3),
        "entry_frame": round(spec.entry_frame, 3),
        "diver_height_px": round(spec.body_len * opts.height, 2),
        "frames": opts.frames,
        "width": opts.width,
        "height": opts.height,
        "fps": opts.fps,
        "seed": opts.seed,
    }


def _mask_file_attrs(opts: SynthOptions) -> dict[str, Any]:
    return {
        "what": "SynthDive true athlete masks: group /videos/<vid_name>, dataset 'mask' (T, H, W)",
        "generator": "flowguide.data.synthdive",
        "dataset_seed": opts.seed,
        "num_classes": opts.num_classes,
        "frames": opts.frames,
        "width": opts.width,
        "height": opts.height,
        "options": json.dumps(asdict(opts)),
    }


def _records_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CLIP_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def generate_dataset(out_dir: str | os.PathLike, opts: SynthOptions) -> dict[str, Any]:
    """Render every clip and write the dataset folder; returns a short summary.

    Videos are written one by one (each atomically); the mask file, the clip table and the JSONs
    appear only when every clip is done, so a killed run leaves no target looking complete.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    (out / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    jobs = [(s, i) for s in opts.splits for i in range(opts.clips_per_class(s) * opts.num_classes)]
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    rows: list[dict[str, Any]] = []
    mask_pixels = 0
    with write_shard(out / MASKS_FILE, _mask_file_attrs(opts)) as fh:
        for split, index in tqdm(jobs, desc="synthdive", unit="clip"):
            name = vid_name(opts.seed, split, index)
            spec = clip_spec(opts, split, index)
            frames, masks = render_clip(spec)
            write_video(out / VIDEOS_DIR / f"{name}.mp4", frames, opts.fps, opts.qscale)
            group = create_video_group(fh, name)
            set_attrs(group, {"split": split, "label": clip_label(opts, index)})
            write_masks(
                group,
                "mask",
                masks,
                {"what": "true diver mask, rendered (not estimated)", "source": "synthdive"},
            )
            mask_pixels += int(masks.sum())
            records[split].append(
                {
                    "vid_name": name,
                    "label": clip_label(opts, index),
                    "start_frame": 0,
                    "end_frame": opts.frames - 1,
                }
            )
            rows.append(_clip_row(opts, split, index, spec))
    atomic_write_text(out / CLIPS_FILE, _csv_text(rows))
    atomic_write_text(out / VOCAB_JSON, json.dumps(class_compositions(opts.num_classes)))
    atomic_write_text(out / TRAIN_JSON, _records_json(records["train"]))
    atomic_write_text(out / TEST_JSON, _records_json(records["test"]))
    total_px = len(jobs) * opts.frames * opts.width * opts.height
    return {
        "out": str(out),
        "train": len(records["train"]),
        "test": len(records["test"]),
        "num_classes": opts.num_classes,
        "frames": opts.frames,
        "size": f"{opts.width}x{opts.height}",
        "mask_fraction": round(mask_pixels / max(total_px, 1), 4),
        "seconds": round(time.perf_counter() - started, 2),
    }
