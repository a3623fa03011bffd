"""Flow storage: bytes per frame and gap, and the HDF5 compression ratio, before and after.

    python benchmarks/flow_storage.py --synthdive                       # SynthDive clips
    python benchmarks/flow_storage.py --video a.mp4 --short-side 0      # real footage, native

Computes DIS flow (no weights needed; RAFT flow is smoother and usually compresses better) at
``--gaps`` in one pass over the frames with the flow stage's own code, writes it as float16 with
one chunk per frame under each filter, and reports the stored size. "before" is gzip level 4
alone (the earlier writer), "after" is what the flow stage writes now (``FLOW_FILTERS``).
Ends with ``ratio <what> <value>`` lines.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np

from flowguide.flow.backends import OpenCVBackend
from flowguide.flow.stage import FLOW_FILTERS, video_flow
from flowguide.utils.video import read_video

SCHEMES = {
    "gzip4 (before)": {"compression": "gzip", "compression_opts": 4},
    "shuffle+gzip4 (after)": FLOW_FILTERS,
    "shuffle+gzip9": {"shuffle": True, "compression": "gzip", "compression_opts": 9},
    "shuffle+lzf": {"shuffle": True, "compression": "lzf"},
}


def synthdive_videos(tmp: Path, clips: int) -> list[Path]:
    from flowguide.data.synthdive import generate_dataset, synth_options

    # the demo's SynthDive (config.yaml): 128 x 96 px, 24 frames
    opts = {"num_classes": 4, "frames": 24, "width": 128, "height": 96, "qscale": 6,
            "clips_per_class_train": clips, "clips_per_class_test": 1}  # fmt: skip
    generate_dataset(tmp / "synthdive", synth_options(opts))
    return sorted((tmp / "synthdive" / "rgb").glob("*.mp4"))


def stored_bytes(flow: np.ndarray, filters: dict, path: Path) -> int:
    with h5py.File(path, "w") as fh:
        dset = fh.create_dataset("flow", data=flow, chunks=(1, *flow.shape[1:]), **filters)
        return dset.id.get_storage_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", action="append", default=[], help="video file (repeatable)")
    parser.add_argument("--synthdive", action="store_true", help="render SynthDive clips")
    parser.add_argument("--clips", type=int, default=2, help="SynthDive clips per class")
    parser.add_argument("--short-side", type=int, default=256, help="0 = native resolution")
    parser.add_argument("--gaps", default="1,-1,2,-2")
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    args = parser.parse_args()

    gaps = [int(g) for g in args.gaps.split(",")]
    backend = OpenCVBackend("dis")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        videos = [Path(v) for v in args.video]
        if args.synthdive:
            videos += synthdive_videos(tmp, args.clips)
        if not videos:
            parser.error("give --video or --synthdive")
        raw = 0
        stored = dict.fromkeys(SCHEMES, 0)
        fields = 0
        shapes = set()
        for video in videos:
            frames = read_video(video, 0, args.frames, args.short_side or None)
            flow, _ = video_flow(frames, backend, gaps)
            flow = flow.astype(np.float16)
            shapes.add(flow.shape[-2:])
            raw += flow.nbytes
            fields += flow.shape[0] * flow.shape[1]
            for name, filters in SCHEMES.items():
                stored[name] += stored_bytes(flow, filters, tmp / "f.h5")
    size = ", ".join(f"{h}x{w}" for h, w in sorted(shapes))
    print(f"{len(videos)} videos, frames {size}, gaps {gaps}, {fields} flow fields (frame x gap)")
    print(f"raw float16: {raw / fields / 1024:.1f} KiB per field")
    for name, nbytes in stored.items():
        print(
            f"{name:>24}: {nbytes / fields / 1024:.1f} KiB per field, "
            f"compression {raw / nbytes:.2f}x"
        )
    before, after = stored["gzip4 (before)"], stored["shuffle+gzip4 (after)"]
    print(f"ratio flow_compression_before {raw / before:.3f}")
    print(f"ratio flow_compression_after {raw / after:.3f}")
    print(f"ratio flow_bytes_after_vs_before {after / before:.3f}")
    pixels = np.mean([h * w for h, w in shapes])
    print(f"ratio flow_bytes_per_pixel_per_gap_after {after / fields / pixels:.4f}")


if __name__ == "__main__":
    main()
