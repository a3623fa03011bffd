"""The manifest stage: one row per readable video, and its stable shard assignment."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from flowguide.data.diving48 import SPLITS, ClipRecord, DatasetLayout, read_split, read_vocab
from flowguide.utils.atomic import atomic_path
from flowguide.utils.failures import FailureLog, VideoError
from flowguide.utils.manifest import MANIFEST_COLUMNS
from flowguide.utils.video import probe_video


def shard_name(split: str, position: int, shard_size: int) -> str:
    """Shard of the clip at ``position`` in its split's JSON.

    Diving48-style datasets grow by appending records, so existing clips keep their shard and
    only the last shard of a split and new ones change.
    """
    return f"{split}{position // shard_size:04d}"


def subset_records(records: list[ClipRecord], per_class: int | None) -> list[ClipRecord]:
    """At most ``per_class`` clips of each label, the first ones in file order."""
    if per_class is None:
        return records
    seen: dict[int, int] = defaultdict(int)
    kept = []
    for rec in records:
        if seen[rec.label] < per_class:
            seen[rec.label] += 1
            kept.append(rec)
    return kept


def manifest_row(layout: DatasetLayout, rec: ClipRecord, shard: str) -> dict[str, Any]:
    path = layout.video_path(rec.vid_name)
    info = probe_video(path)
    if rec.start_frame >= info.n_frames:
        raise VideoError(
            f"{path}: start_frame {rec.start_frame} is past the video's {info.n_frames} frames"
        )
    # Diving48's end_frame is inclusive and sometimes one past the decodable frames: clip it.
    last = min(rec.end_frame, info.n_frames - 1)
    return {
        "vid_name": rec.vid_name,
        "split": rec.split,
        "label": rec.label,
        "path": str(path),
        "start_frame": rec.start_frame,
        "end_frame": last,
        "n_frames": last - rec.start_frame + 1,
        "video_frames": info.n_frames,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "shard": shard,
    }


def build_manifest(
    layout: DatasetLayout, shard_size: int, subset_per_class: int | None, failures: FailureLog
) -> pd.DataFrame:
    num_classes = len(read_vocab(layout))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for split in SPLITS:
        records, rejected = read_split(layout, split, num_classes)
        for name, reason in rejected:
            failures.record(name, reason)
        records = subset_records(records, subset_per_class)
        for position, rec in enumerate(tqdm(records, desc=f"manifest {split}", unit="video")):
            if rec.vid_name in seen:
                failures.record(rec.vid_name, f"duplicate vid_name in {layout.split_json(split)}")
                continue
            seen.add(rec.vid_name)
            try:
                rows.append(manifest_row(layout, rec, shard_name(split, position, shard_size)))
            except VideoError as exc:
                failures.record(rec.vid_name, exc)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def write_manifest(
    manifest: pd.DataFrame, manifest_path: str | os.PathLike, shards_dir: str | os.PathLike
) -> None:
    """Write the manifest and one CSV per shard (the per-shard jobs' inputs)."""
    with atomic_path(manifest_path) as tmp:
        manifest.to_csv(tmp, index=False)
    shards_dir = Path(shards_dir)
    staging = shards_dir.with_name(shards_dir.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for shard, rows in manifest.groupby("shard", sort=True):
        rows.to_csv(staging / f"{shard}.csv", index=False)
    shutil.rmtree(shards_dir, ignore_errors=True)
    os.replace(staging, shards_dir)


def run_manifest(
    dataset: dict[str, Any],
    root: str | os.PathLike,
    manifest_path: str | os.PathLike,
    shards_dir: str | os.PathLike,
    failures_path: str | os.PathLike,
    fail_fast: bool = False,
) -> pd.DataFrame:
    layout = DatasetLayout.from_config(dataset, root)
    failures = FailureLog("manifest", fail_fast=fail_fast)
    manifest = build_manifest(
        layout, dataset["shard_size"], dataset.get("subset_per_class"), failures
    )
    write_manifest(manifest, manifest_path, shards_dir)
    failures.write(failures_path)
    return manifest
