"""``flowguide select`` (candidates -> diver masks) and ``flowguide mask-quality``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser(
        "select", help="diver mask per frame from candidates (thesis|tracked)"
    )
    p.add_argument("--candidates", required=True, help="candidates shard (.h5)")
    p.add_argument("--flow", help="the flow shard the candidates came from (rule: tracked)")
    p.add_argument("--out", required=True, help="output masks shard (.h5)")
    p.add_argument("--failures", required=True, help="output CSV of failed videos")
    p.add_argument("--options", type=json_options, default={}, help="config 'select' section")
    p.add_argument("--fail-fast", action="store_true")
    p.set_defaults(func=_select)

    p = subparsers.add_parser("mask-quality", help="IoU of selected masks against true masks")
    p.add_argument("--truth", required=True, help="true masks (.h5, e.g. SynthDive true_masks.h5)")
    p.add_argument("--out", required=True, help="output CSV (per video + overall row)")
    p.add_argument("masks", nargs="+", help="mask shards (.h5)")
    p.set_defaults(func=_quality)

    p = subparsers.add_parser(
        "mask-stability",
        help="per video: non-empty share, mask area, flow-warped frame-to-frame IoU (+ truth)",
    )
    p.add_argument("--masks", nargs="+", required=True, help="mask shards (.h5)")
    p.add_argument("--flow", nargs="+", required=True, help="their flow shards, same order")
    p.add_argument("--truth", help="true masks (.h5): adds mean IoU and identity over time")
    p.add_argument("--out", required=True, help="output CSV (per video + overall row)")
    p.set_defaults(func=_stability)


def _select(args: argparse.Namespace) -> int:
    from flowguide.config import validate_config
    from flowguide.select.stage import run_select

    options = validate_config({"dataset": {"kind": "synthdive"}, "select": args.options})["select"]
    n = run_select(args.candidates, args.out, args.failures, options, args.fail_fast, args.flow)
    print(f"select: {n} videos -> {args.out}")
    return 0


def _quality(args: argparse.Namespace) -> int:
    from flowguide.select.quality import OVERALL, mask_quality, write_quality

    table = mask_quality(args.truth, args.masks)
    write_quality(table, args.out)
    overall = table[table["vid_name"] == OVERALL].iloc[0]
    print(
        f"mask-quality: {len(table) - 1} videos, mean IoU {overall['mean_iou']:.3f}, "
        f"empty frames {overall['empty_ratio']:.3f} -> {args.out}"
    )
    return 0


def _stability(args: argparse.Namespace) -> int:
    import pandas as pd

    from flowguide.select.stability import OVERALL, mask_stability, write_stability
    from flowguide.utils.failures import FlowguideError

    if len(args.masks) != len(args.flow):
        raise FlowguideError("mask-stability: give one --flow shard per --masks shard")
    table = mask_stability(list(zip(args.masks, args.flow, strict=True)), args.truth)
    write_stability(table, args.out)
    with pd.option_context("display.width", 160):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"mask-stability: {(table['vid_name'] != OVERALL).sum()} videos -> {args.out}")
    return 0
