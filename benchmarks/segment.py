"""Segment backends side by side: frames per second, and decoder calls per frame per SAM mode.

    python benchmarks/segment.py                      # motion + tiny FlowI/FlowP-SAM on CPU
    python benchmarks/segment.py --device cuda --real --gaps 4

The SAM modes run with random weights (speed does not depend on them): tiny models built from
segment-anything's modules by default; with ``--real`` the released sizes at SAM's 1024 input:
FlowI-SAM = ViT-B on flow + SAM's decoder, FlowP-SAM = ViT-H on RGB + ViT-B on flow + the FlowP
decoder. Every frame encodes ``--gaps`` flow images (and the RGB frame for FlowP). Median over
repetitions; ends with ``ratio <what> <value>`` lines (FlowP against FlowI per frame).
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch

from flowguide.segment.motion import MotionParams, segment_frame_motion
from flowguide.segment.sam import SamParams, SamSegmenter, expected_decoder_calls
from flowguide.segment.tiny import build_tiny_flowp, build_tiny_sam
from flowguide.utils.flowviz import flow_to_color


def real_models() -> dict[str, torch.nn.Module]:
    from segment_anything import sam_model_registry

    from flowguide.segment.flowp import FlowPSam, build_flowp_decoder

    flow_sam = sam_model_registry["vit_b"](checkpoint=None)
    rgb_sam = sam_model_registry["vit_h"](checkpoint=None)
    flowp = FlowPSam(
        rgb_sam.image_encoder, flow_sam.image_encoder, rgb_sam.prompt_encoder,
        build_flowp_decoder(),
    )  # fmt: skip
    return {"flowi": flow_sam, "flowp": flowp}


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
    parser.add_argument("--real", action="store_true", help="released model sizes (GPU)")
    parser.add_argument("--size", type=int, default=None, help="tiny models' input (default 64)")
    parser.add_argument("--gaps", type=int, default=1, help="flow images encoded per frame")
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

    if args.real:
        models, label = real_models(), "released sizes (FlowI ViT-B; FlowP ViT-H + ViT-B), 1024"
    else:
        size = args.size or 64
        models = {"flowi": build_tiny_sam(size), "flowp": build_tiny_flowp(size)}
        label = f"tiny, input {size}"
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    images = [[flow_to_color(frame[0])] * args.gaps for frame in flows]
    results = {}
    for mode, model in models.items():
        params = SamParams(
            mode=mode, gridside=args.gridside, points_per_batch=args.points_per_batch
        )
        segmenter = SamSegmenter(model, params, device)

        def run_sam(segmenter=segmenter):
            with torch.inference_mode():
                for imgs, frame in zip(images, rgb, strict=True):
                    segmenter.segment_frame(imgs, frame)

        run_sam()  # warm-up (allocations, cudnn autotune)
        calls_before, points_before = segmenter.decoder_calls, segmenter.points_decoded
        seconds = timed(run_sam, args.reps, sync)
        n_runs = args.reps * args.frames
        results[mode] = (
            seconds / args.frames,
            (segmenter.decoder_calls - calls_before) / n_runs,
            (segmenter.points_decoded - points_before) / n_runs,
        )
        model.cpu()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}; frames {args.frames} of {args.height}x{args.width}; "
        f"{args.gaps} flow gap(s) per frame; reps {args.reps}; SAM models {label}"
    )
    print(f"motion: {motion_fps:.2f} frames/s ({motion_s / args.frames * 1000:.1f} ms/frame)")
    expected = expected_decoder_calls(args.gridside, args.points_per_batch)
    for mode, (per_frame, calls, points) in results.items():
        print(
            f"{mode}: {1 / per_frame:.3f} frames/s ({per_frame * 1000:.1f} ms/frame), "
            f"{calls:.1f} decoder calls/frame ({points:.0f} prompts; expected {expected} calls)"
        )
    flowi, flowp = results["flowi"], results["flowp"]
    print(f"ratio motion_vs_flowi_fps {flowi[0] / (motion_s / args.frames):.3f}")
    print(f"ratio flowp_vs_flowi_time_per_frame {flowp[0] / flowi[0]:.3f}")
    print(f"ratio flowi_decoder_calls_per_frame {flowi[1]:.3f}")
    print(f"ratio flowp_decoder_calls_per_frame {flowp[1]:.3f}")


if __name__ == "__main__":
    main()
