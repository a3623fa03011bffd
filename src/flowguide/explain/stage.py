"""The explain stage: a trained checkpoint + manifest + diver masks (+ flow) -> scored explanations.

Outputs in ``out_dir``: ``scores.csv`` (one row per clip and map), ``summary.csv`` (means per
map over clips), ``maps.h5`` (group per video, one float16 (T, H, W) dataset per map, attributes
say what it holds), ``failures.csv``.

Clip preparation mirrors the checkpoint's evaluation transform as far as it is recorded there
(``transform``: eval_short_side, eval_crop, mean, std; ``T``): T frames spread uniformly over
start_frame..end_frame, short side resized, centre crop, normalised. Masks and flow get the same
geometry (nearest for masks; flow magnitude rescaled to the new pixel size).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flowguide.explain.core import ExplanationResult, ModelFn, ModuleFn
from flowguide.explain.explainers import EXPLAINERS, register_explainer
from flowguide.explain.runner import explain_and_score, summarise
from flowguide.utils.failures import FailureLog, FlowguideError

log = logging.getLogger("flowguide.explain")

STAGE_DEFAULTS: dict[str, Any] = {
    "n_clips": 8,
    "split": "test",
    "target": "label",  # or "predicted"
    "explainers": [
        "gradcam",
        "swag_v",
        "rise",
        "lime",
        "kernel_shap",
        "loco",
        "univariate",
        "occlusion",
    ],
}


def load_model(checkpoint: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """SlowFast and the checkpoint's metadata from a train-stage checkpoint (weights_only)."""
    from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise FlowguideError(f"{checkpoint}: cannot load checkpoint: {exc}") from exc
    missing = [k for k in ("model_spec", "model", "alpha", "T", "transform") if k not in state]
    if missing:
        raise FlowguideError(f"{checkpoint}: not a training checkpoint (missing {missing})")
    model = build_slowfast(SlowFastSpec(**state["model_spec"]))
    model.load_state_dict(state["model"])
    return model.eval().to(device), state


def _geometry(frames: torch.Tensor, short: int, crop: int, mode: str) -> torch.Tensor:
    """(T, C, H, W) -> short side ``short`` then centre crop ``crop`` (interpolation ``mode``)."""
    h, w = frames.shape[-2:]
    scale = short / min(h, w)
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    kwargs = {"antialias": True} if mode == "bilinear" else {}
    out = F.interpolate(frames, size=size, mode=mode, **kwargs)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return out[..., top : top + crop, left : left + crop]


