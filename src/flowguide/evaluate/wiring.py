"""The thin layer from a training run's checkpoint to the evaluation core: the rebuilt model,
its GradCAM, the deterministic test loader (the clips stage's evaluation transform)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from flowguide.clips.dataset import evaluation_datasets
from flowguide.evaluate.evaluation import Batch
from flowguide.evaluate.stage import loader_batches, slowfast_cam_fn
from flowguide.modeling.trained import load_trained
from flowguide.utils.device import resolve_device
from flowguide.utils.manifest import read_manifest

CHECKPOINT_NAME = "checkpoint.pt"
EVAL_BATCH = 4


@dataclass
class EvaluationInputs:
    model_fn: Callable[[torch.Tensor], torch.Tensor]
    batches: Iterator[Batch]
    num_classes: int
    total: int  # number of batches
    alpha: int
    cam_fn: Callable
    extra_maps_fn: Callable | None
    flops_model: nn.Module


def load_for_evaluation(
    train_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    masks_dir: str | os.PathLike | None,
    device: str = "auto",
    split: str = "test",
) -> EvaluationInputs:
    trained = load_trained(Path(train_dir) / CHECKPOINT_NAME, resolve_device(device))
    rows = read_manifest(manifest)
    rows = rows[rows["split"] == split].reset_index(drop=True)
    datasets = evaluation_datasets(rows, trained.T, trained.transform, masks_dir, trained.sampling)
    loaders = [DataLoader(d, batch_size=EVAL_BATCH, shuffle=False) for d in datasets]
    device_batches = (
        (clips.to(trained.device), labels, names, masks)
        for clips, labels, names, masks in itertools.chain(*map(loader_batches, loaders))
    )
    return EvaluationInputs(
        model_fn=trained.model_fn,
        batches=device_batches,
        num_classes=trained.num_classes,
        total=sum(len(loader) for loader in loaders),  # batches: what the progress bar steps
        alpha=trained.alpha,
        cam_fn=slowfast_cam_fn(trained.backbone, trained.alpha, trained.model_fn),
        extra_maps_fn=trained.attention_maps if trained.abn else None,
        flops_model=trained.model,
    )
