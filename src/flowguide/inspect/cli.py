"""``flowguide inspect``: list a shard's videos, or render one video (thesis Figure 4.2)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="list a shard's videos, or render one video: RGB | flow | candidates | diver mask",
        description=(
            "flowguide inspect results/masks/train0000.h5  (list videos and statistics);  "
            "flowguide inspect --results results --shard train0000 --video VID --frames 0,4,8 "
            "--out fig.png [--animation vid.gif]"
        ),
    )
    p.add_argument("path", nargs="?", help="shard file to list (.h5 of any stage, or shard .csv)")
    p.add_argument("--results", help="results folder (with --shard: finds flow/candidates/masks)")
    p.add_argument("--shard", help="shard name, e.g. train0000")
    p.add_argument("--video", help="vid_name to render")
    p.add_argument("--flow", help="flow .h5 (overrides --results/--shard)")
    p.add_argument("--candidates", help="candidates .h5 (overrides --results/--shard)")
    p.add_argument("--masks", help="masks .h5 (overrides --results/--shard)")
    p.add_argument("--frames", help="comma-separated clip frame indices (default: 4 spread out)")
    p.add_argument("--gap-index", type=int, default=0, help="which stored flow gap to show")
    p.add_argument("--scale", type=int, default=0, help="integer upscaling (0 = auto)")
    p.add_argument("--out", help="output PNG")
    p.add_argument("--animation", help="output animation of all frames (.gif or .mp4)")
    p.add_argument("--fps", type=float, default=8.0, help="animation frame rate")
    p.set_defaults(func=_inspect)


def _paths(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from flowguide.inspect.load import results_paths

    paths: dict = {"flow": None, "candidates": None, "masks": None}
    if args.results and args.shard:
        found = results_paths(args.results, args.shard)
        paths = {k: (p if p.exists() else None) for k, p in found.items()}
    for kind in paths:
        if getattr(args, kind):
            paths[kind] = Path(getattr(args, kind))
    return paths


def _inspect(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from flowguide.utils.failures import FlowguideError

    if args.video is None:
        if not args.path:
            raise FlowguideError("inspect: give a shard file to list, or --video to render")
        from flowguide.inspect.load import video_table

        table = video_table(args.path)
        with pd.option_context("display.max_rows", None, "display.width", 160):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return 0
    if not (args.out or args.animation):
        raise FlowguideError("inspect --video: give --out fig.png and/or --animation anim.gif")
    from flowguide.inspect.load import load_panels, video_info
    from flowguide.inspect.render import render_animation, render_png

    paths = _paths(args)
    frames = None
    if args.frames:
        frames = [int(v) for v in args.frames.split(",") if v.strip()]
    if args.out:
        if frames is None:  # four frames spread over the clip
            n = video_info(paths, args.video)["n_frames"]
            frames = sorted({int(v) for v in np.linspace(0, n - 1, 4).round()})
        panels = load_panels(paths, args.video, frames, args.gap_index)
        scale = args.scale or max(1, 160 // next(iter(panels.columns.values())).shape[1])
        height, width = render_png(panels, args.out, scale)
        print(f"inspect: {args.out} ({width}x{height} px, columns {', '.join(panels.columns)})")
    if args.animation:
        panels = load_panels(paths, args.video, None, args.gap_index)
        scale = args.scale or max(1, 160 // next(iter(panels.columns.values())).shape[1])
        render_animation(panels, args.animation, args.fps, scale)
        print(f"inspect: {args.animation} ({len(panels.frames)} frames)")
    return 0