def prepare_clip(
    row: Mapping[str, Any], meta: Mapping[str, Any], masks_dir: Path, flow_dir: Path | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, np.ndarray]:
    """Normalised clip (C, T, H, W), mask (T, H, W) bool, flow magnitude (T, H, W) or None."""
    from flowguide.utils.masks import read_video_masks
    from flowguide.utils.video import read_frames

    tf = meta["transform"]
    short, crop = int(tf["eval_short_side"]), int(tf["eval_crop"])
    start, end = int(row["start_frame"]), int(row["end_frame"])
    indices = np.round(np.linspace(start, end, int(meta["T"]))).astype(np.int64)
    rgb = torch.from_numpy(read_frames(row["path"], indices)).permute(0, 3, 1, 2).float() / 255
    clip = _geometry(rgb, short, crop, "bilinear")
    mean = torch.tensor(tf["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(tf["std"]).view(1, 3, 1, 1)
    clip = ((clip - mean) / std).permute(1, 0, 2, 3).contiguous()
    vid, shard = row["vid_name"], row["shard"]
    masks = read_video_masks(masks_dir / f"{shard}.h5", vid, indices - start)
    masks_t = torch.from_numpy(masks).float()[:, None]
    masks_t = F.interpolate(masks_t, size=rgb.shape[-2:], mode="nearest")
    mask = _geometry(masks_t, short, crop, "nearest")[:, 0] > 0.5
    flow_mag = None
    if flow_dir is not None:
        from flowguide.utils.flowio import read_flow

        flow, _ = read_flow(flow_dir / f"{shard}.h5", vid)  # fields t -> t + gap, T - 1 or T
        flow = flow[np.minimum(indices - start, len(flow) - 1)]
        mag = torch.from_numpy(np.sqrt((flow[:, 0] ** 2).sum(1)))[:, None]  # first gap
        to_video = rgb.shape[-1] / mag.shape[-1]
        mag = F.interpolate(mag, size=rgb.shape[-2:], mode="bilinear") * to_video
        flow_mag = _geometry(mag, short, crop, "bilinear")[:, 0] * (short / min(rgb.shape[-2:]))
    return clip, mask, flow_mag, indices


def slowfast_gradcam(model: torch.nn.Module, alpha: int):
    """GradCAM of both pathways (flowguide.modeling.gradcam) upsampled to (T, H, W), averaged."""
    from flowguide.modeling.gradcam import PathwayRecorder, pathway_gradcam
    from flowguide.modeling.slowfast import forward_clip

    def run(model_fn: ModelFn, clip: torch.Tensor, target: int, options: dict) -> ExplanationResult:
        import time

        started = time.perf_counter()
        recorder = PathwayRecorder(model)
        with torch.enable_grad():
            logits = forward_clip(model, clip[None], alpha)
            maps = pathway_gradcam(
                logits,
                torch.tensor([target], device=clip.device),
                recorder.take(),
                [tuple(clip.shape[1:])] * 2,
                create_graph=False,
            )
        for handle in getattr(recorder, "_handles", []):
            handle.remove()
        relevance = torch.stack([m.detach()[0] for m in maps]).mean(0)
        return ExplanationResult(
            relevance.to("cpu", torch.float32), 1, time.perf_counter() - started, backward_passes=1
        )

    return run


def run_explain(
    checkpoint: str | os.PathLike,
    manifest: str | os.PathLike,
    masks_dir: str | os.PathLike,
    flow_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    options: Mapping[str, Any],
    device: str = "auto",
    fail_fast: bool = False,
) -> list[dict[str, Any]]:
    import pandas as pd
    from tqdm import tqdm

    from flowguide.modeling.slowfast import forward_clip
    from flowguide.utils.atomic import atomic_write_text
    from flowguide.utils.device import resolve_device
    from flowguide.utils.h5 import set_attrs, write_frames_dataset, write_shard

    opts = {**STAGE_DEFAULTS, **options}
    dev = resolve_device(device)
    model, meta = load_model(checkpoint, dev)
    alpha = int(meta["alpha"])
    model_fn = ModuleFn(model, lambda m, x: forward_clip(m, x, alpha))
    if "gradcam" in opts["explainers"]:
        register_explainer("gradcam", slowfast_gradcam(model, alpha))
    unknown = [n for n in opts["explainers"] if n not in EXPLAINERS]
    if unknown:
        raise FlowguideError(f"unknown explainers {unknown}; known: {sorted(EXPLAINERS)}")
    explain_opts = {"pixel_mean": meta["transform"]["mean"], "pixel_std": meta["transform"]["std"]}
    explain_opts.update({k: v for k, v in opts.items() if k not in STAGE_DEFAULTS})

    table = pd.read_csv(manifest)
    table = (
        table[table["split"] == opts["split"]].sort_values("vid_name").head(int(opts["n_clips"]))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failures = FailureLog("explain", fail_fast)
    all_rows: list[dict[str, Any]] = []
    with write_shard(out / "maps.h5", {"checkpoint": str(checkpoint), "options": opts}) as fh:
        for row in tqdm(table.to_dict("records"), desc="explain"):
            try:
                clip, mask, flow_mag, indices = prepare_clip(
                    row, meta, Path(masks_dir), Path(flow_dir) if flow_dir else None
                )
                clip = clip.to(dev)
                if opts["target"] == "label":
                    target = int(row["label"])
                else:
                    with torch.inference_mode():
                        target = int(model_fn(clip[None]).argmax(1))
                rows, maps = explain_and_score(
                    model_fn, clip, target, list(opts["explainers"]), explain_opts, mask, flow_mag
                )
            except Exception as exc:  # recorded per video; the others go on
                failures.record(row["vid_name"], exc)
                continue
            group = fh.create_group(row["vid_name"])
            set_attrs(
                group,
                {"label": int(row["label"]), "target": target, "frame_indices": indices.tolist()},
            )
            for name, rel in maps.items():
                write_frames_dataset(
                    group,
                    name,
                    rel.numpy().astype(np.float16),
                    {
                        "explainer": name,
                        "shape": "T,H,W (model input frames after eval crop)",
                        "values": "relevance, higher = more relevant to the target class",
                    },
                )
            all_rows.extend({"vid_name": row["vid_name"], "target": target, **r} for r in rows)
    failures.write(out / "failures.csv")
    atomic_write_text(out / "scores.csv", pd.DataFrame(all_rows).to_csv(index=False))
    summary = summarise(all_rows) if all_rows else []
    atomic_write_text(out / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float))
    log.info(
        "explain: %d of %d clips explained", len({r["vid_name"] for r in all_rows}), len(table)
    )
    return summary
