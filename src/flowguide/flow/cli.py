"""``flowguide flow``: optical flow of one shard of videos."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("flow", help="optical flow of the videos of one shard")
    p.add_argument("--shard", required=True, help="shard CSV (results/shards/{shard}.csv)")
    p.add_argument("--out", required=True, help="output HDF5 (results/flow/{shard}.h5)")
    p.add_argument("--failures", required=True, help="output CSV of videos that failed")
    p.add_argument("--options", type=json_options, default={}, help="config 'flow' section")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda[:N]")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed video")
    p.set_defaults(func=_flow)


def _flow(args: argparse.Namespace) -> int:
    from flowguide.flow.stage import run_flow

    summary = run_flow(
        args.shard, args.out, args.failures, args.options, args.device, args.fail_fast
    )
    print(
        f"flow: {summary['written']} of {summary['videos']} videos written to {args.out}"
        f" ({summary['failed']} failed, see {args.failures})"
    )
    return 0
