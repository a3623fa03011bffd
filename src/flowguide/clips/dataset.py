"""One dataset class: a manifest row -> T sampled frames (and diver masks), transformed.

Randomness is per sample: the offset of the dynamic temporal stride and every transform draw
come from a seed derived from (run seed, epoch, dataset index). A sample is therefore the same
whatever the number of loader workers or the order of loading, which is what makes a resumed run
equal an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from flowguide.clips.sampling import repeated_slots, sample_indices
from flowguide.clips.transforms import (
    ClipTransform,
    TransformSpec,
    frames_to_tensor,
    masks_to_tensor,
)
from flowguide.utils.h5 import iter_video_groups, read_shard
from flowguide.utils.masks import MASK_DATASET, MaskShardReader
from flowguide.utils.video import read_frames

log = logging.getLogger(__name__)


def mask_shard_path(masks_dir: str | os.PathLike, shard: str) -> Path:
    return Path(masks_dir) / f"{shard}.h5"


def split_by_mask_availability(
    rows: pd.DataFrame, masks_dir: str | os.PathLike
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows whose video has masks for every clip frame, rows without); each shard file is
    opened once.

    A video the flow/segment/select stages failed on is absent from its mask shard. A video whose
    mask count differs from the manifest's ``n_frames`` (a stale or foreign shard) would pair
    frames with the wrong masks: it goes with the rows without, and a warning names the shard,
    the video and both counts.
    """
    has_mask = np.zeros(len(rows), dtype=bool)
    for shard, positions in rows.groupby("shard").indices.items():
        path = mask_shard_path(masks_dir, shard)
        with read_shard(path) as fh:
            mask_frames = {
                name: int(obj[MASK_DATASET].shape[0])
                for name, obj in iter_video_groups(fh, path)
                if MASK_DATASET in obj
            }
        for pos in positions:
            name, n_frames = str(rows["vid_name"].iat[pos]), int(rows["n_frames"].iat[pos])
            if name not in mask_frames:
                continue
            if mask_frames[name] != n_frames:
                log.warning(
                    "%s: video %s has %d mask frames but %d clip frames in the manifest; "
                    "treated as having no mask",
                    path, name, mask_frames[name], n_frames,
                )  # fmt: skip
                continue
            has_mask[pos] = True
    return rows[has_mask].reset_index(drop=True), rows[~has_mask].reset_index(drop=True)


def sample_seed(seed: int, epoch: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, epoch, index])


class ClipDataset(Dataset):
    """Items: ``clip`` (C,T,H,W) float, ``label``, ``index``, ``vid_name``, and ``mask`` (T,H,W)
    bool when ``masks_dir`` is given (masks are stored at the flow size; resized with nearest)."""

    def __init__(
        self,
        rows: pd.DataFrame,
        num_samples: int,
        transform: ClipTransform,
        masks_dir: str | os.PathLike | None = None,
        seed: int = 0,
        sampling: str = "stride",
    ) -> None:
        self.rows = rows.reset_index(drop=True)
        self.sampling = sampling
        self.num_samples = num_samples
        self.transform = transform
        self.masks_dir = Path(masks_dir) if masks_dir is not None else None
        self.seed = seed
        self.epoch = 0
        self.mask_reader = MaskShardReader()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def frame_indices(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Clip-relative indices (0 = the manifest's start_frame)."""
        n_frames = int(self.rows.at[index, "n_frames"])
        return sample_indices(
            n_frames, self.num_samples, self.transform.training, rng, self.sampling
        )

    def read(self, index: int, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        row = self.rows.iloc[index]
        frames = read_frames(row["path"], int(row["start_frame"]) + indices)
        video = frames_to_tensor(frames)
        if self.masks_dir is None:
            return video, None
        shard = mask_shard_path(self.masks_dir, row["shard"])
        masks = self.mask_reader.read(shard, row["vid_name"], indices)
        return video, masks_to_tensor(masks)  # resampled once, by the first geometric step

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """``key``: a position (this dataset's epoch) or ``(epoch, position)``, as the training
        loader's batch sampler gives it so that persistent workers follow the epoch."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        seeds = sample_seed(self.seed, epoch, index)
        rng = np.random.default_rng(seeds)
        indices = self.frame_indices(index, rng)
        video, mask = self.read(index, indices)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds.generate_state(1, np.uint64)[0] >> 1))
            clip, mask = self.transform(video, mask)
        item: dict[str, Any] = {
            "clip": clip,
            "label": int(self.rows.at[index, "label"]),
            "index": index,
            "vid_name": str(self.rows.at[index, "vid_name"]),
            "frame_indices": torch.as_tensor(indices),  # clip-relative (0 = start_frame)
            "repeated_slots": repeated_slots(indices),
        }
        if mask is not None:
            item["mask"] = mask
        return item


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and random in each loader worker from its torch seed (itself from the loader's
    generator), for any library code that draws from them."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def evaluation_datasets(
    rows: pd.DataFrame,
    num_samples: int,
    transform: dict[str, Any],
    masks_dir: str | os.PathLike | None = None,
    sampling: str = "stride",
) -> list[ClipDataset]:
    """Deterministic evaluation datasets for a trained model's stored ``transform`` settings:
    one for the clips that have diver masks (items carry ``mask``) and, when some clips have none
    (a failed video upstream), one for those without. Every clip is evaluated either way."""
    spec = TransformSpec(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in transform.items()}
    )
    clip_transform = ClipTransform(spec, training=False)
    if masks_dir is None:
        return [ClipDataset(rows, num_samples, clip_transform, sampling=sampling)]
    with_masks, without = split_by_mask_availability(rows, masks_dir)
    datasets = [ClipDataset(with_masks, num_samples, clip_transform, masks_dir, sampling=sampling)]
    if len(without):
        log.warning("%d clips have no diver mask; evaluated without one", len(without))
        datasets.append(ClipDataset(without, num_samples, clip_transform, sampling=sampling))
    return [d for d in datasets if len(d)]
