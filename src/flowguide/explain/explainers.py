"""Post-hoc video explainers of papers 003 (removal-based, model-agnostic) and 004 (SWAG-V).

Every explainer has the signature ``fn(model_fn, clip, target, options) -> ExplanationResult``:
``model_fn`` maps (N, C, T, H, W) normalised clips to (N, classes) logits, ``clip`` is one
(C, T, H, W) clip, ``target`` a class index, and the map is (T, H, W), higher = more relevant.
Perturbed clips go through the model ``batch_size`` at a time under ``torch.inference_mode()`` on
the clip's device. Removal fills with black in pixel space (003's choice for every method), scored
by the target's softmax probability (003: "model behaviour: prediction"; option ``output``).

Per-explainer options override the shared ones (``batch_size``, ``seed``, ``pixel_mean``,
``pixel_std``, ``segmentation``, ``output``); see ``DEFAULT_OPTIONS``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from flowguide.explain.core import (
    CountingModel,
    ExplanationResult,
    ModelFn,
    as_int_tuple,
    black_fill,
    blend,
    finish,
    segments_to_map,
    split_batches,
)
from flowguide.explain.linear import WeightedLinearSurrogate
from flowguide.explain.rise import rise_3d
from flowguide.explain.segmentation import clip_segments
from flowguide.explain.swag import swag_v

log = logging.getLogger("flowguide.explain")

Explainer = Callable[[ModelFn, Tensor, int, dict[str, Any]], ExplanationResult]

COMMON_DEFAULTS: dict[str, Any] = {
    "batch_size": 16,
    "seed": 0,
    "output": "prob",
    "segmentation": {"method": "slic", "n_segments": 200, "compactness": 10.0},
}

# 003, Table 2 and Section 4.4: about 200 SLIC regions, 5x as many samples (1000), black fill;
# RISE on a 4x7x7 grid; sampled occlusion over exactly 7x13x13 = 1183 windows.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "lime": {"n_samples": 1000, "kernel_width": 0.25, "alpha": 1.0},
    "kernel_shap": {"n_samples": 1000},
    "rise": {"n_samples": 1000, "grid": (4, 7, 7), "p": 0.5},
    "loco": {},
    "univariate": {},
    "occlusion": {"positions": (7, 13, 13), "window_scale": 1.0, "window": None, "stride": None},
    # 004: guided backprop, 120 supervoxels, w_c = 20, w_g = 9, SWAG-V_{I+G}.
    "swag_v": {"n_segments": 120, "w_c": 20.0, "w_g": 9.0, "variant": "I+G", "iterations": 10},
}


def resolve_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < shared options < ``options[name]`` (a per-explainer section)."""
    options = dict(options or {})
    merged = {**COMMON_DEFAULTS, **DEFAULT_OPTIONS.get(name, {})}
    merged.update({k: v for k, v in options.items() if k not in EXPLAINERS and k != "explainers"})
    merged.update(options.get(name) or {})
    return merged


# --------------------------------------------------------------------------- captum-based


def _segment_feature_mask(clip: Tensor, options: dict[str, Any]) -> tuple[Tensor, int]:
    segments = clip_segments(clip, options)
    return segments[None, None], int(segments.max().item()) + 1  # (1, 1, T, H, W)


