"""Segment backends side by side: frames per second, and SAM decoder calls per frame.

    python benchmarks/segment.py                      # motion + tiny SAM on CPU (small)
    python benchmarks/segment.py --device cuda --sam-model vit_b --size 1024

The SAM backend runs with random weights (speed does not depend on them): a tiny SAM built from
segment-anything's modules by default, or the real ``--sam-model`` architecture at 1024 input.
Median over repetitions; ends with ``ratio <what> <value>`` lines.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch

from flowguide.segment.motion import MotionParams, segment_frame_motion
from flowguide.segment.sam import (
    SamParams,
    SamSegmenter,
    build_tiny_sam,
    expected_decoder_calls,
)
from flowguide.utils.flowviz import flow_to_color


def tiny_sam(img_size: int) -> torch.nn.Module:
    return build_tiny_sam(img_size)


def synthetic_flows(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(n, 1, 2, H, W): a camera pan plus a moving blob (what the backends see)."""
    rng = np.random.default_rng(seed)
    flows = np.zeros((n, 1, 2, height, width), np.float32)
    for t in range(n):
        flows[t, 0, 0] = 3.0 + 0.1 * rng.standard_normal((height, width))
        flows[t, 0, 1] = 1.0 + 0.1 * rng.standard_normal((height, width))
        blob = np.zeros((height, width), np.uint8)
        cv2.ellipse(blob, (width // 2, height // 3), (width // 12, height // 6), 0, 0, 360, 1, -1)
        flows[t, 0, :, blob.astype(bool)] += np.array([-4.0, 3.0], np.float32)
    return flows


def timed(fn, reps: int, sync) -> float:
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sam-model", default=None, help="vit_b | vit_l | vit_h (random weights)")
    parser.add_argument("--size", type=int, default=None, help="SAM input size (default 64 tiny)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--gridside", type=int, default=20)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    flows = synthetic_flows(args.frames, args.height, args.width)
    gaps = np.ones(1, np.int64)

    params = MotionParams()
    motion_s = timed(
        lambda: [segment_frame_motion(f, gaps, params) for f in flows], args.reps, sync
    )
    motion_fps = args.frames / motion_s

    if args.sam_model:
        from segment_anything import sam_model_registry

        sam = sam_model_registry[args.sam_model](checkpoint=None)
        label = f"{args.sam_model} random weights, input {sam.image_encoder.img_size}"
    else:
        sam = tiny_sam(args.size or 64)
        label = f"tiny SAM, input {sam.image_encoder.img_size}"
    sam_params = SamParams(gridside=args.gridside, points_per_batch=args.points_per_batch)
    segmenter = SamSegmenter(sam, sam_params, device)
    images = [[flow_to_color(f) for f in frame] for frame in flows]

    def run_sam():
        with torch.inference_mode():
            for imgs in images:
                segmenter.segment_frame(imgs)

    run_sam()  # warm-up (allocations, cudnn autotune)
    calls_before, points_before = segmenter.decoder_calls, segmenter.points_decoded
    sam_s = timed(run_sam, args.reps, sync)
    n_runs = args.reps * args.frames
    calls = (segmenter.decoder_calls - calls_before) / n_runs
    points = (segmenter.points_decoded - points_before) / n_runs
    sam_fps = args.frames / sam_s

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; frames {args.frames} of {args.height}x{args.width}; reps {args.reps}")
    print(f"motion: {motion_fps:.2f} frames/s ({motion_s / args.frames * 1000:.1f} ms/frame)")
    print(
        f"sam ({label}): {sam_fps:.3f} frames/s ({sam_s / args.frames * 1000:.1f} ms/frame), "
        f"{calls:.1f} decoder calls/frame ({points:.0f} prompts; expected "
        f"{expected_decoder_calls(args.gridside, args.points_per_batch)} calls)"
    )
    print(f"ratio motion_vs_sam_fps {motion_fps / sam_fps:.3f}")
    print(f"ratio sam_decoder_calls_per_frame {calls:.3f}")


if __name__ == "__main__":
    main()
