"""Evaluation metrics: pure functions on arrays and tensors, each tested on hand-computed values.

Conventions (also written into metrics.json):
- Accuracy is top-1 over the test clips (torchmetrics, average "micro"); per-class accuracy is
  recall per true class (average "none"), NaN for a class with no test clip.
- Map-vs-mask overlap: a map (GradCAM of one pathway, or an attention map) is resized to the
  mask's (T, H, W) by trilinear interpolation, min-max normalised to [0, 1] over the whole clip
  (so frames the model ignores stay low, as in the thesis' Figure 5.3), and binarised at
  ``threshold`` (default 0.5: pixel >= 0.5 counts as attended). IoU = |P & M| / |P | M| and
  Dice = 2 |P & M| / (|P| + |M|) over the whole clip volume; both are NaN when map and mask are
  both empty (undefined, counted separately, never averaged in). The explain stage reports this
  same overlap (this function) as ``minmax_iou``/``minmax_dice``, beside its ``topshare_*``
  convention (top share of voxels), so the two stages' numbers are comparable by name.
- Map entropy: the map clipped at 0 and divided by its sum is a distribution over its own
  (t, h, w) cells; its Shannon entropy divided by log(number of cells) lies in [0, 1]
  (1 = uniform attention, 0 = one cell). NaN for an all-zero map.
- GFLOPs: fvcore's FlopCountAnalysis, which counts one multiply-add as one flop, so the figure
  is giga multiply-adds (GMACs) of one clip, as in the SlowFast papers and the thesis.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from flowguide.utils.failures import FlowguideError

DEFAULT_THRESHOLD = 0.5
OVERLAP_CONVENTION = (
    "map resized to the mask's (T,H,W) by trilinear interpolation, min-max normalised to [0,1] "
    "over the clip, pixel attended when >= threshold; IoU and Dice over the clip volume; "
    "NaN when both map and mask are empty"
)
ENTROPY_CONVENTION = "Shannon entropy of map/sum(map) (map clipped at 0) divided by log(cells)"
FLOPS_CONVENTION = "fvcore FlopCountAnalysis: one multiply-add counted as one flop (GMACs)"

# Column names the training log may use for the wall time of an epoch, in order of preference.
SECONDS_COLUMNS = ("seconds", "epoch_seconds", "seconds_per_epoch", "epoch_time_s", "time_s")
# Keys of timing.json that may hold the number of training clips seen per epoch.
CLIPS_KEYS = ("train_clips", "clips_per_epoch", "n_train_clips", "num_train_clips")


# --- classification --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationMetrics:
    top1: float
    per_class: np.ndarray  # (K,) accuracy per true class, NaN without support
    support: np.ndarray  # (K,) test clips per true class
    confusion: np.ndarray  # (K, K) rows = true class, columns = predicted class


def classification_metrics(
    scores: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> ClassificationMetrics:
    """Top-1, per-class accuracy and confusion matrix from (N, K) logits or probabilities."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if scores.ndim != 2 or scores.shape[1] != num_classes or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"scores (N, {num_classes}) and labels (N,) expected, got "
            f"{tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    if scores.shape[0] == 0:
        raise FlowguideError("no test clips to evaluate")
    top1 = MulticlassAccuracy(num_classes=num_classes, average="micro", top_k=1)(scores, labels)
    per_class = MulticlassAccuracy(num_classes=num_classes, average="none", top_k=1)(scores, labels)
    confusion = MulticlassConfusionMatrix(num_classes=num_classes)(scores, labels)
    support = confusion.sum(dim=1).numpy()
    per_class = per_class.numpy().astype(np.float64)
    per_class[support == 0] = np.nan  # torchmetrics reports 0 for a class it never saw
    return ClassificationMetrics(
        float(top1), per_class, support.astype(np.int64), confusion.numpy()
    )


# --- maps against masks ----------------------------------------------------------------------


def resize_map(saliency: torch.Tensor | np.ndarray, shape: Sequence[int]) -> torch.Tensor:
    """(t, h, w) map -> (T, H, W) by trilinear interpolation (identity when shapes agree)."""
    saliency = torch.as_tensor(saliency, dtype=torch.float32)
    if tuple(saliency.shape) == tuple(shape):
        return saliency
    out = F.interpolate(
        saliency[None, None], size=tuple(shape), mode="trilinear", align_corners=False
    )
    return out[0, 0]


