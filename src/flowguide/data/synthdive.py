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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from flowguide.data.synthdive_options import (
    COMPOSITIONS,
    CUE_PALETTE,
    NEUTRAL_CUE,
    SPLITS,
    SynthOptions,
)
from flowguide.data.synthdive_options import (  # re-exported: callers import it with the generator
    synth_options as synth_options,
)
from flowguide.data.synthdive_render import ClipSpec, Dive, render_clip, sample_spec
from flowguide.utils.atomic import atomic_write_text
from flowguide.utils.h5 import create_video_group, set_attrs, write_masks, write_shard
from flowguide.utils.video import write_video

SPLIT_IDS = {"train": 0, "test": 1}
MASKS_FILE = "true_masks.h5"
CLIPS_FILE = "clips.csv"
TRAIN_JSON, TEST_JSON, VOCAB_JSON = (
    "Diving48_V2_train.json", "Diving48_V2_test.json", "Diving48_vocab.json",
)  # fmt: skip
VIDEOS_DIR = "rgb"
RENDER_STREAM, CUE_STREAM = 0, 1  # independent RNG streams: the cue never changes the render

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
        occluder=bool(opts.occluder), splash=float(opts.splash),
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
