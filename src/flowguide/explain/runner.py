"""Explain one clip with several explainers (and their selective versions) and score every map.

``explain_and_score`` is the library entry point the explain stage calls per clip; it returns one
flat row per map (explainer, cost, metrics) and the maps themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from flowguide.explain import metrics as M
from flowguide.explain.core import ExplanationResult, ModelFn
from flowguide.explain.explainers import explain
from flowguide.explain.selective import selective_of

METRIC_DEFAULTS: dict[str, Any] = {
    "steps": 28,  # deletion/insertion steps (SWAG-V)
    "top_k": 0.1,  # share of voxels taken as the map's region for IoU/Dice
    "pointing_per_frame": False,
    "loc_mode": "mean",  # weak-localisation threshold: value | mean | energy
    "loc_alpha": None,
    "loc_iou": 0.5,
    "flow_threshold": 1.0,  # pixels/frame: a voxel "moves" above this flow magnitude
    "entropy_bins": 10,
    "faithfulness": True,  # deletion/insertion cost 2 * (steps + 1) forward passes per map
}
SELECTIVE_DEFAULTS: dict[str, Any] = {"enabled": True, "n_std": 4.0, "apply_to": None}


def score_map(
    model_fn: ModelFn,
    clip: Tensor,
    target: int,
    relevance: Tensor,
    options: Mapping[str, Any],
    mask: Tensor | np.ndarray | None = None,
    flow_magnitude: Tensor | None = None,
) -> dict[str, float]:
    """Every metric of one map that its inputs allow (mask -> localisation, flow -> motion)."""
    m = {**METRIC_DEFAULTS, **(options.get("metrics") or {})}
    row: dict[str, float] = {"entropy": M.map_entropy(relevance, int(m["entropy_bins"]))}
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
        row.update(
            {f"topk_{k}": v for k, v in M.topk_iou_dice(relevance, mask, m["top_k"]).items()}
        )
        loc = M.weak_localisation(relevance, mask, m["loc_mode"], m["loc_alpha"], m["loc_iou"])
        row.update(loc_box_iou=loc["box_iou"], loc_hit=loc["hit"])
    if flow_magnitude is not None:
        row["motion_precision"] = M.motion_precision(relevance, flow_magnitude, m["flow_threshold"])
    return row


def explain_and_score(
    model_fn: ModelFn,
    clip: Tensor,
    target: int,
    explainers: list[str],
    options: Mapping[str, Any] | None = None,
    mask: Tensor | np.ndarray | None = None,
    flow_magnitude: Tensor | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Rows (one per map: each explainer, then ``selective_<name>``) and maps by name."""
    options = dict(options or {})
    sel = {**SELECTIVE_DEFAULTS, **(options.get("selective") or {})}
    rows: list[dict[str, Any]] = []
    maps: dict[str, Tensor] = {}

    def add(name: str, base: str, result: ExplanationResult, selective: bool) -> None:
        row: dict[str, Any] = {
            "explainer": name,
            "base": base,
            "selective": selective,
            "forward_passes": result.forward_passes,
            "backward_passes": result.backward_passes,
            "seconds": result.seconds,
        }
        row.update(score_map(model_fn, clip, target, result.map, options, mask, flow_magnitude))
        rows.append(row)
        maps[name] = result.map

    for name in explainers:
        result = explain(name, model_fn, clip, target, options)
        add(name, name, result, False)
        if sel["enabled"] and (sel["apply_to"] is None or name in sel["apply_to"]):
            filtered = selective_of(result, float(sel["n_std"]))
            add(f"selective_{name}", name, filtered, True)
            rows[-1].update(
                {f"selectivity_{k}": v for k, v in M.selectivity(result.map, filtered.map).items()}
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
