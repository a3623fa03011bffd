"""One loader batch: forward, the weighted cross-entropy plus the method's terms, and its share
of the optimiser batch's gradient (see flowguide.train.loop's docstring for the normalisation)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flowguide.train.errors import TrainingError
from flowguide.train.methods import Method, TrainContext
from flowguide.train.precision import Precision


def class_weights(labels: Iterable[int], num_classes: int) -> torch.Tensor:
    """``w_i = 1 - n_i / N`` over the training clips (a class with no clip gets 1)."""
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=num_classes)
    return torch.tensor(1.0 - counts / counts.sum(), dtype=torch.float32)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``w_{y_n} * CE_n`` (see the module docstring)."""
    return (F.cross_entropy(logits, labels, reduction="none") * weights[labels]).mean()


@dataclass
class BatchStats:
    n: int
    correct: int
    repeated_slots: int  # sampled slots repeating an earlier slot's frame (clips.sampling)
    slots: int  # n * T
    terms: dict[str, float]  # per-batch means


def accumulate_batch(
    model: nn.Module,
    method: Method,
    batch: dict[str, Any],
    ctx: TrainContext,
    group_size: int,
    precision: Precision | None = None,
    channels_last: bool = False,
) -> BatchStats:
    """Forward one loader batch, add its share ``b / group_size`` of the loss gradient.

    ``precision``: autocast and loss scaling (train.precision); ``channels_last``: the clip in
    channels_last_3d memory layout (the model's weights are converted once by the loop).
    """
    precision = precision or Precision("fp32", ctx.device)
    clip = batch["clip"].to(ctx.device, non_blocking=True)
    if channels_last:
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    labels = batch["label"].to(ctx.device, non_blocking=True)
    if method.needs_input_grad:
        clip.requires_grad_(True)
    batch = {**batch, "clip": clip, "label": labels}
    if "mask" in batch:
        batch["mask"] = batch["mask"].to(ctx.device, non_blocking=True)
    with precision.autocast():
        logits = method.forward(model, clip, ctx)
        terms = {"ce": method.ce_weight * weighted_ce(logits.float(), labels, ctx.class_weights)}
        for name, value in method.loss_terms(model, batch, logits, ctx).items():
            if name in terms:
                raise TrainingError(
                    f"method {method.name} returns a loss term named {name!r} twice"
                )
            terms[name] = value.float()
    values = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).cpu()
    for name, value in zip(terms, values.tolist(), strict=True):
        if not math.isfinite(value):
            raise TrainingError(
                f"loss term {name!r} is {value} (epoch {ctx.epoch + 1}, loader batch "
                f"{ctx.global_batch}); training stopped, the last good checkpoint is kept"
            )
    b = clip.shape[0]
    precision.backward(sum(terms.values()) * (b / group_size))
    correct = int((logits.detach().argmax(1) == labels).sum())
    repeated = int(batch["repeated_slots"].sum()) if "repeated_slots" in batch else 0
    return BatchStats(
        n=b,
        correct=correct,
        repeated_slots=repeated,
        slots=b * clip.shape[2],
        terms=dict(zip(terms, values.tolist(), strict=True)),
    )
