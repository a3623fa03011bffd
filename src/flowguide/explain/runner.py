"""Explain one clip with several explainers (and their selective versions) and score every map.

``explain_and_score`` is the library entry point the explain stage calls per clip; it returns one
flat row per map (explainer, cost, metrics) and the maps themselves. Explainers that remove
segments (LIME, Kernel SHAP, LOCO, univariate) share one segmentation of the clip per distinct
``segmentation`` setting (its time is the row's ``segmentation_seconds``, not in ``seconds``).
Weak localisation needs held-out clips to pick its thresholds: ``calibrate_localisation`` does
that over all clips' rows once they are in.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from flowguide.explain import metrics as M
from flowguide.explain.core import ExplanationResult, ModelFn
from flowguide.explain.explainers import explain, resolve_options
from flowguide.explain.segmentation import SEGMENT_USERS, SHARED_SEGMENTS, segment_clip
from flowguide.explain.selective import REGION_CONSTANT, VOXEL_SOURCE, selective_of

METRIC_DEFAULTS: dict[str, Any] = {
    "steps": 28,  # deletion/insertion steps (SWAG-V)
    "top_k": 0.1,  # topshare_*: share of voxels taken as the map's region
    "minmax_threshold": 0.5,  # minmax_*: the evaluate stage's binarisation of the scaled map
    "pointing_per_frame": False,
    "loc_iou": 0.5,  # weak localisation: a clip is a hit when its mean box IoU exceeds this
    "flow_threshold": 0.0,  # px/frame: a voxel "moves" above this flow magnitude (002: O > 0)
    "motion_centre": True,  # centre relevance around zero before R > 0 (002)
    "entropy_bins": 10,
    "faithfulness": True,  # deletion/insertion cost 2 * (steps + 1) forward passes per map
}
SELECTIVE_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "n_std": 4.0,  # 002's experiments
    "rule": "rising",  # 002: G_t > n sigma; "magnitude": |G_t| > n sigma
    "apply_to": None,
}


def score_map(
    model_fn: ModelFn,
    clip: Tensor,
    target: int,
    relevance: Tensor,
    options: Mapping[str, Any],
    mask: Tensor | np.ndarray | None = None,
    flow_magnitude: Tensor | None = None,
    motion_map: tuple[Tensor, Tensor | None] | None = None,
) -> dict[str, Any]:
    """Every metric of one map that its inputs allow (mask -> localisation, flow -> motion).

    ``motion_map``: (map, kept) whose centred relevance motion precision reads (a selective
    map's base and kept voxels); default: ``relevance`` itself. ``loc_curves`` holds the weak
    localisation box IoU at every alpha of each mode, for ``calibrate_localisation``."""
    m = {**METRIC_DEFAULTS, **(options.get("metrics") or {})}
    row: dict[str, Any] = {"entropy": M.map_entropy(relevance, int(m["entropy_bins"]))}
    if m["faithfulness"]:
        di = M.deletion_insertion(
            model_fn,
            clip,
            target,
            relevance,
            int(m["steps"]),
            int(options.get("batch_size", 16)),
            dict(options),
            int(options.get("seed", 0)),
        )
        row.update(
            deletion_auc=di["deletion_auc"],
            insertion_auc=di["insertion_auc"],
            metric_forward_passes=di["forward_passes"],
        )
    if mask is not None:
        row["pointing"] = M.pointing_game(relevance, mask, bool(m["pointing_per_frame"]))
        top = M.topshare_iou_dice(relevance, mask, float(m["top_k"]))
        mm = M.minmax_iou_dice(relevance, mask, float(m["minmax_threshold"]))
        row.update(topshare_iou=top["iou"], topshare_dice=top["dice"])
        row.update(minmax_iou=mm["iou"], minmax_dice=mm["dice"])
        row["loc_curves"] = {
            mode: M.weak_localisation_curve(relevance, mask, mode, M.LOC_ALPHAS[mode])
            for mode in M.LOC_MODES
        }
    if flow_magnitude is not None:
        base, kept = motion_map if motion_map is not None else (relevance, None)
        row["motion_precision"] = M.motion_precision(
            base, flow_magnitude, float(m["flow_threshold"]), bool(m["motion_centre"]), kept
        )
    return row


def calibrate_localisation(
    rows: list[dict[str, Any]], options: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Weak localisation per mode with alpha held out (``metrics.held_out_localisation``):
    pops each row's ``loc_curves`` and adds ``loc_{mode}_alpha``, ``loc_{mode}_box_iou`` and
    ``loc_{mode}_hit``; returns the curves as long rows (explainer, vid_name, mode, alpha,
    box_iou) for a file of their own."""
    m = {**METRIC_DEFAULTS, **((options or {}).get("metrics") or {})}
    long: list[dict[str, Any]] = []
    by_map: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "loc_curves" in row:
            by_map.setdefault(row["explainer"], []).append(row)
    for name, group in by_map.items():
        for mode in M.LOC_MODES:
            alphas = M.LOC_ALPHAS[mode]
            curves = np.array([r["loc_curves"][mode] for r in group], dtype=np.float64)
            held = M.held_out_localisation(curves, alphas, float(m["loc_iou"]))
            for r, h, curve in zip(group, held, curves, strict=True):
                r.update({f"loc_{mode}_{k}": v for k, v in h.items()})
                long += [
                    {"explainer": name, "vid_name": r.get("vid_name"), "mode": mode,
                     "alpha": a, "box_iou": v}
                    for a, v in zip(alphas, curve, strict=True)
                ]  # fmt: skip
    for row in rows:
        row.pop("loc_curves", None)
    return long


def _shared_segments(
    clip: Tensor, explainers: list[str], options: Mapping[str, Any]
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """One segmentation per distinct setting among the explainers that remove segments."""
    cache: dict[str, tuple[Tensor, float]] = {}
    segments, seconds = {}, {}
    for name in explainers:
        if name not in SEGMENT_USERS:
            continue
        resolved = resolve_options(name, options)
        key = json.dumps({**resolved["segmentation"]}, sort_keys=True, default=str)
        if key not in cache:
            started = time.perf_counter()
            cache[key] = (segment_clip(clip, resolved), time.perf_counter() - started)
        segments[name], seconds[name] = cache[key]
    return segments, seconds


def explain_and_score(
    model_fn: ModelFn,
    clip: Tensor,
    target: int,
    explainers: list[str],
    options: Mapping[str, Any] | None = None,
    mask: Tensor | np.ndarray | None = None,
    flow_magnitude: Tensor | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Rows (one per map: each explainer, then its selective map where it means something,
    see flowguide.explain.selective) and maps by name."""
    options = dict(options or {})
    sel = {**SELECTIVE_DEFAULTS, **(options.get("selective") or {})}
    rows: list[dict[str, Any]] = []
    maps: dict[str, Tensor] = {}
    segments, seg_seconds = _shared_segments(clip, explainers, options)

    def add(name: str, base: str, result: ExplanationResult, selective: bool, **kw: Any) -> None:
        row: dict[str, Any] = {
            "explainer": name,
            "base": base,
            "selective": selective,
            "forward_passes": result.forward_passes,
            "backward_passes": result.backward_passes,
            "seconds": result.seconds,
        }
        if base in seg_seconds:
            row["segmentation_seconds"] = seg_seconds[base]
        if "n_features" in result.extras:  # segments, supervoxels or occlusion windows used
            row["n_features"] = result.extras["n_features"]
        row.update(
            score_map(model_fn, clip, target, result.map, options, mask, flow_magnitude, **kw)
        )
        rows.append(row)
        maps[name] = result.map

    for name in explainers:
        opts = {**options, SHARED_SEGMENTS: segments[name]} if name in segments else options
        result = explain(name, model_fn, clip, target, opts)
        add(name, name, result, False)
        if not sel["enabled"] or (sel["apply_to"] is not None and name not in sel["apply_to"]):
            continue
        if name in REGION_CONSTANT and name not in VOXEL_SOURCE:
            continue  # selective relevance would measure the segmentation's borders
        key, sel_name = VOXEL_SOURCE.get(name, (None, f"selective_{name}"))
        source = result.extras[key] if key else result.map
        filtered, kept = selective_of(result, float(sel["n_std"]), str(sel["rule"]), source)
        add(sel_name, name, filtered, True, motion_map=(source, kept))
        rows[-1].update(
            {f"selectivity_{k}": v for k, v in M.selectivity(source, filtered.map).items()}
        )
    return rows, maps


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of every numeric column per explainer over clips (NaNs skipped), with the count."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c not in ("explainer", "base", "selective", "vid_name")]
    grouped = frame.groupby(["explainer", "base", "selective"], sort=False)
    out = grouped[numeric].mean(numeric_only=True).reset_index()
    out["n_clips"] = grouped.size().values
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in out.to_dict("records")
    ]
