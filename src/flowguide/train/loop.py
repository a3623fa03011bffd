"""The one training entry point: ``train(...)`` for a (method, T) pair.

Optimisation (thesis Section 4.6): SGD (lr 0.1, momentum 0.9, weight decay 1e-4); linear
warm-up from ``warmup.start_lr`` to ``lr`` over the optimiser steps that cover the first
``warmup.batches`` loader batches, then cosine decay to 0 over the remaining optimiser steps
(``schedule: constant`` keeps ``lr``). The optimiser batch B is reached by gradient accumulation
over ``k = B / B_l`` loader batches; the last group of an epoch may be shorter.

Loss: weighted cross-entropy with ``w_i = 1 - n_i / N`` (n_i training clips of class i), plus
the method's named terms. Every term is normalised by the number of samples in the optimiser
batch (``sum_n w_{y_n} CE_n / |group|``), not by the sum of weights as
``nn.CrossEntropyLoss(weight=...)`` does, so that accumulating k loader batches gives exactly
the gradient of one full batch (the two normalisations differ by a constant close to 1 when the
classes are balanced).

Checkpoints: after every epoch the whole training state (model, optimiser, scheduler, epoch,
torch/numpy/python RNG states, method state, metrics so far; and what a reader needs to rebuild
the model: ``model_spec``, ``abn_spec`` (null unless Object-ABN), ``alpha``, ``T``,
``num_classes``, ``transform``; see flowguide.modeling.trained) goes atomically to
``<out>/last.pt``; a rerun with the same inputs and options resumes from it and ends with the
same weights as an uninterrupted run. When training ends, ``checkpoint.pt`` (the same state),
``metrics.csv`` and ``timing.json`` are written and ``last.pt`` is kept: when a scheduler marks a
job that finished just past its time limit as failed, Snakemake deletes the declared outputs, and
the retry rebuilds them from ``last.pt`` without training again.

Several processes (torchrun; ``flowguide train --gpus N`` or ``--nproc N`` relaunches itself
under ``torch.distributed.run``): each epoch's single-process schedule of loader batches (the
order from (seed, epoch), groups of ``k`` loader batches per optimiser step) is split between
the W processes at the loader-batch level, rank r taking the r-th of W contiguous slices of each
group, so an optimiser step sees exactly the samples, and every BatchNorm batch exactly the
clips, it sees in one process; the optimiser batch stays B (W x B_l x k/W = B, so B must be a
multiple of W x B_l). After each group the gradients (each already scaled by b / |group|) are
summed over the processes with one all-reduce, and every process takes the same optimiser step.
This is DistributedDataParallel's arithmetic with ``no_sync`` on the accumulation steps, done by
hand because the guided losses take second-order gradients (``create_graph=True``), which DDP's
reducer does not support, and because the last, shorter group may leave a process with no batch.
BatchNorm normalises per process with the statistics of its B_l clips, as one process does
(SyncBatchNorm would change the BN batch and has no double backward, needed by RRR); after each
optimiser step the running statistics are combined so that they equal one process's successive
EMA updates (``RunningStatsSync``).
Process 0 evaluates and writes checkpoints, metrics and timing; every process resumes from the
same ``last.pt``. Dropout masks come from each process's torch RNG (all start from the run seed),
so with dropout a W-process run is a different, equally valid, draw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from flowguide.clips.dataset import (
    ClipDataset,
    split_by_mask_availability,
    worker_init_fn,
)
from flowguide.clips.transforms import ClipTransform, TransformSpec
from flowguide.modeling.abn import ObjectABN
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, load_kinetics
from flowguide.train.methods import Method, TrainContext, create_method
from flowguide.utils.atomic import atomic_path, atomic_write_text
from flowguide.utils.checkpoints import load_weights
from flowguide.utils.device import resolve_device
from flowguide.utils.failures import FlowguideError
from flowguide.utils.manifest import read_manifest

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "flowguide.train/1"
STATE_NAME = "last.pt"
FINAL_NAME = "checkpoint.pt"
# Options that change neither the data nor the arithmetic: a resume may differ in them.
NOT_FINGERPRINTED = ("num_workers", "tensorboard", "methods", "T")


class TrainingError(FlowguideError):
    """Training cannot go on (a non-finite loss, no training clips, ...)."""


# --- options ---------------------------------------------------------------------------------


def train_options(partial: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's ``train`` section with the schema's defaults filled in, validated."""
    from flowguide.config import validate_config

    config = validate_config({"dataset": {"kind": "synthdive"}, "train": dict(partial or {})})
    return config["train"]


