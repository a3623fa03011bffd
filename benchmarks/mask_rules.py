"""Mask quality of both selection rules on SynthDive, against the true masks.

    python benchmarks/mask_rules.py [--config config.yaml] [--clips-per-class 2]
        [--camera-shake 1.0] [--override '{"synth": {"width": 128}}'] [--out /tmp/mask_rules]

SynthDive as the config's ``synth`` section renders it (with ``--clips-per-class`` train and
test clips per class, and the generator's ``camera_shake`` factor on the per-frame camera
jitter), then the config's flow and segment sections, then ``select`` with the thesis rule and
with the tracked rule on the same candidates. Per rule, the means over videos of
``flowguide mask-stability --truth`` (select/stability.py): mean IoU with the truth, identity
(consecutive pairs of non-empty masks both on the diver), switches, non-empty share, warped
frame-to-frame IoU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from flowguide.config import load_config
from flowguide.data.manifest import run_manifest
from flowguide.data.synthdive import generate_dataset, synth_options
from flowguide.flow.stage import run_flow
from flowguide.segment.stage import run_segment
from flowguide.select.stability import OVERALL, mask_stability
from flowguide.select.stage import run_select

COLUMNS = ["mean_iou", "identity", "switches", "nonempty_share", "warped_iou"]


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that decide the SynthDive clips (benchmarks/mask_oracle.py re-derives them)."""
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--clips-per-class", type=int, default=2)
    parser.add_argument("--camera-shake", type=float, default=1.0)
    parser.add_argument("--override", default="{}", help="JSON merged into the config")


def generator_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """The config and the ``synth`` section the clips are generated from."""
    config = load_config(args.config, json.loads(args.override))
    synth = {
        **config["synth"],
        "clips_per_class_train": args.clips_per_class,
        "clips_per_class_test": args.clips_per_class,
        "camera_shake": args.camera_shake,
    }
    return config, synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_generator_arguments(parser)
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    config, synth = generator_config(args)
    work = Path(args.out or tempfile.mkdtemp(prefix="mask_rules_"))
    root = work / "synthdive"
    generate_dataset(root, synth_options(synth))
    manifest = run_manifest(
        config["dataset"], root, work / "manifest.csv", work / "shards", work / "fm.csv"
    )
    rows = {}
    shards = sorted(manifest["shard"].unique())
    for shard in shards:
        csv = work / "shards" / f"{shard}.csv"
        run_flow(csv, work / f"{shard}.flow.h5", work / "ff.csv", config["flow"], "cpu")
        run_segment(
            csv, work / f"{shard}.flow.h5", work / f"{shard}.cand.h5", work / "fs.csv",
            config["segment"], "cpu",
        )  # fmt: skip
    for rule in ("thesis", "tracked"):
        pairs = []
        for shard in shards:
            out = work / f"{shard}.{rule}.h5"
            options = {**config["select"], "rule": rule}
            run_select(
                work / f"{shard}.cand.h5", out, work / "fx.csv", options,
                flow_path=work / f"{shard}.flow.h5",
            )  # fmt: skip
            pairs.append((out, work / f"{shard}.flow.h5"))
        table = mask_stability(pairs, root / "true_masks.h5")
        rows[rule] = table[table["vid_name"] == OVERALL].iloc[0]
    n = len(manifest)
    print(f"SynthDive {n} clips, camera_shake {args.camera_shake}, work folder {work}")
    print("rule     " + " ".join(f"{c:>14}" for c in COLUMNS))
    for rule, row in rows.items():
        print(f"{rule:8} " + " ".join(f"{row[c]:14.3f}" for c in COLUMNS))


if __name__ == "__main__":
    main()
