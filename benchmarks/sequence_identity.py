"""Does FlowSAM's sequence-level step keep the diver's label? Measured on SynthDive's true masks.

    python benchmarks/sequence_identity.py [--clips 2] [--gaps 1,-1,2,-2]

SynthDive (the demo's size) -> DIS flow at ``--gaps`` -> motion candidates (weight-free; the
step works on any backend's label maps), once with ``segment.sequence_matching`` off and once
on. Per frame, the diver's label is the label whose mask has the highest IoU with the true mask
(none when every IoU is below 0.1). Reports:

- id switches per 100 frame pairs: consecutive frames whose diver label differs;
- sequence IoU: one label per video (the best over the whole clip), mean IoU over its frames
  (the authors' sequence-level Hungarian score for one object);
- oracle IoU: the best label of every frame separately (what the step cannot exceed).

Ends with ``ratio <what> <value>`` lines.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np

MIN_IOU = 0.1


def ious(labels: np.ndarray, truth: np.ndarray, slots: int) -> np.ndarray:
    """(T, slots) IoU of label k+1 with the true mask, per frame."""
    out = np.zeros((len(labels), slots))
    for k in range(slots):
        m = labels == k + 1
        inter = (m & truth).sum((1, 2))
        union = (m | truth).sum((1, 2))
        out[:, k] = np.where(union > 0, inter / np.maximum(union, 1), 0)
    return out


def identity_metrics(table: list[np.ndarray]) -> dict[str, float]:
    switches = pairs = 0
    seq, oracle = [], []
    for iou in table:
        best = np.where(iou.max(1) >= MIN_IOU, iou.argmax(1), -1)
        both = (best[1:] >= 0) & (best[:-1] >= 0)
        pairs += int(both.sum())
        switches += int((both & (best[1:] != best[:-1])).sum())
        seq.append(iou.mean(0).max())
        oracle.append(iou.max(1).mean())
    return {
        "switches_per_100": 100 * switches / max(pairs, 1),
        "sequence_iou": float(np.mean(seq)),
        "oracle_iou": float(np.mean(oracle)),
        "pairs": pairs,
    }


def main() -> None:
    from flowguide.config import validate_config
    from flowguide.data.manifest import run_manifest
    from flowguide.data.synthdive import generate_dataset, synth_options
    from flowguide.flow.stage import run_flow
    from flowguide.segment.stage import run_segment
    from flowguide.utils.masks import read_video_masks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2, help="train clips per class (4 classes)")
    parser.add_argument("--gaps", default="1,-1,2,-2")
    args = parser.parse_args()
    gaps = [int(g) for g in args.gaps.split(",")]

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        root = tmp / "synthdive"
        synth = {"num_classes": 4, "frames": 24, "width": 128, "height": 96, "qscale": 6,
                 "clips_per_class_train": args.clips, "clips_per_class_test": 1}  # fmt: skip
        generate_dataset(root, synth_options(synth))
        dataset = validate_config({"dataset": {"kind": "synthdive", "shard_size": 64}})["dataset"]
        manifest = run_manifest(dataset, root, tmp / "manifest.csv", tmp / "shards", tmp / "fm.csv")
        flow_opts = {"backend": "dis", "dis_preset": "medium", "gaps": gaps, "short_side": 96}
        results = {}
        for sequence in (False, True):
            seg_opts = {"backend": "motion", "max_objects": 10, "sequence_matching": sequence}
            table = []
            for shard in sorted(manifest["shard"].unique()):
                csv = tmp / "shards" / f"{shard}.csv"
                flow = tmp / f"{shard}.flow.h5"
                if not flow.exists():
                    run_flow(csv, flow, tmp / "ff.csv", flow_opts, "cpu")
                cand = tmp / f"{shard}.{sequence}.h5"
                run_segment(csv, flow, cand, tmp / "fs.csv", seg_opts, "cpu")
                with h5py.File(cand) as fh:
                    for vid in fh:
                        labels = fh[vid]["labels"][()]
                        truth = read_video_masks(root / "true_masks.h5", vid)
                        truth = resize_masks(truth, labels.shape[1:])
                        table.append(ious(labels, truth, 10))
            results[sequence] = identity_metrics(table)
    for sequence, m in results.items():
        print(
            f"sequence_matching {str(sequence).lower():5}: {m['switches_per_100']:.1f} id "
            f"switches per 100 frame pairs ({m['pairs']} pairs), sequence IoU "
            f"{m['sequence_iou']:.3f}, oracle per-frame IoU {m['oracle_iou']:.3f}"
        )
    off, on = results[False], results[True]
    print(f"ratio id_switches_per_100_off {off['switches_per_100']:.2f}")
    print(f"ratio id_switches_per_100_on {on['switches_per_100']:.2f}")
    print(f"ratio sequence_iou_on_vs_off {on['sequence_iou'] / off['sequence_iou']:.3f}")


def resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if masks.shape[1:] == tuple(shape):
        return masks
    h, w = shape
    return np.stack(
        [cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 for m in masks]
    )


if __name__ == "__main__":
    main()