def transform_spec(options: Mapping[str, Any], method: Method) -> TransformSpec:
    t, ra = options["transform"], options["randaugment"]
    return TransformSpec(
        short_side_min=t["short_side_min"],
        short_side_max=t["short_side_max"],
        crop=t["crop"],
        eval_short_side=t["eval_short_side"],
        eval_crop=t["eval_crop"],
        mean=tuple(t["mean"]),
        std=tuple(t["std"]),
        hflip_p=t["hflip_p"],
        randaugment=method.randaugment,
        randaug_magnitude=ra["magnitude"],
        randaug_num_layers=ra["num_layers"],
        randaug_prob=ra["prob"],
        ogl_p=method.ogl_p,
    )


def model_spec(options: Mapping[str, Any], num_classes: int) -> SlowFastSpec:
    m = options["model"]
    return SlowFastSpec(
        num_classes=num_classes,
        depth=m["depth"],
        alpha=m["alpha"],
        beta_inv=m["beta_inv"],
        stem_width=m["stem_width"],
        dropout=m["dropout"],
    )


# --- loss pieces -----------------------------------------------------------------------------


def class_weights(labels: Iterable[int], num_classes: int) -> torch.Tensor:
    """``w_i = 1 - n_i / N`` over the training clips (a class with no clip gets 1)."""
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=num_classes)
    return torch.tensor(1.0 - counts / counts.sum(), dtype=torch.float32)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``w_{y_n} * CE_n`` (see the module docstring)."""
    return (F.cross_entropy(logits, labels, reduction="none") * weights[labels]).mean()


class WarmupCosine:
    """LR factor (of ``base_lr``) at optimiser step ``step``; a class so LambdaLR can save it."""

    def __init__(
        self,
        base_lr: float,
        start_lr: float,
        warmup_steps: int,
        total_steps: int,
        schedule: str = "cosine",
    ) -> None:
        self.base_lr = base_lr
        self.start_lr = start_lr
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.schedule = schedule

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            lr = self.start_lr + (self.base_lr - self.start_lr) * step / self.warmup_steps
            return lr / self.base_lr
        if self.schedule == "constant":
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


@dataclass
class BatchStats:
    n: int
    correct: int
    terms: dict[str, float]  # per-batch means


def accumulate_batch(
    model: nn.Module,
    method: Method,
    batch: dict[str, Any],
    ctx: TrainContext,
    group_size: int,
) -> BatchStats:
    """Forward one loader batch, add its share ``b / group_size`` of the loss gradient."""
    clip = batch["clip"].to(ctx.device, non_blocking=True)
    labels = batch["label"].to(ctx.device, non_blocking=True)
    if method.needs_input_grad:
        clip.requires_grad_(True)
    batch = {**batch, "clip": clip, "label": labels}
    if "mask" in batch:
        batch["mask"] = batch["mask"].to(ctx.device, non_blocking=True)
    logits = method.forward(model, clip, ctx)
    terms = {"ce": method.ce_weight * weighted_ce(logits, labels, ctx.class_weights)}
    for name, value in method.loss_terms(model, batch, logits, ctx).items():
        if name in terms:
            raise TrainingError(f"method {method.name} returns a loss term named {name!r} twice")
        terms[name] = value
    values = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).cpu()
    for name, value in zip(terms, values.tolist(), strict=True):
        if not math.isfinite(value):
            raise TrainingError(
                f"loss term {name!r} is {value} (epoch {ctx.epoch + 1}, loader batch "
                f"{ctx.global_batch}); training stopped, the last good checkpoint is kept"
            )
    b = clip.shape[0]
    (sum(terms.values()) * (b / group_size)).backward()
    correct = int((logits.detach().argmax(1) == labels).sum())
    return BatchStats(n=b, correct=correct, terms=dict(zip(terms, values.tolist(), strict=True)))


# --- RNG and checkpoints ---------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors and plain types (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": py_version,
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    state = load_weights(path, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FlowguideError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return state


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_fingerprint(
    manifest: Path, masks: list[Path], method: Method, num_samples: int, options: Mapping
) -> str:
    """Identifies what a resumable state was trained on; a mismatch means start afresh."""
    described = {
        "method": method.name,
        "method_options": method.options,
        "T": num_samples,
        "options": {k: v for k, v in options.items() if k not in NOT_FINGERPRINTED},
        "manifest": file_sha256(manifest),
        "masks": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in masks],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


# --- processes --------------------------------------------------------------------------------


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


# --- the run ---------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int  # epochs trained by this call (0 when everything was already done)
    resumed_from: int
    metrics: list[dict[str, Any]]
    model: nn.Module
    world_size: int = 1


def _loader(
    dataset: ClipDataset,
    options: Mapping,
    epoch: int,
    batches: list[list[int]],
    device: torch.device,
) -> DataLoader:
    """A loader over the given batches of dataset positions, in order."""
    dataset.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=options["num_workers"],
        worker_init_fn=worker_init_fn,
        pin_memory=device.type == "cuda",
    )


def _eval_loader(dataset: ClipDataset, options: Mapping, epoch: int, device) -> DataLoader:
    b = options["loader_batch_size"]
    order = list(range(len(dataset)))
    return _loader(dataset, options, epoch, [order[s : s + b] for s in range(0, len(order), b)],
                   device)  # fmt: skip


def _init_model(spec: SlowFastSpec, method: Method, options: Mapping) -> tuple[nn.Module, str]:
    model = build_slowfast(spec)
    init = "random"
    if method.init == "kinetics" and options["model"]["kinetics"]:
        load_kinetics(model, options["model"]["kinetics_checkpoint"])
        init = "kinetics"
    elif method.init == "kinetics":
        log.warning(
            "method %s asks for Kinetics-400 init; train.model.kinetics is false: random",
            method.name,
        )
    return method.wrap_model(model), init


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


def write_outputs(out_dir: Path, metrics: list[dict[str, Any]], device: torch.device) -> None:
    atomic_write_text(out_dir / "metrics.csv", pd.DataFrame(metrics).to_csv(index=False))
    seconds = [m["seconds"] for m in metrics]
    clips = [m["clips_per_second"] for m in metrics]
    timing = {
        "device": str(device),
        "epochs": len(metrics),
        "seconds_per_epoch": seconds,
        "median_seconds_per_epoch": statistics.median(seconds) if seconds else None,
        "clips_per_second": statistics.median(clips) if clips else None,
        "note": "median over epochs; epochs of earlier (resumed) runs keep their own timing",
    }
    atomic_write_text(out_dir / "timing.json", json.dumps(timing, indent=2) + "\n")


def train(
    manifest: str | os.PathLike,
    masks_dir: str | os.PathLike | None,
    method_name: str,
    num_samples: int,
    out_dir: str | os.PathLike,
    options: Mapping[str, Any] | None = None,
    device: str = "auto",
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train ``method_name`` with T = ``num_samples`` frames; outputs under ``out_dir``.

    ``stop_after_epochs`` ends this call early after that many epochs in total (as if the job
    were killed): the state stays in ``last.pt`` and the final outputs are not written.
    """
    options = train_options(options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ddp = distributed_from_env()
    dev = setup_distributed(device, ddp)
    method = create_method(method_name, options["method_options"])

    rows = read_manifest(manifest)
    train_rows = rows[rows["split"] == "train"].reset_index(drop=True)
    eval_rows = rows[rows["split"] == "test"].reset_index(drop=True)
    mask_files: list[Path] = []
    if method.needs_masks:
        if masks_dir is None:
            raise TrainingError(f"method {method.name} needs --masks-dir")
        train_rows, eval_rows = _keep_masked(train_rows, eval_rows, masks_dir, options, out_dir)
        mask_files = sorted(Path(masks_dir) / f"{s}.h5" for s in set(train_rows["shard"]))
    if train_rows.empty:
        raise TrainingError(f"{manifest}: no training clips")

    num_classes = options["num_classes"] or int(rows["label"].max()) + 1
    weights = class_weights(train_rows["label"], num_classes)
    spec = model_spec(options, num_classes)
    tspec = transform_spec(options, method)
    data_masks = masks_dir if method.needs_masks else None
    train_set = ClipDataset(
        train_rows, num_samples, ClipTransform(tspec, True), data_masks, options["seed"]
    )
    eval_set = ClipDataset(
        eval_rows, num_samples, ClipTransform(tspec, False), None, options["seed"]
    )

    torch.manual_seed(options["seed"])
    np.random.seed(options["seed"] % 2**32)
    random.seed(options["seed"])
    method.prepare(spec, len(train_set))
    model, init = _init_model(spec, method, options)
    model.to(dev)
    broadcast_state(model, ddp)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=options["lr"],
        momentum=options["momentum"],
        weight_decay=options["weight_decay"],
    )
    k = accumulation_steps(options["batch_size"], options["loader_batch_size"])
    groups = group_sizes(len(train_set), options["loader_batch_size"], k)
    if k % ddp.world_size:
        raise TrainingError(
            f"train.batch_size {options['batch_size']} must be a multiple of "
            f"{ddp.world_size} processes x train.loader_batch_size {options['loader_batch_size']}"
        )
    warmup_steps = math.ceil(options["warmup"]["batches"] / k)
    schedule = WarmupCosine(
        options["lr"],
        options["warmup"]["start_lr"],
        warmup_steps,
        len(groups) * options["epochs"],
        options["schedule"],
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    fingerprint = run_fingerprint(Path(manifest), mask_files, method, num_samples, options)
    static = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "method": method.name,
        "method_options": method.options,
        "init": init,
        "T": num_samples,
        "alpha": spec.alpha,
        "num_classes": num_classes,
        "model_spec": dataclasses.asdict(spec),
        "abn_spec": dataclasses.asdict(model.spec) if isinstance(model, ObjectABN) else None,
        "world_size": ddp.world_size,
        "transform": {
            k2: list(v) if isinstance(v, tuple) else v
            for k2, v in dataclasses.asdict(tspec).items()
        },
        "sampling": "dynamic temporal stride; eval offset 0; past-the-end indices clamped",
        "class_weights": weights,
        "train_options": dict(options),
    }
    metrics: list[dict[str, Any]] = []
    start_epoch = 0
    state_path = out_dir / STATE_NAME
    if state_path.exists():
        state = load_checkpoint(state_path)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            method.load_state_dict(state["method_state"])
            set_rng_state(state["rng"])
            metrics = list(state["metrics"])
            start_epoch = int(state["epoch"])
            log.info("resuming %s from epoch %d", state_path, start_epoch)
        else:
            log.warning("%s was trained on other inputs or options: starting afresh", state_path)

    ctx = TrainContext(
        alpha=spec.alpha,
        num_classes=num_classes,
        class_weights=weights.to(dev),
        device=dev,
        gather=ddp.gather,
    )
    writer = _tensorboard(out_dir, options) if ddp.is_main else None
    end_epoch = (
        options["epochs"]
        if stop_after_epochs is None
        else min(stop_after_epochs, options["epochs"])
    )
    model.train()
    for epoch in range(start_epoch, end_epoch):
        ctx.epoch = epoch
        ctx.global_batch = epoch * math.ceil(len(train_set) / options["loader_batch_size"])
        order = epoch_order(len(train_set), options["seed"], epoch, shuffle=True)
        mine, per_group, sizes = batch_plan(
            len(train_set), options["loader_batch_size"], k, ddp.world_size, ddp.rank, order
        )
        row = run_epoch(
            model,
            method,
            optimizer,
            scheduler,
            _loader(train_set, options, epoch, mine, dev),
            per_group,
            sizes,
            ctx,
            ddp,
        )
        every = options["eval_every"]
        if every and (epoch + 1) % every == 0 and len(eval_set) and ddp.is_main:
            row["val_accuracy"] = evaluate_accuracy(
                model, method, _eval_loader(eval_set, options, epoch, dev), ctx
            )
        method.end_epoch(ctx)
        metrics.append(row)
        log.info(
            "epoch %d/%d: %s",
            epoch + 1,
            options["epochs"],
            ", ".join(f"{k2} {v:.4g}" for k2, v in row.items() if k2 != "epoch"),
        )
        if writer is not None:
            for name, value in row.items():
                if name != "epoch":
                    writer.add_scalar(f"train/{name}", value, epoch + 1)
            writer.flush()
        if not ddp.is_main:
            ddp.barrier()  # process 0 writes; all leave the epoch together
            continue
        save_checkpoint(
            state_path,
            {
                **static,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "method_state": method.state_dict(),
                "metrics": metrics,
            },
        )
        atomic_write_text(out_dir / "metrics.csv", pd.DataFrame(metrics).to_csv(index=False))
        ddp.barrier()
    if writer is not None:
        writer.close()

    epochs_run = max(0, end_epoch - start_epoch)
    if end_epoch == options["epochs"] and ddp.is_main:
        if not state_path.exists():  # nothing trained and nothing to resume: should not happen
            raise TrainingError(f"{state_path}: no training state to finish from")
        final = load_checkpoint(state_path)
        save_checkpoint(out_dir / FINAL_NAME, final)
        write_outputs(out_dir, metrics, dev)
    ddp.barrier()
    return TrainResult(out_dir, epochs_run, start_epoch, metrics, model, ddp.world_size)


