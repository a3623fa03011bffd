"""Seconds per frame of each flow backend (DIS, Farneback, RAFT small/large), side by side.

    python benchmarks/flow.py                       # CPU, short side 128, 6 frames, 3 repeats
    python benchmarks/flow.py --device cuda --size 256 --frames 32 --repeats 5 --flow-updates 20

RAFT runs with random weights (the same arithmetic as trained ones) through the stage's own
backend (torchvision preprocessing, padding, batching). One "frame" = one frame pair (gap 1).
RAFT's all-pairs correlation grows with (H*W)^2: on a CPU, 256 px costs ~40x the time per frame
of 128 px, hence the small default. Ends with one ``ratio <what> <value>`` line per comparison
(seconds per frame, relative to DIS).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np
import torch

from flowguide.flow.backends import OpenCVBackend, RaftBackend, raft_builder
from flowguide.utils.device import resolve_device
from flowguide.utils.video import scaled_size

BACKENDS = ["dis", "farneback", "raft_small", "raft_large"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (RAFT only)")
    p.add_argument("--size", type=int, default=128, help="short side (flow.short_side), 4:3")
    p.add_argument("--frames", type=int, default=6, help="frames per clip (frames - 1 pairs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--flow-updates", type=int, default=4, help="RAFT num_flow_updates")
    p.add_argument("--batch-size", type=int, default=8, help="RAFT frame pairs per batch")
    p.add_argument("--amp", action="store_true", help="RAFT mixed precision (CUDA)")
    p.add_argument("--dis-preset", default="medium", choices=["ultrafast", "fast", "medium"])
    p.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    return p.parse_args()


def panning_clip(n_frames: int, height: int, width: int, step: int = 2) -> np.ndarray:
    """A smooth random texture panning ``step`` px per frame (RGB uint8)."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((height, width + step * n_frames)).astype(np.float32)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)
    frames = [big[:, step * t : step * t + width] for t in range(n_frames)]
    return np.repeat(np.stack(frames)[..., None], 3, axis=-1)


def make_backend(name: str, args: argparse.Namespace, device: str):
    if name in ("dis", "farneback"):
        return OpenCVBackend(name, args.dis_preset)
    torch.manual_seed(0)
    model = raft_builder(name)(weights=None, progress=False)
    return RaftBackend(
        name, model, "random", None, device, args.flow_updates, args.batch_size, args.amp
    )


def seconds_per_frame(backend, frames: np.ndarray, repeats: int) -> list[float]:
    pairs = np.stack([np.arange(len(frames) - 1), np.arange(1, len(frames))], axis=1)
    backend.compute_pairs(frames, pairs[:1])  # warm-up (allocations, cuDNN autotune)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.compute_pairs(frames, pairs)  # returns host arrays: includes the device sync
        times.append((time.perf_counter() - start) / len(pairs))
    return times


def describe_device(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return (
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}, opencv threads {cv2.getNumThreads()})"
    )


def main() -> None:
    args = parse_args()
    device = str(resolve_device(args.device))
    height, width = scaled_size(3 * args.size, 4 * args.size, args.size)
    frames = panning_clip(args.frames, height, width)
    print(f"device: {describe_device(device)} (OpenCV backends always run on the CPU)")
    print(
        f"frames: {args.frames} of {height}x{width}, repeats {args.repeats}, "
        f"RAFT num_flow_updates {args.flow_updates}, batch {args.batch_size}, amp {args.amp}"
    )
    medians: dict[str, float] = {}
    for name in args.backends:
        times = seconds_per_frame(make_backend(name, args, device), frames, args.repeats)
        medians[name] = statistics.median(times)
        print(
            f"{name:11s} median {medians[name] * 1000:9.2f} ms/frame  "
            f"{1 / medians[name]:8.2f} frames/s  (runs: "
            + ", ".join(f"{t * 1000:.2f}" for t in times)
            + " ms)"
        )
    if "dis" in medians:
        for name in medians:
            if name != "dis":
                print(f"ratio {name}_vs_dis_seconds_per_frame {medians[name] / medians['dis']:.3g}")
    if "raft_small" in medians and "raft_large" in medians:
        ratio = medians["raft_large"] / medians["raft_small"]
        print(f"ratio raft_large_vs_raft_small_seconds_per_frame {ratio:.3g}")


if __name__ == "__main__":
    main()