def lime_3d(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """3D LIME: SLIC supervoxels on/off with p = 0.5, a weighted ridge surrogate (captum Lime).

    Sample weights are lime_image's kernel: sqrt(exp(-d^2 / width^2)) of the cosine distance d
    between the on/off vector and the all-on vector, width 0.25.
    """
    from captum.attr import Lime

    started = time.perf_counter()
    torch.manual_seed(int(options["seed"]))
    counter = CountingModel(model_fn, options["output"])
    feature_mask, _ = _segment_feature_mask(clip, options)
    width = float(options["kernel_width"])

    def similarity(_orig: Tensor, _pert: Tensor, interp: Tensor, **_: Any) -> Tensor:
        z = interp.float().reshape(-1)
        cos = z.sum() / (z.norm() * math.sqrt(z.numel())).clamp_min(1e-12)
        return torch.sqrt(torch.exp(-((1 - cos) ** 2) / width**2))

    lime = Lime(
        counter,
        interpretable_model=WeightedLinearSurrogate(options["alpha"]),
        similarity_func=similarity,
    )
    return _surrogate_explanation(lime, counter, clip, target, options, feature_mask, started)


def _surrogate_explanation(
    method: Any,
    counter: CountingModel,
    clip: Tensor,
    target: int,
    options: dict[str, Any],
    feature_mask: Tensor,
    started: float,
) -> ExplanationResult:
    """Run a captum surrogate method (Lime, KernelShap) over segments, black fill, in batches;
    each segment's coefficient becomes its voxels' relevance."""
    coefs = method.attribute(
        clip[None],
        target=target,
        baselines=black_fill(clip, options)[None],
        feature_mask=feature_mask,
        n_samples=int(options["n_samples"]),
        perturbations_per_eval=int(options["batch_size"]),
        return_input_shape=False,
    )
    relevance = segments_to_map(coefs.reshape(-1), feature_mask[0, 0])
    n_features = int(feature_mask.max()) + 1
    return finish(relevance, counter, started, n_features=n_features)


def kernel_shap_3d(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """3D Kernel SHAP over SLIC supervoxels (captum KernelShap, exact weighted least squares)."""
    from captum.attr import KernelShap

    started = time.perf_counter()
    torch.manual_seed(int(options["seed"]))
    counter = CountingModel(model_fn, options["output"])
    feature_mask, _ = _segment_feature_mask(clip, options)
    shap = KernelShap(counter)
    shap.interpretable_model = WeightedLinearSurrogate(0.0)
    return _surrogate_explanation(shap, counter, clip, target, options, feature_mask, started)


def occlusion_windows(
    shape: tuple[int, int, int], options: dict[str, Any]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Window, stride and window count per (T, H, W) axis for sampled occlusion.

    Explicit ``window``/``stride`` win. Otherwise exactly ``positions[a]`` windows per axis
    (003, Table 2: a 7 x 13 x 13 grid = 1,183 windows; 003 gives the count, not the window):
    stride = floor(size / (n - 1 + window_scale)) and window = size - (n - 1) * stride, so the
    first window starts at 0, the last ends at the border, and the window is about
    ``window_scale`` strides (1: the cells of a 3D grid, overlapping by under n voxels). An axis
    shorter than ``positions[a]`` gets one window per voxel (size positions).
    """
    if options.get("window") is not None:
        window = as_int_tuple(options["window"], 3, "window")
        stride = as_int_tuple(options.get("stride") or options["window"], 3, "stride")
        window = tuple(min(w, s) for w, s in zip(window, shape, strict=True))
    else:
        positions = as_int_tuple(options["positions"], 3, "positions")
        scale = float(options["window_scale"])
        if scale < 1 or min(positions) < 1:
            raise ValueError(f"occlusion needs positions >= 1 and window_scale >= 1: {options}")
        counts = [min(n, s) for n, s in zip(positions, shape, strict=True)]
        stride = tuple(
            max(1, math.floor(s / (n - 1 + scale))) if n > 1 else s
            for s, n in zip(shape, counts, strict=True)
        )
        window = tuple(s - (n - 1) * st for s, n, st in zip(shape, counts, stride, strict=True))
    counts = tuple(
        math.ceil((s - w) / st) + 1 for s, w, st in zip(shape, window, stride, strict=True)
    )  # captum's count of window positions per axis
    return window, stride, counts


def sampled_occlusion_3d(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """3D Sampled Occlusion Sensitivity: black cuboids slid with a stride (captum Occlusion).

    A voxel's relevance is the mean drop of the target score over the windows covering it.
    """
    from captum.attr import Occlusion

    started = time.perf_counter()
    counter = CountingModel(model_fn, options["output"])
    c, *thw = clip.shape
    window, stride, counts = occlusion_windows(tuple(thw), options)
    log.info(
        "occlusion: %s = %d windows of %s voxels, stride %s",
        " x ".join(map(str, counts)), math.prod(counts), window, stride,
    )  # fmt: skip
    fill = black_fill(clip, options).expand_as(clip)[None].contiguous()
    attr = Occlusion(counter).attribute(
        clip[None],
        sliding_window_shapes=(c, *window),
        strides=(c, *stride),
        target=target,
        baselines=fill,
        perturbations_per_eval=int(options["batch_size"]),
    )
    return finish(
        attr[0].mean(0),
        counter,
        started,
        window=window,
        stride=stride,
        positions=counts,
        n_features=math.prod(counts),
    )


# --------------------------------------------------------------------------- written here


def _segment_keep_masks(segments: Tensor, ids: Tensor, keep_only: bool) -> Tensor:
    """(len(ids), T, H, W): keep only segment k (univariate) or all but segment k (LOCO)."""
    hit = segments[None] == ids[:, None, None, None]
    return hit if keep_only else ~hit


def _per_segment_scores(
    counter: CountingModel, clip: Tensor, target: int, options: dict[str, Any], keep_only: bool
) -> tuple[Tensor, Tensor]:
    segments = clip_segments(clip, options)
    n_seg = int(segments.max().item()) + 1
    fill = black_fill(clip, options)
    scores = []
    with torch.inference_mode():
        for ids in split_batches(
            torch.arange(n_seg, device=clip.device), int(options["batch_size"])
        ):
            keep = _segment_keep_masks(segments, ids, keep_only)
            scores.append(counter.scores(blend(clip, fill, keep))[:, target])
    return torch.cat(scores), segments


def loco_lv(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """LV LOCO: relevance of a segment = score(clip) - score(clip with that segment black)."""
    started = time.perf_counter()
    counter = CountingModel(model_fn, options["output"])
    base = counter.scores(clip[None])[0, target]
    scores, segments = _per_segment_scores(counter, clip, target, options, keep_only=False)
    relevance = segments_to_map(base - scores, segments)
    return finish(relevance, counter, started, n_features=len(scores))


def univariate_lv(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """LV Univariate Predictors: score(only that segment kept) - score(all black)."""
    started = time.perf_counter()
    counter = CountingModel(model_fn, options["output"])
    blank = black_fill(clip, options).expand_as(clip)
    empty = counter.scores(blank[None])[0, target]
    scores, segments = _per_segment_scores(counter, clip, target, options, keep_only=True)
    relevance = segments_to_map(scores - empty, segments)
    return finish(relevance, counter, started, n_features=len(scores))


# --------------------------------------------------------------------------- registry

EXPLAINERS: dict[str, Explainer] = {
    "lime": lime_3d,
    "kernel_shap": kernel_shap_3d,
    "rise": rise_3d,
    "loco": loco_lv,
    "univariate": univariate_lv,
    "occlusion": sampled_occlusion_3d,
    "swag_v": swag_v,
}


def register_explainer(name: str, fn: Explainer, defaults: Mapping[str, Any] | None = None) -> None:
    """Add an explainer (e.g. GradCAM from flowguide.modeling) under ``name``."""
    EXPLAINERS[name] = fn
    DEFAULT_OPTIONS[name] = dict(defaults or {})


def external_explainer(
    map_fn: Callable[[ModelFn, Tensor, int, dict[str, Any]], Tensor],
    forward_passes: int = 1,
    backward_passes: int = 1,
) -> Explainer:
    """Adapt a callable that returns only a (T, H, W) map (GradCAM: one forward, one backward)."""

    def run(
        model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
    ) -> ExplanationResult:
        started = time.perf_counter()
        relevance = map_fn(model_fn, clip, target, options)
        if tuple(relevance.shape) != tuple(clip.shape[1:]):
            raise ValueError(
                f"explainer map {tuple(relevance.shape)} != clip {tuple(clip.shape[1:])}"
            )
        return ExplanationResult(
            map=relevance.detach().to("cpu", torch.float32),
            forward_passes=forward_passes,
            backward_passes=backward_passes,
            seconds=time.perf_counter() - started,
        )

    return run


def explain(
    name: str,
    model_fn: ModelFn,
    clip: Tensor,
    target: int,
    options: Mapping[str, Any] | None = None,
) -> ExplanationResult:
    """Run the registered explainer ``name`` with its resolved options."""
    if name not in EXPLAINERS:
        raise KeyError(f"unknown explainer {name!r}; known: {sorted(EXPLAINERS)}")
    return EXPLAINERS[name](model_fn, clip, int(target), resolve_options(name, options))
