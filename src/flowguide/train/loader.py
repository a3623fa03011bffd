"""The training DataLoader, built once per run and kept across epochs.

Worker processes are started once (``persistent_workers``) and keep their copy of the dataset,
so the epoch cannot reach them through ``dataset.set_epoch``. The batch sampler therefore yields
``(epoch, index)`` keys: each sample's randomness comes from (seed, epoch, index) as before, and
a resumed run, or any number of workers, sees the same samples. ``pin_memory`` on CUDA and
``prefetch_factor`` batches per worker keep the GPU fed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from flowguide.clips.dataset import ClipDataset, worker_init_fn


class EpochBatches:
    """Batch sampler over this epoch's batches of dataset positions (``set`` each epoch)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.batches: list[list[int]] = []

    def set(self, epoch: int, batches: list[list[int]]) -> None:
        self.epoch, self.batches = epoch, [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches:
            yield [(self.epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    dataset: ClipDataset,
    sampler: EpochBatches,
    num_workers: int,
    device: torch.device,
    prefetch_factor: int = 2,
    persistent: bool = True,
) -> DataLoader:
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and workers,
        prefetch_factor=prefetch_factor if workers else None,
    )
