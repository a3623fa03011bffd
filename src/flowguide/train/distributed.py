"""Several processes (torchrun): this process's place, gradient and BatchNorm-statistics
synchronisation done by hand (see flowguide.train.loop's docstring for why not DDP)."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from flowguide.train.errors import TrainingError
from flowguide.utils.device import resolve_device


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` in rank order (``[obj]`` alone)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def distributed_from_env() -> Distributed:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup_distributed(device: str, ddp: Distributed) -> torch.device:
    """The process's device; initialises the process group (NCCL on CUDA, gloo on the CPU)."""
    if not ddp.active:
        return resolve_device(device)  # a claimed free GPU for auto/cuda (utils.device)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {device}: CUDA is not available for a distributed run")
    if use_cuda:
        dev = torch.device("cuda", ddp.local_rank)  # torchrun's processes share the job's GPUs
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dev


def sync_gradients(model: nn.Module, ddp: Distributed) -> None:
    """Sum the gradients over the processes (one flat all-reduce per dtype)."""
    if not ddp.active:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)  # a grad on any process: zeros where missing
    dev = params[0].device
    if dev.type == "cuda":
        has = has.to(dev)
    for p, flag in zip(params, has.cpu().tolist(), strict=True):
        if flag and p.grad is None:
            p.grad = torch.zeros_like(p)
    _all_reduce_flat([p.grad for p in params if p.grad is not None], average=False)


class RunningStatsSync:
    """BatchNorm running statistics of a W-process step equal to one process's.

    One process applies the B/B_l loader batches' EMA updates in turn; here each process applies
    its own to the state at the step's start r0. The EMA is linear, so process p's contribution
    c_p = r_p - (1 - m)^{n_p} r0 is recovered and the single-process chain rebuilt in rank
    order: r = (1 - m)^{N} r0 + sum_p (1 - m)^{n_{p+1} + ... + n_W} c_p. Layers with
    ``momentum=None`` (a cumulative average) get the mean of the processes' statistics.
    """

    def __init__(self, model: nn.Module, ddp: Distributed) -> None:
        self.ddp = ddp
        self.layers = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        self._start: list[tuple[torch.Tensor, ...]] = []

    def begin(self) -> None:
        if self.ddp.active:
            self._start = [
                (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for m in self.layers
            ]

    def finish(self) -> None:
        if not self.ddp.active or not self.layers:
            return
        world = self.ddp.world_size
        counts = torch.stack([m.num_batches_tracked - s[2] for m, s in zip(self.layers,
                              self._start, strict=True)]).to(torch.float64)  # fmt: skip
        stats = torch.cat([torch.cat([m.running_mean, m.running_var]) for m in self.layers])
        all_counts = [torch.zeros_like(counts) for _ in range(world)]
        all_stats = [torch.zeros_like(stats) for _ in range(world)]
        dist.all_gather(all_counts, counts)
        dist.all_gather(all_stats, stats)
        offset = 0
        for i, (layer, (mean0, var0, nbt0)) in enumerate(zip(self.layers, self._start,
                                                             strict=True)):  # fmt: skip
            c = layer.running_mean.numel()
            per_rank = [s[offset : offset + 2 * c].double() for s in all_stats]
            offset += 2 * c
            n = [int(all_counts[r][i]) for r in range(world)]
            r0 = torch.cat([mean0, var0]).double()
            if layer.momentum is None:
                combined = torch.stack(per_rank).mean(0)
            else:
                keep = 1.0 - layer.momentum
                combined = keep ** sum(n) * r0
                for r in range(world):
                    contribution = per_rank[r] - keep ** n[r] * r0
                    combined = combined + keep ** sum(n[r + 1 :]) * contribution
            layer.running_mean.copy_(combined[:c])
            layer.running_var.copy_(combined[c:])
            layer.num_batches_tracked.copy_(nbt0 + sum(n))


def broadcast_state(model: nn.Module, ddp: Distributed) -> None:
    """Process 0's parameters and buffers everywhere (the start of a run)."""
    if ddp.active:
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def _all_reduce_flat(tensors: list[torch.Tensor], average: bool) -> None:
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        by_dtype[t.dtype].append(t)
    world = dist.get_world_size()
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        if average:
            flat /= world
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def reduce_sums(values: dict[str, float], ddp: Distributed) -> dict[str, float]:
    """Sum counters over the processes, keys in first-seen order (a process may lack some)."""
    if not ddp.active:
        return values
    total: dict[str, float] = {}
    for part in ddp.gather(values):
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total
