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

# A video that decodes to fewer frames than its record lists (a truncated file): losing more
# than this share of the record's frames makes it a failure (left out); less, a warning (kept
# with the frames there are). One frame past the end is Diving48's own off-by-one: no row.
DEFAULT_MAX_LOST_SHARE = 0.1


def shard_name(split: str, position: int, shard_size: int) -> str:
    """Shard of the clip at ``position`` in its split's JSON.

    Diving48-style datasets grow by appending records, so existing clips keep their shard and
    only the last shard of a split and new ones change.
    """
    return f"{split}{position // shard_size:04d}"


def shard_slots(records: list[ClipRecord], kept: list[ClipRecord], n_raw: int) -> dict[int, int]:
    """JSON position -> slot for the shard of each kept record. Slots count rejected records
    too (they are taken before rejection), so fixing one bad record changes one shard only.
    Without a subset a slot is the JSON position; with one, the rank among the records the
    subset keeps and the rejected ones (whose label, hence subset, is unknown)."""
    if len(kept) == len(records):
        return {rec.position: rec.position for rec in kept}
    rejected = set(range(n_raw)) - {rec.position for rec in records}
    holders = sorted({rec.position for rec in kept} | rejected)
    return {position: slot for slot, position in enumerate(holders)}


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


def manifest_row(
    layout: DatasetLayout,
    rec: ClipRecord,
    shard: str,
    failures: FailureLog,
    max_lost_share: float = DEFAULT_MAX_LOST_SHARE,
) -> dict[str, Any]:
    path = layout.check_inside(layout.video_path(rec.vid_name))
    info = probe_video(path)
    if rec.start_frame >= info.n_frames:
        raise VideoError(
            f"{path}: start_frame {rec.start_frame} is past the video's {info.n_frames} frames"
        )
    # Diving48's end_frame is inclusive and sometimes one past the decodable frames: clip it.
    last = min(rec.end_frame, info.n_frames - 1)
    wanted = rec.end_frame - rec.start_frame + 1
    lost = rec.end_frame - last
    if lost > 1:
        what = (
            f"{path}: the record lists frames {rec.start_frame}..{rec.end_frame} but the video "
            f"decodes to {info.n_frames} frames; {lost} of {wanted} ({lost / wanted:.0%}) lost"
        )
        if lost / wanted > max_lost_share:
            raise VideoError(f"{what}, over dataset.max_lost_share {max_lost_share:g} (truncated?)")
        failures.warn(rec.vid_name, f"{what}; kept with frames {rec.start_frame}..{last}")
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
    layout: DatasetLayout,
    shard_size: int,
    subset_per_class: int | None,
    failures: FailureLog,
    max_lost_share: float = DEFAULT_MAX_LOST_SHARE,
) -> pd.DataFrame:
    num_classes = len(read_vocab(layout))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for split in SPLITS:
        records, rejected = read_split(layout, split, num_classes)
        for name, reason in rejected:
            failures.record(name, reason)
        kept = subset_records(records, subset_per_class)
        slots = shard_slots(records, kept, len(records) + len(rejected))
        for rec in tqdm(kept, desc=f"manifest {split}", unit="video"):
            if rec.vid_name in seen:
                failures.record(rec.vid_name, f"duplicate vid_name in {layout.split_json(split)}")
                continue
            seen.add(rec.vid_name)
            shard = shard_name(split, slots[rec.position], shard_size)
            try:
                rows.append(manifest_row(layout, rec, shard, failures, max_lost_share))
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
        layout,
        dataset["shard_size"],
        dataset.get("subset_per_class"),
        failures,
        dataset.get("max_lost_share", DEFAULT_MAX_LOST_SHARE),
    )
    write_manifest(manifest, manifest_path, shards_dir)
    failures.write(failures_path)
    return manifest