def _keep_masked(train_rows: pd.DataFrame, eval_rows: pd.DataFrame, masks_dir, options, out_dir):
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


def _tensorboard(out_dir: Path, options: Mapping):
    if not options["tensorboard"]:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


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
) -> dict[str, Any]:
    """One epoch: for each optimiser group, this process's ``per_group[g]`` loader batches (each
    scaled by b / ``sizes[g]``), the gradients summed over the processes, one optimiser step."""
    ddp = ddp or Distributed()
    start = time.perf_counter()
    sums: dict[str, float] = defaultdict(float)
    n = correct = 0
    lr = optimizer.param_groups[0]["lr"]
    optimizer.zero_grad(set_to_none=True)
    batches = iter(loader)
    running_stats = RunningStatsSync(model, ddp)
    bar = tqdm(total=len(loader), desc=f"epoch {ctx.epoch + 1}", unit="batch", leave=False,
               disable=None if ddp.is_main else True)  # fmt: skip
    for count, size in zip(per_group, sizes, strict=True):
        running_stats.begin()
        for _ in range(count):
            stats = accumulate_batch(model, method, next(batches), ctx, size)
            ctx.global_batch += 1
            n += stats.n
            correct += stats.correct
            for name, value in stats.terms.items():
                sums[name] += value * stats.n
            bar.update(1)
            bar.set_postfix(loss=f"{sum(stats.terms.values()):.3f}")
        sync_gradients(model, ddp)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        running_stats.finish()
        method.end_step(ctx)
    bar.close()
    seconds = time.perf_counter() - start
    totals = reduce_sums({"n": n, "correct": correct, **{f"t_{k}": v for k, v in sums.items()}},
                         ddp)  # fmt: skip
    n, correct = int(totals.pop("n")), int(totals.pop("correct"))
    sums = {key[2:]: v for key, v in totals.items()}
    row: dict[str, Any] = {"epoch": ctx.epoch + 1, "loss": sum(sums.values()) / max(1, n)}
    row.update({f"loss_{name}": total / max(1, n) for name, total in sums.items()})
    row.update(
        {
            "accuracy": correct / max(1, n),
            "lr": lr,
            "seconds": seconds,
            "clips_per_second": n / seconds,
        }
    )
    extra = ddp.gather(method.epoch_metrics())
    for name in dict.fromkeys(key for e in extra for key in e):
        row[name] = float(np.mean([e[name] for e in extra if name in e]))
    return row
