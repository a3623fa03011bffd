"""Where SynthDive's mask quality is lost: in the candidates (segment) or in the choice (select).

    python benchmarks/mask_rules.py --clips-per-class 4 --out /tmp/mr      # builds the work folder
    python benchmarks/mask_oracle.py --work /tmp/mr [--config config.yaml] [--clips-per-class 4]
        [--camera-shake 1.0] [--override '{...}']                        # the same arguments

Reads the work folder of ``benchmarks/mask_rules.py`` (flow, candidates, the thesis rule's masks,
SynthDive's true masks); the generator arguments must be the ones that built it (the clips'
true camera path is re-derived from them). Per frame:

- ``chosen``: IoU of the thesis rule's mask with the truth;
- ``oracle_top``: the best IoU any one of the first ``select.num_layers`` candidates reaches
  (a perfect choice within the thesis rule's layers); ``oracle_all``: the same over all
  candidates;
- camera error: the motion backend's fitted camera flow at the frame centre (after its
  photometric check, as ``segment`` computes it) minus the true camera motion of the static
  scene between frames t and t+1, in px per frame; and the true camera speed.

Prints the means and ``ratio`` lines; frames are split by the true camera speed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from mask_rules import add_generator_arguments, generator_config  # benchmarks/, the sibling

from flowguide.data.synthdive import clip_spec, synth_options
from flowguide.data.synthdive_diver import camera_path
from flowguide.segment.camera import camera_flow
from flowguide.segment.motion import MotionParams, camera_models
from flowguide.segment.stage import read_rgb
from flowguide.select.quality import frame_ious, resize_masks
from flowguide.utils.flowio import read_flow
from flowguide.utils.h5 import read_shard, video_group
from flowguide.utils.masks import read_video_masks


def fitted_camera(flow: np.ndarray, used_gap: np.ndarray, rgb: np.ndarray, params: MotionParams):
    """(T-1, 2) camera flow at the frame centre, frame t -> t+1 (gap 1 only), as segment fits
    it (RANSAC on the flow, then the photometric check)."""
    n_frames = len(rgb)
    matrices, gaps = camera_models(flow, used_gap, n_frames, params, rgb)
    height, width = rgb.shape[1:3]
    out = np.full((n_frames - 1, 2), np.nan)
    for t in range(n_frames - 1):
        for j, gap in enumerate(gaps[t]):
            if t + int(gap) == t + 1:
                out[t] = camera_flow(matrices[t][j], height, width)[:, height // 2, width // 2]
    return out


def video_rows(work: Path, shard: str, vid: str, spec, config: dict) -> list[dict]:
    truth_path = work / "synthdive" / "true_masks.h5"
    with read_shard(work / f"{shard}.cand.h5") as fh:
        group = video_group(fh, vid, work / f"{shard}.cand.h5")
        labels = group["labels"][()]
        start = int(group.attrs.get("start_frame", 0))
        video_path = str(group.attrs["video_path"])
        root = group.attrs.get("dataset_root")
    if root is not None and not Path(video_path).is_absolute():
        video_path = str(Path(str(root)) / video_path)
    n_frames, height, width = labels.shape
    truth = resize_masks(
        read_video_masks(truth_path, vid, np.arange(start, start + n_frames)), (height, width)
    )
    chosen = read_video_masks(work / f"{shard}.thesis.h5", vid)
    num_layers = int(config["select"].get("num_layers", 3))
    n_labels = max(int(labels.max()), 1)
    # (K, T): IoU of each label with the truth; a label absent from a frame scores 0 there
    # (1 when the truth is empty too and no label is present: an empty choice is right then).
    present = np.stack([(labels == k).reshape(n_frames, -1).any(1) for k in range(1, n_labels + 1)])
    ious = np.where(
        present, np.stack([frame_ious(labels == k, truth) for k in range(1, n_labels + 1)]), 0.0
    )
    empty_truth = ~truth.reshape(n_frames, -1).any(1)
    top = np.where(empty_truth & ~present[:num_layers].any(0), 1.0, ious[:num_layers].max(0))
    every = np.where(empty_truth & ~present.any(0), 1.0, ious.max(0))

    flow, used_gap = read_flow(work / f"{shard}.flow.h5", vid)
    rgb = read_rgb(video_path, start, n_frames, (height, width))
    params = MotionParams.from_options(config["segment"])
    fitted = fitted_camera(flow, used_gap, rgb, params)
    # A static world point moves by -(camera step) * frame height pixels (world_to_pixel).
    cam = camera_path(spec)[start : start + n_frames]
    true = -(cam[1:] - cam[:-1]) * spec.height * (height / spec.height)
    chosen_iou = frame_ious(chosen, truth)
    rows = []
    for t in range(n_frames):
        err = speed = np.nan
        if t < n_frames - 1:
            err = float(np.hypot(*(fitted[t] - true[t])))
            speed = float(np.hypot(*true[t]))
        rows.append(
            {
                "vid_name": vid, "t": t, "chosen": float(chosen_iou[t]),
                "oracle_top": float(top[t]), "oracle_all": float(every[t]),
                "camera_error": err, "camera_speed": speed,
            }
        )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="benchmarks/mask_rules.py's --out folder")
    add_generator_arguments(parser)
    parser.add_argument("--csv", default=None, help="write the per-frame table here")
    args = parser.parse_args()
    config, synth = generator_config(args)
    opts = synth_options(synth)
    work = Path(args.work)
    manifest = pd.read_csv(work / "manifest.csv")
    clips = pd.read_csv(work / "synthdive" / "clips.csv").set_index("vid_name")
    rows = []
    for row in manifest.itertuples():
        clip = clips.loc[row.vid_name]
        spec = clip_spec(opts, str(clip["split"]), int(clip["index"]))
        rows += video_rows(work, row.shard, row.vid_name, spec, config)
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"{len(manifest)} clips, {len(table)} frames, work folder {work}")
    for name in ("chosen", "oracle_top", "oracle_all"):
        print(f"ratio mean_iou_{name} {table[name].mean():.3f}")
    moving = table["camera_speed"] >= 2.0
    print(f"ratio camera_error_px {table['camera_error'].mean():.2f}")
    print(f"ratio camera_speed_px {table['camera_speed'].mean():.2f}")
    for label, part in (("camera>=2px", table[moving]), ("camera<2px", table[~moving])):
        print(
            f"{label:12} frames {len(part):4d}  chosen {part['chosen'].mean():.3f}  "
            f"oracle_top {part['oracle_top'].mean():.3f}  "
            f"oracle_all {part['oracle_all'].mean():.3f}  "
            f"camera error {part['camera_error'].mean():.2f} px"
        )


if __name__ == "__main__":
    main()
