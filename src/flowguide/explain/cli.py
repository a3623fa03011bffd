"""``flowguide explain``: post-hoc explainers (papers 002-004) scored against the diver masks.

Not yet listed in ``flowguide.cli.STAGE_CLIS``; the lead wires it with the explain rule.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("explain", help="explain test clips of a trained model, score maps")
    p.add_argument("--checkpoint", required=True, help="train-stage checkpoint (final.pt)")
    p.add_argument("--manifest", required=True, help="results/manifest.csv")
    p.add_argument("--masks-dir", required=True, help="folder of {shard}.h5 diver masks")
    p.add_argument("--flow-dir", default=None, help="folder of {shard}.h5 flow (motion metrics)")
    p.add_argument("--out-dir", required=True, help="output folder (scores, summary, maps.h5)")
    p.add_argument(
        "--options",
        type=json_options,
        default={},
        help='config "explain" section: n_clips, split, target, explainers, per-explainer '
        "sections, batch_size, seed, segmentation, selective, metrics",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--fail-fast", action="store_true")
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from flowguide.explain.stage import run_explain

    summary = run_explain(
        args.checkpoint,
        args.manifest,
        args.masks_dir,
        args.flow_dir,
        args.out_dir,
        args.options,
        args.device,
        args.fail_fast,
    )
    for row in summary:
        print(
            f"{row['explainer']:24s} del {row.get('deletion_auc')} ins {row.get('insertion_auc')} "
            f"pointing {row.get('pointing')} passes {row.get('forward_passes')}"
        )
    return 0
