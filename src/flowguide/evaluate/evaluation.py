"""The evaluation loop and its output files, independent of how models and loaders are built.

The core takes callables, so checkpoints and data loaders are wired in a thin layer:

    model_fn(clips) -> logits                              clips (B, C, T, H, W)
    batches: iterable of (clips, labels, vid_names, masks) masks (B, T, H, W) bool or None
    cam_fn(clips, labels) -> (slow_map, fast_map)          (B, Ts, h, w), (B, T, h, w); GradCAM
                                                           of the true label's logit
    extra_maps_fn(clips) -> {name: (B, t, h, w)}           e.g. ABN's attention map

Outputs of one run (results/eval/{run}/T{T}/):

    metrics.json      every scalar, the per-class list and the conventions used
    predictions.csv   vid_name, label, pred, correct, prob_0 .. prob_{K-1}
    confusion.csv     rows = true class (column ``label``), columns pred_0 .. pred_{K-1}
    cam_overlap.csv   one row per clip and map: vid_name, label, pred, map, iou, dice, norm_entropy,
                      map_coverage (share of attended pixels), mask_coverage
    cams.h5           a few clips' maps at mask resolution, for the report's Figure 5.3
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from flowguide.evaluate.metrics import (
    DEFAULT_THRESHOLD,
    ENTROPY_CONVENTION,
    OVERLAP_CONVENTION,
    ClassificationMetrics,
    classification_metrics,
    map_for_mask,
    normalised_entropy,
    overlap_scores,
)
from flowguide.utils.atomic import atomic_path, atomic_write_text
from flowguide.utils.h5 import (
    create_video_group,
    write_frames_dataset,
    write_masks,
    write_shard,
)

Batch = tuple[torch.Tensor, torch.Tensor, Sequence[str], torch.Tensor | None]
ModelFn = Callable[[torch.Tensor], torch.Tensor]
CamFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
ExtraMapsFn = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]

CAM_PATHWAYS = ("slow", "fast")
OVERLAP_COLUMNS = [
    "vid_name",
    "label",
    "pred",
    "map",
    "iou",
    "dice",
    "norm_entropy",
    "map_coverage",
    "mask_coverage",
]


@dataclass
class SavedMaps:
    """One clip's maps (each (T, H, W) in [0, 1], at mask resolution) and its mask."""

    vid_name: str
    label: int
    pred: int
    maps: dict[str, np.ndarray]
    mask: np.ndarray
    rgb: np.ndarray | None = None  # (T, H, W, 3) uint8: the model's input, for the overlays


