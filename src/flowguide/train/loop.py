"""The one training entry point: ``train(...)`` for a (method, T) pair.

Optimisation (thesis Section 4.6): SGD (lr 0.1, momentum 0.9, weight decay 1e-4); linear
warm-up from ``warmup.start_lr`` to ``lr`` over the optimiser steps that cover the first
``warmup.batches`` loader batches, then ``lr`` constant (the thesis gives no decay;
``lr_schedule: cosine`` decays to 0 over the remaining optimiser steps). The optimiser batch
B is reached by gradient accumulation over ``k = B / B_l`` loader batches; the last group of an
epoch may be shorter.

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
import logging
import math
import os
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from flowguide.clips.dataset import (
    ClipDataset,
)
from flowguide.clips.transforms import ClipTransform
from flowguide.modeling.abn import ObjectABN
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, load_kinetics
from flowguide.train.checkpoint import (
    CHECKPOINT_FORMAT,
    FINAL_NAME,
    STATE_NAME,
    load_checkpoint,
    load_resumable_state,
    rng_state,
    run_fingerprint,
    save_checkpoint,
    set_rng_state,
)
from flowguide.train.clipset import log_repeated_slots, select_training_clips
from flowguide.train.distributed import broadcast_state, distributed_from_env, setup_distributed
from flowguide.train.epoch import evaluate_accuracy, run_epoch
from flowguide.train.errors import TrainingError
from flowguide.train.loader import EpochBatches, make_loader
from flowguide.train.memory import (
    enable_activation_checkpointing,
    set_cudnn_benchmark,
    to_channels_last,
)
from flowguide.train.methods import Method, TrainContext, create_method
from flowguide.train.options import (
    model_spec,
    resolve_loader_batch_size,
    train_options,
    transform_spec,
)
from flowguide.train.outputs import progress_line, tensorboard_writer, write_outputs
from flowguide.train.precision import Precision
from flowguide.train.schedule import (
    LRSchedule,
    accumulation_steps,
    batch_plan,
    epoch_order,
    group_sizes,
)
from flowguide.train.step import class_weights
from flowguide.utils.atomic import atomic_write_text
from flowguide.utils.manifest import read_manifest

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int  # epochs trained by this call (0 when everything was already done)
    resumed_from: int
    metrics: list[dict[str, Any]]
    model: nn.Module
    world_size: int = 1


def _eval_loader(dataset: ClipDataset, options: Mapping, epoch: int, device) -> DataLoader:
    """The test split in order (rare: train.eval_every), workers not kept."""
    b = options["loader_batch_size"]
    sampler = EpochBatches()
    sampler.set(
        epoch, [list(range(s, min(s + b, len(dataset)))) for s in range(0, len(dataset), b)]
    )
    return make_loader(dataset, sampler, options["num_workers"], device, persistent=False)


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
    options = resolve_loader_batch_size(train_options(options), method_name, num_samples)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ddp = distributed_from_env()
    dev = setup_distributed(device, ddp)
    method = create_method(method_name, options["method_options"])

    rows = read_manifest(manifest)
    train_rows = rows[rows["split"] == "train"].reset_index(drop=True)
    eval_rows = rows[rows["split"] == "test"].reset_index(drop=True)
    train_rows, eval_rows, mask_files, clips = select_training_clips(
        train_rows, eval_rows, method, masks_dir, options, out_dir
    )
    if train_rows.empty:
        raise TrainingError(f"{manifest}: no training clips")

    num_classes = options["num_classes"] or int(rows["label"].max()) + 1
    weights = class_weights(train_rows["label"], num_classes)
    spec = model_spec(options, num_classes)
    tspec = transform_spec(options, method)
    data_masks = masks_dir if method.needs_masks else None
    sampling = options["sampling"]
    train_set = ClipDataset(
        train_rows, num_samples, ClipTransform(tspec, True), data_masks, options["seed"], sampling
    )
    eval_set = ClipDataset(
        eval_rows, num_samples, ClipTransform(tspec, False), None, options["seed"], sampling
    )
    log_repeated_slots(train_rows, num_samples, sampling)

    torch.manual_seed(options["seed"])
    np.random.seed(options["seed"] % 2**32)
    random.seed(options["seed"])
    method.prepare(spec, len(train_set))
    model, init = _init_model(spec, method, options)
    model.to(dev)
    if options["channels_last"]:
        to_channels_last(model)
    if options["activation_checkpointing"]:
        log.info("activation checkpointing: %d stages", enable_activation_checkpointing(model))
    set_cudnn_benchmark(options["cudnn_benchmark"])
    precision = Precision(options["precision"], dev)
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
    schedule = LRSchedule(
        options["lr"],
        options["warmup"]["start_lr"],
        warmup_steps,
        len(groups) * options["epochs"],
        options["lr_schedule"],
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
        "sampling": sampling,  # clips.sampling: stride (thesis) | spread
        "class_weights": weights,
        "clips": clips,
        "train_options": dict(options),
    }
    metrics: list[dict[str, Any]] = []
    start_epoch = 0
    state_path = out_dir / STATE_NAME
    if state_path.exists():
        state = load_resumable_state(state_path)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            precision.load_state_dict(dict(state.get("grad_scaler") or {}))
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
    writer = tensorboard_writer(out_dir, options) if ddp.is_main else None
    end_epoch = (
        options["epochs"]
        if stop_after_epochs is None
        else min(stop_after_epochs, options["epochs"])
    )
    sampler = EpochBatches()  # one loader for the run: its workers persist across epochs
    loader = make_loader(
        train_set, sampler, options["num_workers"], dev, options["prefetch_factor"]
    )
    model.train()
    for epoch in range(start_epoch, end_epoch):
        ctx.epoch = epoch
        ctx.global_batch = epoch * math.ceil(len(train_set) / options["loader_batch_size"])
        order = epoch_order(len(train_set), options["seed"], epoch, shuffle=True)
        mine, per_group, sizes = batch_plan(
            len(train_set), options["loader_batch_size"], k, ddp.world_size, ddp.rank, order
        )
        train_set.set_epoch(epoch)
        sampler.set(epoch, mine)
        row = run_epoch(
            model,
            method,
            optimizer,
            scheduler,
            loader,
            per_group,
            sizes,
            ctx,
            ddp,
            precision,
            options["channels_last"],
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
        if ddp.is_main:  # one short line per epoch for the terminal (the rule shows these)
            print(progress_line(method_name, num_samples, row, options["epochs"]),
                  file=sys.stderr, flush=True)  # fmt: skip
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
                "grad_scaler": precision.state_dict(),
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
        write_outputs(out_dir, metrics, dev, final.get("clips", clips))
    ddp.barrier()
    return TrainResult(out_dir, epochs_run, start_epoch, metrics, model, ddp.world_size)
