"""Which clips a run trains on (train.clip_set), and how many sampled slots repeat a frame."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from flowguide.clips.dataset import split_by_mask_availability
from flowguide.clips.sampling import repeated_slots, sample_indices
from flowguide.train.errors import TrainingError
from flowguide.train.methods import Method
from flowguide.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


def select_training_clips(
    train_rows: pd.DataFrame,
    eval_rows: pd.DataFrame,
    method: Method,
    masks_dir: Any,
    options: Mapping[str, Any],
    out_dir: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path], dict[str, Any]]:
    """(training rows, evaluation rows, the mask shards read, the counts for timing.json)."""
    mask_files: list[Path] = []
    clips = {"clip_set": options["clip_set"], "manifest_train": len(train_rows), "excluded": 0}
    # clip_set common: every method trains on the clips that have masks, so the methods are
    # compared on one training set; own: only the mask methods drop clips without masks.
    if method.needs_masks or options["clip_set"] == "common":
        if masks_dir is None:
            why = "needs" if method.needs_masks else "with train.clip_set common needs"
            raise TrainingError(
                f"method {method.name} {why} the mask shards (--masks-dir) to pick its clips"
                + ("" if method.needs_masks else "; or set train.clip_set: own")
            )
        n_before = len(train_rows)
        train_rows, eval_rows = keep_masked(train_rows, eval_rows, masks_dir, options, out_dir)
        clips["excluded"] = n_before - len(train_rows)
        mask_files = sorted(Path(masks_dir) / f"{s}.h5" for s in set(train_rows["shard"]))
    clips["train"] = len(train_rows)
    log.info(
        "training clips (clip_set %s): %d of %d in the manifest, %d without masks excluded",
        clips["clip_set"], clips["train"], clips["manifest_train"], clips["excluded"],
    )  # fmt: skip
    return train_rows, eval_rows, mask_files, clips


def keep_masked(train_rows: pd.DataFrame, eval_rows: pd.DataFrame, masks_dir, options, out_dir):
    """Drop (or refuse) clips whose video has no mask; the dropped ones go to excluded.csv."""
    kept_train, missing_train = split_by_mask_availability(train_rows, masks_dir)
    missing = missing_train
    if options["missing_masks"] == "error" and len(missing):
        names = ", ".join(missing["vid_name"].head(5))
        raise TrainingError(
            f"{len(missing)} training clip(s) have no diver mask in {masks_dir}: {names} "
            "(set train.missing_masks: drop to train without them)"
        )
    atomic_write_text(
        Path(out_dir) / "excluded.csv", missing[["vid_name", "split", "shard"]].to_csv(index=False)
    )
    if len(missing):
        log.warning(
            "%d training clip(s) without diver masks dropped (see excluded.csv)", len(missing)
        )
    return kept_train, eval_rows


def log_repeated_slots(rows: pd.DataFrame, num_samples: int, sampling: str) -> None:
    """How many slots repeat a frame at offset 0 (training offsets add to it): the thesis'
    stride clamps past-the-end slots to the clip's last frame, frequent at large T."""
    repeats = sum(
        repeated_slots(sample_indices(int(n), num_samples, False, None, sampling))
        for n in rows["n_frames"]
    )
    total = num_samples * len(rows)
    log.info(
        "sampling %s at T=%d: %d of %d slots (%.1f%%) repeat a frame at offset 0 "
        "(per epoch: metrics.csv repeated_slot_share)",
        sampling, num_samples, repeats, total, 100.0 * repeats / max(1, total),
    )  # fmt: skip
