"""Loader cost of the mask methods: clips per second of the vanilla loader and of the mask
loader (OGL Transform: the clip's diver masks read from a bit-packed shard, only the sampled
frames, resized and transformed with the clip) on the same clips, alternating repetitions,
median. With --device cuda also SlowFast-R50 training steps per second (loader batch B_l) against
the loader's clips per second with workers, at T=16 and 32.

    python benchmarks/loader.py                      # small, 2-core CPU, ~1 minute
    python benchmarks/loader.py --device cuda --width 320 --height 240

Ends with ``ratio mask_loader_vs_vanilla <seconds per clip, mask / vanilla>`` (and with cuda,
``ratio model_vs_loader_T<T> <model clips/s / loader clips/s>``; above 1 the loader is the
bottleneck at that worker count).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from flowguide.clips.dataset import ClipDataset
from flowguide.clips.transforms import ClipTransform, TransformSpec
from flowguide.utils.h5 import create_video_group, write_masks, write_shard
from flowguide.utils.video import write_video


def make_clips(root: Path, n: int, frames: int, width: int, height: int, mask_short: int):
    """SynthDive-like clips: textured background panning, an ellipse 'diver' moving across;
    masks at the flow processing size (short side ``mask_short``) in one shard."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    background = rng.integers(0, 160, (height, width * 2, 3), dtype=np.uint8)
    rows = []
    scale = mask_short / min(width, height)
    mh, mw = round(height * scale), round(width * scale)
    with write_shard(root / "masks" / "train0000.h5", {"stage": "benchmark"}) as fh:
        for i in range(n):
            video = np.empty((frames, height, width, 3), np.uint8)
            masks = np.zeros((frames, mh, mw), bool)
            for t in range(frames):
                video[t] = background[:, t : t + width]
                cx, cy = width * (0.3 + 0.4 * t / frames), height * (0.3 + 0.02 * i)
                diver = ((xx - cx) / (width / 12)) ** 2 + ((yy - cy) / (height / 5)) ** 2 < 1
                video[t][diver] = (230, 200, 180)
                masks[t] = cv2.resize(
                    diver.astype(np.uint8), (mw, mh), interpolation=cv2.INTER_NEAREST
                ).astype(bool)
            path = root / "rgb" / f"clip{i:03d}.mp4"
            write_video(path, video, fps=25, qscale=6)
            write_masks(create_video_group(fh, path.stem), "mask", masks)
            rows.append(
                {
                    "vid_name": path.stem,
                    "split": "train",
                    "label": i % 4,
                    "path": str(path),
                    "start_frame": 0,
                    "end_frame": frames - 1,
                    "n_frames": frames,
                    "video_frames": frames,
                    "fps": 25.0,
                    "width": width,
                    "height": height,
                    "shard": "train0000",
                }
            )
    return pd.DataFrame(rows), root / "masks"


def loader_seconds(dataset: ClipDataset, batch: int, workers: int, max_clips: int | None = None):
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    start, seen = time.perf_counter(), 0
    for item in loader:
        seen += len(item["label"])
        if max_clips and seen >= max_clips:
            break
    return (time.perf_counter() - start) / seen


def model_clips_per_second(T: int, crop: int, batch: int, device: str, steps: int) -> float:
    from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip

    model = build_slowfast(SlowFastSpec(num_classes=48)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    clip = torch.randn(batch, 3, T, crop, crop, device=device)
    labels = torch.randint(0, 48, (batch,), device=device)
    times = []
    for step in range(steps + 3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(forward_clip(model, clip, 4), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 3:  # warm-up steps (cuDNN autotuning, allocation) not counted
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--mask-short-side", type=int, default=48, help="flow processing size")
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--crop", type=int, default=80)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--batch", type=int, default=4, help="loader batch size B_l")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--steps", type=int, default=10, help="model steps per T (cuda)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as in a loader worker

    with tempfile.TemporaryDirectory() as tmp:
        rows, masks_dir = make_clips(
            Path(tmp), args.clips, args.frames, args.width, args.height, args.mask_short_side
        )
        short = min(args.width, args.height)
        low = max(args.crop, short)
        spec = TransformSpec(short_side_min=low, short_side_max=low + short // 4, crop=args.crop)
        vanilla = ClipDataset(rows, args.T, ClipTransform(spec, True), None)
        ogl = TransformSpec(**{**spec.__dict__, "ogl_p": 0.5})
        masked = ClipDataset(rows, args.T, ClipTransform(ogl, True), masks_dir)
        print(
            f"device {args.device}; {args.clips} clips of {args.frames} frames "
            f"{args.width}x{args.height}, masks {args.mask_short_side}px short side, "
            f"T={args.T}, crop {args.crop}, B_l {args.batch}, single process"
        )
        loader_seconds(vanilla, args.batch, 0)  # warm-up: file cache, imports
        times: dict[str, list[float]] = {"vanilla": [], "mask": []}
        for rep in range(args.reps):
            for name, data in (("vanilla", vanilla), ("mask", masked)):
                data.set_epoch(rep)
                times[name].append(loader_seconds(data, args.batch, 0))
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, value in med.items():
            print(
                f"{name:8s} loader: {1 / value:8.1f} clips/s  ({value * 1e3:.2f} ms/clip, "
                f"median of {args.reps})"
            )
        ratios = [f"ratio mask_loader_vs_vanilla {med['mask'] / med['vanilla']:.3f}"]

        if args.device.startswith("cuda"):
            gpu_spec = TransformSpec()  # the thesis' sizes: short side 256-320, crop 224
            for T in (16, 32):
                data = ClipDataset(rows, T, ClipTransform(gpu_spec, True), masks_dir)
                loader_cps = 1 / loader_seconds(data, 8, args.workers)
                model_cps = model_clips_per_second(T, gpu_spec.crop, 8, args.device, args.steps)
                print(
                    f"T={T}: SlowFast-R50 train step {model_cps:7.1f} clips/s "
                    f"({model_cps / 8:.2f} steps/s at B_l 8); mask loader with "
                    f"{args.workers} workers {loader_cps:7.1f} clips/s"
                )
                ratios.append(f"ratio model_vs_loader_T{T} {model_cps / loader_cps:.3f}")
        print("\n".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
