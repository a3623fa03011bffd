"""``flowguide segment``: flow shard -> candidate label maps."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("segment", help="candidate masks per frame from flow (sam | motion)")
    p.add_argument("--shard", required=True, help="shard CSV (results/shards/{shard}.csv)")
    p.add_argument("--flow", required=True, help="flow shard (results/flow/{shard}.h5)")
    p.add_argument("--out", required=True, help="output candidates shard (.h5)")
    p.add_argument("--failures", required=True, help="output CSV of failed videos")
    p.add_argument("--options", type=json_options, default={}, help="config 'segment' section")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (sam backend)")
    p.add_argument("--dataset-root", help="dataset folder: video paths are stored relative to it")
    p.add_argument("--fail-fast", action="store_true")
    p.set_defaults(func=_segment)


def _segment(args: argparse.Namespace) -> int:
    from flowguide.config import validate_config
    from flowguide.segment.stage import run_segment

    # Fill the section's defaults from the schema (the rule passes a complete section anyway).
    options = validate_config({"dataset": {"kind": "synthdive"}, "segment": args.options})[
        "segment"
    ]
    n = run_segment(
        args.shard,
        args.flow,
        args.out,
        args.failures,
        options,
        args.device,
        args.fail_fast,
        dataset_root=args.dataset_root,
    )
    print(f"segment: {n} videos -> {args.out}")
    return 0
