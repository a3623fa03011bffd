"""The explain stage: a trained checkpoint + manifest + diver masks (+ flow) -> scored explanations.

Outputs in ``out_dir``: ``scores.csv`` (one row per clip and map), ``summary.csv`` (means per
map over clips), ``localisation.csv`` (weak-localisation box IoU per clip, map, threshold mode
and alpha: the data the held-out alphas are chosen from), ``maps.h5`` (group
``/videos/<vid_name>``, one float16 (T, H, W) dataset per map, attributes say what it holds),
``failures.csv``.

Clips and masks come from the shared evaluation dataset (flowguide.clips: dynamic temporal
stride with offset 0, the checkpoint's evaluation short side, centre crop and normalisation), so
explanations see exactly what evaluation sees; the flow magnitude gets the same geometry,
rescaled to pixels of the model input.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from flowguide.clips.dataset import evaluation_datasets
from flowguide.explain.core import ExplanationResult, ModelFn, ModuleFn
from flowguide.explain.explainers import EXPLAINERS, register_explainer
from flowguide.explain.runner import calibrate_localisation, explain_and_score, summarise
from flowguide.modeling.trained import TrainedModel, load_trained
from flowguide.utils.atomic import atomic_write_text
from flowguide.utils.device import resolve_device
from flowguide.utils.failures import FailureLog, FlowguideError
from flowguide.utils.h5 import create_video_group, set_attrs, write_frames_dataset, write_shard
from flowguide.utils.manifest import read_manifest

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


def flow_magnitude(
    flow_path: Path, vid_name: str, indices: np.ndarray, transform: Mapping[str, Any]
) -> torch.Tensor:
    """(T, H, W) magnitude of the first gap's flow at the clip's frames, put through the
    evaluation geometry (short side, centre crop) and rescaled to pixels of the model input."""
    from flowguide.clips.transforms import center_crop, short_side_scale
    from flowguide.utils.flowio import read_flow

    flow, _ = read_flow(flow_path, vid_name, indices)
    magnitude = torch.from_numpy(np.sqrt((flow[:, 0] ** 2).sum(1)))[:, None]  # (T, 1, h, w)
    short = int(transform["eval_short_side"])
    scale = short / min(magnitude.shape[-2:])
    magnitude, _ = short_side_scale(magnitude, None, short)
    magnitude, _ = center_crop(magnitude, None, int(transform["eval_crop"]))
    return magnitude[:, 0] * scale


def slowfast_gradcam(trained: TrainedModel):
    """GradCAM of both pathways (flowguide.modeling.gradcam) upsampled to (T, H, W), averaged."""
    from flowguide.modeling.gradcam import PathwayRecorder, pathway_gradcam

    def run(model_fn: ModelFn, clip: torch.Tensor, target: int, options: dict) -> ExplanationResult:
        started = time.perf_counter()
        with torch.enable_grad(), PathwayRecorder(trained.backbone) as recorder:
            logits = trained.model_fn(clip[None])
            maps = pathway_gradcam(
                logits,
                torch.tensor([target], device=clip.device),
                recorder.take(),
                [tuple(clip.shape[1:])] * 2,
                create_graph=False,
            )
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
    opts = {**STAGE_DEFAULTS, **options}
    trained = load_trained(checkpoint, resolve_device(device))
    model_fn = ModuleFn(trained.model, lambda _, x: trained.model_fn(x))
    if "gradcam" in opts["explainers"]:
        register_explainer("gradcam", slowfast_gradcam(trained))
    unknown = [n for n in opts["explainers"] if n not in EXPLAINERS]
    if unknown:
        raise FlowguideError(f"unknown explainers {unknown}; known: {sorted(EXPLAINERS)}")
    explain_opts = {"pixel_mean": trained.transform["mean"], "pixel_std": trained.transform["std"]}
    explain_opts.update({k: v for k, v in opts.items() if k not in STAGE_DEFAULTS})

    rows = read_manifest(manifest)
    rows = rows[rows["split"] == opts["split"]].sort_values("vid_name").head(int(opts["n_clips"]))
    # The same clips and geometry as evaluation (dynamic stride, offset 0, eval crop).
    datasets = evaluation_datasets(rows, trained.T, trained.transform, masks_dir, trained.sampling)
    positions = [(ds, i) for ds in datasets for i in range(len(ds))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failures = FailureLog("explain", fail_fast)
    all_rows: list[dict[str, Any]] = []
    with write_shard(out / "maps.h5", {"checkpoint": str(checkpoint), "options": opts}) as fh:
        for ds, i in tqdm(positions, desc="explain"):
            vid = str(ds.rows.at[i, "vid_name"])
            try:
                item = ds[i]  # an unreadable video is this clip's failure, not the job's
                if "mask" not in item:
                    raise FlowguideError(f"no diver mask for {vid} in {masks_dir}")
                indices = item["frame_indices"].numpy()
                shard = rows.set_index("vid_name").at[vid, "shard"]
                flow_mag = (
                    flow_magnitude(Path(flow_dir) / f"{shard}.h5", vid, indices, trained.transform)
                    if flow_dir
                    else None
                )
                clip = item["clip"].to(trained.device)
                if opts["target"] == "label":
                    target = int(item["label"])
                else:
                    with torch.inference_mode():
                        target = int(model_fn(clip[None]).argmax(1))
                scored, maps = explain_and_score(
                    model_fn, clip, target, list(opts["explainers"]), explain_opts,
                    item["mask"], flow_mag,
                )  # fmt: skip
            except Exception as exc:  # recorded per video; the others go on
                failures.record(vid, exc)
                continue
            group = create_video_group(fh, vid)
            set_attrs(
                group,
                {"label": int(item["label"]), "target": target, "frame_indices": indices.tolist()},
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
            all_rows.extend({"vid_name": vid, "target": target, **r} for r in scored)
    failures.write(out / "failures.csv")
    curves = calibrate_localisation(all_rows, explain_opts)
    atomic_write_text(out / "localisation.csv", pd.DataFrame(curves).to_csv(index=False))
    atomic_write_text(out / "scores.csv", pd.DataFrame(all_rows).to_csv(index=False))
    summary = summarise(all_rows) if all_rows else []
    atomic_write_text(out / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float))
    log.info("explain: %d of %d clips explained", len({r["vid_name"] for r in all_rows}), len(rows))
    return summary
