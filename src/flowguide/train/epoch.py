"""One training epoch over a loader (optimiser groups, synchronisation, metrics row), and the
accuracy of a model over a loader."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from flowguide.train.distributed import Distributed, RunningStatsSync, reduce_sums, sync_gradients
from flowguide.train.methods import Method, TrainContext
from flowguide.train.precision import Precision
from flowguide.train.step import accumulate_batch


def evaluate_accuracy(
    model: nn.Module, method: Method, loader: DataLoader, ctx: TrainContext
) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            logits = method.forward(model, batch["clip"].to(ctx.device), ctx)
            correct += int((logits.argmax(1).cpu() == batch["label"]).sum())
            total += len(batch["label"])
    model.train()
    return correct / max(1, total)


def run_epoch(
    model: nn.Module,
    method: Method,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
    per_group: list[int],
    sizes: list[int],
    ctx: TrainContext,
    ddp: Distributed | None = None,
    precision: Precision | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """One epoch: for each optimiser group, this process's ``per_group[g]`` loader batches (each
    scaled by b / ``sizes[g]``), the gradients summed over the processes, one optimiser step
    (through ``precision``: with fp16 the scaler's, which skips a step with inf gradients)."""
    ddp = ddp or Distributed()
    precision = precision or Precision("fp32", ctx.device)
    start = time.perf_counter()
    sums: dict[str, float] = defaultdict(float)
    n = correct = repeated = slots = 0
    lr = optimizer.param_groups[0]["lr"]
    optimizer.zero_grad(set_to_none=True)
    batches = iter(loader)
    running_stats = RunningStatsSync(model, ddp)
    bar = tqdm(total=len(loader), desc=f"epoch {ctx.epoch + 1}", unit="batch", leave=False,
               disable=None if ddp.is_main else True)  # fmt: skip
    for count, size in zip(per_group, sizes, strict=True):
        running_stats.begin()
        for _ in range(count):
            stats = accumulate_batch(
                model, method, next(batches), ctx, size, precision, channels_last
            )
            ctx.global_batch += 1
            n += stats.n
            correct += stats.correct
            repeated += stats.repeated_slots
            slots += stats.slots
            for name, value in stats.terms.items():
                sums[name] += value * stats.n
            bar.update(1)
            bar.set_postfix(loss=f"{sum(stats.terms.values()):.3f}")
        sync_gradients(model, ddp)
        lr = optimizer.param_groups[0]["lr"]
        precision.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        running_stats.finish()
        method.end_step(ctx)
    bar.close()
    seconds = time.perf_counter() - start
    counts = {"n": n, "correct": correct, "repeated": repeated, "slots": slots}
    totals = reduce_sums({**counts, **{f"t_{k}": v for k, v in sums.items()}},
                         ddp)  # fmt: skip
    n, correct = int(totals.pop("n")), int(totals.pop("correct"))
    repeated, slots = int(totals.pop("repeated")), int(totals.pop("slots"))
    sums = {key[2:]: v for key, v in totals.items()}
    row: dict[str, Any] = {"epoch": ctx.epoch + 1, "loss": sum(sums.values()) / max(1, n)}
    row.update({f"loss_{name}": total / max(1, n) for name, total in sums.items()})
    row.update(
        {
            "accuracy": correct / max(1, n),
            # share of sampled slots repeating a frame (dynamic stride clamping, clips.sampling)
            "repeated_slot_share": repeated / max(1, slots),
            "lr": lr,
            "seconds": seconds,
            "clips_per_second": n / seconds,
        }
    )
    extra = ddp.gather(method.epoch_metrics())
    for name in dict.fromkeys(key for e in extra for key in e):
        row[name] = float(np.mean([e[name] for e in extra if name in e]))
    return row
