"""What happens when: the learning-rate schedule, gradient accumulation groups, each epoch's
sample order and its split between processes (see flowguide.train.loop's docstring)."""

from __future__ import annotations

import math

import numpy as np
import torch

from flowguide.train.errors import TrainingError


class LRSchedule:
    """LR factor (of ``base_lr``) at optimiser step ``step``; a class so LambdaLR can save it.

    Linear warm-up from ``start_lr`` to ``base_lr`` over ``warmup_steps``, then ``kind``:
    "constant" (the default: the thesis, Section 4.6, gives the warm-up to 0.1 and no decay) or
    "cosine" (decay to 0 at ``total_steps``; an option, not the thesis').
    """

    def __init__(
        self,
        base_lr: float,
        start_lr: float,
        warmup_steps: int,
        total_steps: int,
        kind: str = "constant",
    ) -> None:
        self.base_lr = base_lr
        self.start_lr = start_lr
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        if kind not in ("constant", "cosine"):
            raise ValueError(f"train.lr_schedule must be 'constant' or 'cosine', got {kind!r}")
        self.kind = kind

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            lr = self.start_lr + (self.base_lr - self.start_lr) * step / self.warmup_steps
            return lr / self.base_lr
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))


def accumulation_steps(batch_size: int, loader_batch_size: int) -> int:
    if batch_size % loader_batch_size:
        raise TrainingError(
            f"train.batch_size {batch_size} must be a multiple of "
            f"train.loader_batch_size {loader_batch_size}"
        )
    return batch_size // loader_batch_size


def group_sizes(n_samples: int, loader_batch_size: int, k: int) -> list[int]:
    """Samples per optimiser step in one epoch (groups of k loader batches, the last shorter)."""
    batches = [
        min(loader_batch_size, n_samples - start)
        for start in range(0, n_samples, loader_batch_size)
    ]
    return [sum(batches[i : i + k]) for i in range(0, len(batches), k)]


def batch_plan(
    n_samples: int, loader_batch_size: int, k: int, world_size: int, rank: int,
    order: list[int],
) -> tuple[list[list[int]], list[int], list[int]]:  # fmt: skip
    """This process's loader batches, how many of them fall in each optimiser group, and the
    groups' global sizes; the single-process schedule split by loader batch (module docstring).
    """
    if k % world_size:
        raise TrainingError(
            f"train.batch_size must be a multiple of {world_size} processes x "
            f"train.loader_batch_size (accumulation over {k} loader batches does not split)"
        )
    batches = [order[s : s + loader_batch_size] for s in range(0, n_samples, loader_batch_size)]
    mine: list[list[int]] = []
    per_group: list[int] = []
    sizes: list[int] = []
    for g in range(0, len(batches), k):
        group = batches[g : g + k]
        sizes.append(sum(len(b) for b in group))
        share = np.array_split(np.arange(len(group)), world_size)[rank]
        mine += [group[i] for i in share]
        per_group.append(len(share))
    return mine, per_group, sizes


def epoch_order(n_samples: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The epoch's sample order, from (seed, epoch) alone: equal in every process."""
    if not shuffle:
        return list(range(n_samples))
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, epoch, 7]).generate_state(1)[0]))
    return torch.randperm(n_samples, generator=generator).tolist()
