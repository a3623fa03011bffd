"""One evaluation job: results/eval/{run}/T{T}/ from a trained model and the test batches.

``evaluate_run`` is what the thin checkpoint wiring calls once it has rebuilt the model and the
test loader; everything here works on callables and plain files, so it is tested without the
training code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from flowguide.evaluate.evaluation import (
    Batch,
    CamFn,
    ExtraMapsFn,
    ModelFn,
    evaluate,
    metrics_document,
    write_outputs,
)
from flowguide.evaluate.metrics import (
    DEFAULT_THRESHOLD,
    FLOPS_CONVENTION,
    count_gflops,
    count_parameters,
    cue_reliance,
    read_clips_per_epoch,
    training_cost,
)
from flowguide.modeling.slowfast import forward_clip, pack_pathways
from flowguide.utils.failures import FlowguideError

log = logging.getLogger("flowguide")

EVAL_DEFAULTS: dict[str, Any] = {
    "threshold": DEFAULT_THRESHOLD,  # map-vs-mask binarisation, see metrics.OVERLAP_CONVENTION
    "n_saved_maps": 4,  # clips whose maps go to cams.h5 (Figure 5.3)
}


def loader_batches(loader: Iterable[Mapping[str, Any]]) -> Iterator[Batch]:
    """Adapt collated dataset items (clip, label, vid_name[, mask]) to evaluation batches."""
    for item in loader:
        yield item["clip"], torch.as_tensor(item["label"]), list(item["vid_name"]), item.get("mask")


def slowfast_gflops(model: nn.Module, clip_shape: tuple[int, ...], alpha: int) -> float:
    """GMACs of one (C, T, H, W) clip through a SlowFast (or a model taking its pathway list)."""
    device = next(model.parameters()).device
    clip = torch.zeros(1, *clip_shape, device=device)
    return count_gflops(model, (pack_pathways(clip, alpha),))


def slowfast_cam_fn(
    model: nn.Module, alpha: int, model_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> CamFn:
    """GradCAM of the true label per pathway at the last residual stage (flowguide.modeling).

    ``model`` is the SlowFast whose stages are hooked; ``model_fn`` computes the logits when a
    wrapper (the ABN attention branch) sits around it. Maps come back at the stage's own
    (t, h, w); the evaluation resizes them to the mask.
    """
    from flowguide.modeling.gradcam import PathwayRecorder, pathway_gradcam

    def logits_of(clips: torch.Tensor) -> torch.Tensor:
        return model_fn(clips) if model_fn is not None else forward_clip(model, clips, alpha)

    def cam_fn(clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad(), PathwayRecorder(model) as recorder:
            logits = logits_of(clips)
            activations = recorder.take()
            sizes = [tuple(a.shape[2:]) for a in activations]
            slow, fast = pathway_gradcam(logits, labels, activations, sizes, create_graph=False)
        return slow.detach(), fast.detach()

    return cam_fn


def cost_fields(train_dir: str | os.PathLike | None) -> dict[str, Any]:
    """metrics.json's training_cost from results/train/{run}/T{T}/metrics.csv (+ timing.json)."""
    if train_dir is None:
        return {"training_cost": None, "training_cost_missing": "no training folder given"}
    train_dir = Path(train_dir)
    log_path = train_dir / "metrics.csv"
    if not log_path.exists():
        return {"training_cost": None, "training_cost_missing": f"{log_path} does not exist"}
    cost = training_cost(log_path, read_clips_per_epoch(train_dir / "timing.json"))
    return {
        "training_cost": {
            "epochs": cost.epochs,
            "hours_per_epoch": cost.hours_per_epoch,
            "seconds_per_clip": cost.seconds_per_clip,
            "clips_per_epoch": cost.clips_per_epoch,
            "source": f"{log_path} column {cost.seconds_column!r}, mean over epochs",
        }
    }


def cue_fields(predictions: pd.DataFrame, synth_clips: str | os.PathLike | None) -> dict[str, Any]:
    """metrics.json's cue block on SynthDive (clips.csv given), else None."""
    if synth_clips is None:
        return {"cue": None}
    path = Path(synth_clips)
    if not path.exists():
        raise FlowguideError(f"{path}: SynthDive clips table does not exist")
    return {"cue": cue_reliance(predictions, pd.read_csv(path))}


def evaluate_run(
    out_dir: str | os.PathLike,
    run: Mapping[str, Any],
    model_fn: ModelFn,
    batches: Iterable[Batch],
    num_classes: int,
    *,
    cam_fn: CamFn | None = None,
    extra_maps_fn: ExtraMapsFn | None = None,
    flops_model: nn.Module | None = None,
    alpha: int = 4,
    train_dir: str | os.PathLike | None = None,
    synth_clips: str | os.PathLike | None = None,
    options: Mapping[str, Any] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """Evaluate, add GFLOPs/parameters, training cost and cue reliance; write the outputs.

    ``run`` holds method (the run name), base_method, T and params (sweep parameters).
    GFLOPs are counted on ``flops_model`` at the first batch's clip shape (batch size 1).
    """
    opts = {**EVAL_DEFAULTS, **(options or {})}
    result = evaluate(
        model_fn, batches, num_classes, cam_fn=cam_fn, extra_maps_fn=extra_maps_fn,
        threshold=float(opts["threshold"]), n_saved_maps=int(opts["n_saved_maps"]), total=total,
    )  # fmt: skip
    extra: dict[str, Any] = {
        "gflops": None,
        "params_count": None,
        "flops_convention": FLOPS_CONVENTION,
    }
    if flops_model is not None and result.clip_shape is not None:
        extra["gflops"] = slowfast_gflops(flops_model, result.clip_shape, alpha)
        extra["params_count"] = count_parameters(flops_model)
    extra.update(cost_fields(train_dir))
    extra.update(cue_fields(result.predictions, synth_clips))
    document = metrics_document(result, run, extra)
    write_outputs(out_dir, result, document)
    log.info("evaluate %s T=%s: top-1 %.4f on %d clips", run["method"], run["T"],
             result.classification.top1, len(result.predictions))  # fmt: skip
    return document
