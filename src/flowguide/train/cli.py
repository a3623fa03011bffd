"""``flowguide train``: one (method, T) training job."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("train", help="train SlowFast with one method at one T")
    p.add_argument("--manifest", required=True, help="results/manifest.csv")
    p.add_argument("--masks-dir", default=None, help="folder of diver-mask shards (mask methods)")
    p.add_argument("--method", required=True, help="registry name, e.g. vanilla, ogl_transform")
    p.add_argument("--T", dest="T", type=int, required=True, help="frames sampled per clip")
    p.add_argument("--out-dir", required=True, help="output folder (checkpoint.pt, metrics.csv)")
    p.add_argument("--options", type=json_options, default={}, help="config 'train' section")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from flowguide.train.loop import train

    result = train(
        args.manifest, args.masks_dir, args.method, args.T, args.out_dir, args.options, args.device
    )
    last = result.metrics[-1] if result.metrics else {}
    print(
        f"train {args.method} T={args.T}: {len(result.metrics)} epochs "
        f"({result.epochs_run} run now, resumed from {result.resumed_from}); "
        f"final loss {last.get('loss', float('nan')):.4f}, accuracy {last.get('accuracy', 0):.3f}"
    )
    return 0