def normalise_map(saliency: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Min-max to [0, 1] over the whole map; a constant map becomes zeros (nothing stands out)."""
    saliency = torch.as_tensor(saliency, dtype=torch.float32)
    low, high = saliency.min(), saliency.max()
    if float(high - low) <= 0.0:
        return torch.zeros_like(saliency)
    return (saliency - low) / (high - low)


def overlap_scores(
    pred: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor
) -> tuple[float, float]:
    """(IoU, Dice) of two boolean volumes; (NaN, NaN) when both are empty."""
    pred = torch.as_tensor(pred, dtype=torch.bool)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if pred.shape != mask.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(mask.shape)}")
    inter = int((pred & mask).sum())
    union = int((pred | mask).sum())
    total = int(pred.sum()) + int(mask.sum())
    if union == 0:
        return math.nan, math.nan
    return inter / union, 2.0 * inter / total


def map_for_mask(saliency: torch.Tensor | np.ndarray, mask_shape: Sequence[int]) -> torch.Tensor:
    """The [0, 1] map compared with a mask: resized to the mask first, then normalised."""
    return normalise_map(resize_map(saliency, mask_shape))


def map_mask_overlap(
    saliency: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[float, float]:
    """(IoU, Dice) of a saliency map binarised at ``threshold`` against a (T, H, W) mask."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    attended = map_for_mask(saliency, mask.shape) >= threshold
    return overlap_scores(attended, mask)


def normalised_entropy(saliency: torch.Tensor | np.ndarray) -> float:
    """Normalised Shannon entropy in [0, 1] of a non-negative map; NaN for an all-zero map."""
    values = torch.as_tensor(saliency, dtype=torch.float64).clamp(min=0).flatten()
    total = float(values.sum())
    if total <= 0.0 or values.numel() < 2:
        return math.nan
    p = values[values > 0] / total
    return float(-(p * p.log()).sum()) / math.log(values.numel())


# --- cost ------------------------------------------------------------------------------------


def count_gflops(model: nn.Module, inputs: tuple[Any, ...]) -> float:
    """Giga multiply-adds of one forward pass at these inputs (fvcore; see FLOPS_CONVENTION)."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total()
    finally:
        model.train(was_training)
    return total / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class TrainingCost:
    epochs: int
    hours_per_epoch: float
    seconds_per_clip: float  # NaN when the number of clips per epoch is unknown
    clips_per_epoch: int | None
    seconds_column: str


def read_clips_per_epoch(timing_json: str | os.PathLike) -> int | None:
    """Training clips per epoch from timing.json (first key of CLIPS_KEYS present), else None."""
    path = Path(timing_json)
    if not path.exists():
        return None
    timing = json.loads(path.read_text())
    for key in CLIPS_KEYS:
        if timing.get(key) is not None:
            return int(timing[key])
    return None


def training_cost(
    metrics_csv: str | os.PathLike, clips_per_epoch: int | None = None
) -> TrainingCost:
    """Mean wall time per epoch (hours) and per training clip (seconds) from a training log.

    Clips per epoch: ``clips_per_epoch`` when given, else from the log's ``clips_per_second``
    column (clips = seconds * clips_per_second per epoch; seconds per clip = total seconds /
    total clips), else unknown (NaN).
    """
    path = Path(metrics_csv)
    if not path.exists():
        raise FlowguideError(f"{path}: training log does not exist")
    log = pd.read_csv(path)
    column = next((c for c in SECONDS_COLUMNS if c in log.columns), None)
    if column is None:
        raise FlowguideError(f"{path}: no epoch-time column (one of {', '.join(SECONDS_COLUMNS)})")
    seconds = pd.to_numeric(log[column], errors="coerce")
    if seconds.isna().all():
        raise FlowguideError(f"{path}: column {column!r} holds no epoch times")
    valid = seconds.notna()
    mean_seconds = float(seconds[valid].mean())
    if clips_per_epoch:
        per_clip = mean_seconds / clips_per_epoch
    elif "clips_per_second" in log.columns:
        clips = seconds[valid] * pd.to_numeric(log.loc[valid, "clips_per_second"], errors="coerce")
        clips_per_epoch = int(round(float(clips.mean())))
        per_clip = float(seconds[valid].sum() / clips.sum())
    else:
        per_clip = math.nan
    return TrainingCost(int(valid.sum()), mean_seconds / 3600.0, per_clip, clips_per_epoch, column)


# --- planted cue (SynthDive) -----------------------------------------------------------------


def _as_bool(series: pd.Series) -> pd.Series:
    text = series.astype(str).str.strip().str.lower()
    known = text.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if not known.all():
        raise FlowguideError(
            f"cue_agrees holds non-boolean values: {sorted(set(text[~known]))[:5]}"
        )
    return text.isin(["true", "1", "1.0"])


def cue_reliance(predictions: pd.DataFrame, clips: pd.DataFrame) -> dict[str, float | int]:
    """Accuracy on test clips whose planted cue agrees with the label vs those where it does not.

    ``predictions`` has vid_name, label, pred; ``clips`` (SynthDive clips.csv) has vid_name,
    cue_class, cue_agrees. ``gap`` = acc_cue_agrees - acc_cue_disagrees: how much accuracy
    depends on the cue; ``follows_cue`` = share of cue-disagreeing clips predicted as the cue's
    class (a model that reads only the cue scores 1).
    """
    missing = {"vid_name", "cue_class", "cue_agrees"} - set(clips.columns)
    if missing:
        raise FlowguideError(f"SynthDive clips table lacks columns {sorted(missing)}")
    merged = predictions.merge(clips[["vid_name", "cue_class", "cue_agrees"]], on="vid_name")
    if merged.empty:
        raise FlowguideError("no evaluated clip is listed in the SynthDive clips table")
    agrees = _as_bool(merged["cue_agrees"])
    correct = merged["pred"] == merged["label"]

    def share(values: pd.Series) -> float:
        return float(values.mean()) if len(values) else math.nan

    acc_agree, acc_disagree = share(correct[agrees]), share(correct[~agrees])
    return {
        "n_cue_agrees": int(agrees.sum()),
        "n_cue_disagrees": int((~agrees).sum()),
        "acc_cue_agrees": acc_agree,
        "acc_cue_disagrees": acc_disagree,
        "gap": acc_agree - acc_disagree,
        "follows_cue": share((merged["pred"] == merged["cue_class"])[~agrees]),
    }