def display_frames(clip: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A (C, T, h, w) normalised input clip as (T, H, W, 3) uint8 at the mask's (T, H, W):
    min-max over the clip (undoes any per-channel normalisation up to contrast)."""
    clip = clip.detach().float().cpu()[:3]
    t, h, w = shape
    resized = torch.nn.functional.interpolate(
        clip[None], size=(t, h, w), mode="trilinear", align_corners=False
    )[0]
    low, high = resized.amin(), resized.amax()
    scaled = (resized - low) / (high - low).clamp_min(1e-8)
    return (scaled.permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)


@dataclass
class EvalResult:
    num_classes: int
    predictions: pd.DataFrame
    classification: ClassificationMetrics
    overlap: pd.DataFrame
    saved: list[SavedMaps] = field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    clip_shape: tuple[int, ...] | None = None  # (C, T, H, W) of the evaluated clips


def score_maps(
    maps: Mapping[str, torch.Tensor], mask: torch.Tensor, threshold: float
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Overlap rows of one clip's maps against its mask, and the [0, 1] maps that were compared."""
    rows, compared = [], {}
    for name, saliency in maps.items():
        saliency = saliency.detach().float().cpu()
        scaled = map_for_mask(saliency, mask.shape)
        attended = scaled >= threshold
        iou, dice = overlap_scores(attended, mask)
        rows.append(
            {
                "map": name,
                "iou": iou,
                "dice": dice,
                "norm_entropy": normalised_entropy(saliency),
                "map_coverage": float(attended.float().mean()),
                "mask_coverage": float(mask.float().mean()),
            }
        )
        compared[name] = scaled.numpy().astype(np.float16)
    return rows, compared


def evaluate(
    model_fn: ModelFn,
    batches: Iterable[Batch],
    num_classes: int,
    cam_fn: CamFn | None = None,
    extra_maps_fn: ExtraMapsFn | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    n_saved_maps: int = 4,
    total: int | None = None,
) -> EvalResult:
    """Run the model over the test batches; score its maps against the masks where given."""
    vid_names: list[str] = []
    labels: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    overlap_rows: list[dict[str, Any]] = []
    saved: list[SavedMaps] = []
    clip_shape = None
    for clips, batch_labels, names, masks in tqdm(
        batches, total=total, desc="evaluate", unit="batch"
    ):
        clip_shape = clip_shape or tuple(clips.shape[1:])
        with torch.no_grad():
            batch_probs = model_fn(clips).float().softmax(dim=1).cpu()
        batch_labels = torch.as_tensor(batch_labels).long().cpu()
        preds = batch_probs.argmax(dim=1)
        vid_names += list(names)
        labels.append(batch_labels)
        probs.append(batch_probs)
        if masks is None or (cam_fn is None and extra_maps_fn is None):
            continue
        maps: dict[str, torch.Tensor] = {}
        if cam_fn is not None:
            slow, fast = cam_fn(clips, batch_labels.to(clips.device))
            maps.update(slow=slow, fast=fast)
        if extra_maps_fn is not None:
            maps.update(extra_maps_fn(clips))
        for i, name in enumerate(names):
            mask = torch.as_tensor(masks[i]).bool().cpu()
            rows, compared = score_maps({k: v[i] for k, v in maps.items()}, mask, threshold)
            ident = {"vid_name": name, "label": int(batch_labels[i]), "pred": int(preds[i])}
            overlap_rows += [{**ident, **row} for row in rows]
            if len(saved) < n_saved_maps:
                rgb = display_frames(clips[i], tuple(mask.shape))
                saved.append(
                    SavedMaps(name, ident["label"], ident["pred"], compared, mask.numpy(), rgb)
                )
    all_probs = torch.cat(probs) if probs else torch.zeros(0, num_classes)
    all_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    classification = classification_metrics(all_probs, all_labels, num_classes)
    return EvalResult(
        num_classes=num_classes,
        predictions=predictions_table(vid_names, all_labels, all_probs),
        classification=classification,
        overlap=pd.DataFrame(overlap_rows, columns=OVERLAP_COLUMNS),
        saved=saved,
        threshold=threshold,
        clip_shape=clip_shape,
    )


def predictions_table(
    vid_names: list[str], labels: torch.Tensor, probs: torch.Tensor
) -> pd.DataFrame:
    preds = probs.argmax(dim=1) if len(probs) else torch.zeros(0, dtype=torch.long)
    table = pd.DataFrame(
        {
            "vid_name": vid_names,
            "label": labels.numpy(),
            "pred": preds.numpy(),
            "correct": (preds == labels).numpy(),
        }
    )
    for k in range(probs.shape[1]):
        table[f"prob_{k}"] = probs[:, k].numpy()
    return table


def overlap_summary(overlap: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per map: mean IoU, Dice and entropy over clips where they are defined, and the counts."""
    summary: dict[str, dict[str, float | int]] = {}
    for name, rows in overlap.groupby("map", sort=False):
        defined = rows["iou"].notna()
        summary[str(name)] = {
            "iou": _mean(rows.loc[defined, "iou"]),
            "dice": _mean(rows.loc[defined, "dice"]),
            "norm_entropy": _mean(rows["norm_entropy"].dropna()),
            "map_coverage": _mean(rows["map_coverage"]),
            "n_clips": int(len(rows)),
            "n_undefined": int((~defined).sum()),
        }
    return summary


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def metrics_document(
    result: EvalResult, run: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """metrics.json: ``run`` holds method (run name), base_method, T and params."""
    cls = result.classification
    per_class = [
        {"label": k, "accuracy": _finite(cls.per_class[k]), "support": int(cls.support[k])}
        for k in range(result.num_classes)
    ]
    document: dict[str, Any] = {
        "method": run["method"],
        "base_method": run.get("base_method", run["method"]),
        "T": int(run["T"]),
        "params": dict(run.get("params") or {}),
        "num_classes": result.num_classes,
        "n_clips": int(len(result.predictions)),
        "top1": cls.top1,
        "mean_class_accuracy": _finite(np.nanmean(cls.per_class)) if cls.support.any() else None,
        "per_class": per_class,
        "clip_shape": list(result.clip_shape) if result.clip_shape else None,
        "maps": overlap_summary(result.overlap),
        "map_threshold": result.threshold,
        "conventions": {"overlap": OVERLAP_CONVENTION, "norm_entropy": ENTROPY_CONVENTION},
    }
    document.update(extra or {})
    return document


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined values are written as null."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_outputs(
    out_dir: str | os.PathLike, result: EvalResult, document: Mapping[str, Any]
) -> None:
    """Write the five output files of one run, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "predictions.csv", result.predictions)
    confusion = pd.DataFrame(
        result.classification.confusion, columns=[f"pred_{k}" for k in range(result.num_classes)]
    )
    confusion.insert(0, "label", range(result.num_classes))
    _write_csv(out / "confusion.csv", confusion)
    _write_csv(out / "cam_overlap.csv", result.overlap)
    write_saved_maps(out / "cams.h5", result.saved, result.threshold, document)
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(dict(document)), indent=2) + "\n")


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_saved_maps(
    path: str | os.PathLike, saved: list[SavedMaps], threshold: float, run: Mapping[str, Any]
) -> None:
    """cams.h5: /videos/<vid_name>/<map> float16 (T, H, W) in [0, 1] and .../mask (packed)."""
    attrs = {
        "what": "saliency maps of a few test clips against their diver masks (thesis Figure 5.3)",
        "method": str(run.get("method")),
        "T": int(run.get("T", 0)),
        "threshold": threshold,
        "normalisation": OVERLAP_CONVENTION,
        "n_clips": len(saved),
    }
    with write_shard(path, attrs) as fh:
        for item in saved:
            group = create_video_group(fh, item.vid_name)
            group.attrs.update({"label": item.label, "pred": item.pred})
            for name, values in item.maps.items():
                write_frames_dataset(
                    group,
                    name,
                    values,
                    {
                        "shape": "(T, H, W) at the mask's resolution",
                        "value": "saliency in [0, 1], min-max per clip; attended at >= threshold",
                    },
                )
            write_masks(group, "mask", item.mask, {"what": "diver mask of the evaluated frames"})
            if item.rgb is not None:
                write_frames_dataset(
                    group, "rgb", item.rgb,
                    {"what": "model input frames (T, H, W, 3) uint8, min-max scaled over the clip"},
                )  # fmt: skip
