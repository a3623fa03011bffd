"""The config's ``train`` section -> the specs the loop builds from (model, transform)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowguide.clips.transforms import TransformSpec
from flowguide.modeling.slowfast import SlowFastSpec
from flowguide.train.methods import Method

# Execution settings of the train section: how a job runs, not what it computes. They are not
# part of a run's Snakemake params (workflow/rules/execution.smk passes them as FLOWGUIDE_*
# variables) nor of its resume fingerprint (train/checkpoint.py).
EXECUTION_OPTIONS = ("num_workers", "tensorboard", "prefetch_factor", "cudnn_benchmark")


def train_options(partial: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's ``train`` section with the schema's defaults filled in, validated."""
    from flowguide.config import validate_config

    config = validate_config({"dataset": {"kind": "synthdive"}, "train": dict(partial or {})})
    return config["train"]


def resolve_loader_batch_size(options: Mapping[str, Any], method: str, T: int) -> dict[str, Any]:
    """``options`` with ``loader_batch_size`` taken from the first entry of
    ``loader_batch_size_overrides`` that matches (method, T) (an entry without ``method`` or
    ``T`` matches any), and the list removed: e.g. RRR at T = 64 needs a smaller loader batch
    than vanilla at T = 16. The optimiser batch ``batch_size`` stays (more accumulation)."""
    resolved = {k: v for k, v in options.items() if k != "loader_batch_size_overrides"}
    for entry in options.get("loader_batch_size_overrides") or []:
        if entry.get("method", method) == method and int(entry.get("T", T)) == int(T):
            resolved["loader_batch_size"] = int(entry["loader_batch_size"])
            break
    return resolved


def transform_spec(options: Mapping[str, Any], method: Method) -> TransformSpec:
    t, ra = options["transform"], options["randaugment"]
    return TransformSpec(
        short_side_min=t["short_side_min"],
        short_side_max=t["short_side_max"],
        crop=t["crop"],
        eval_short_side=t["eval_short_side"],
        eval_crop=t["eval_crop"],
        mean=tuple(t["mean"]),
        std=tuple(t["std"]),
        hflip_p=t["hflip_p"],
        randaugment=method.randaugment,
        randaug_magnitude=ra["magnitude"],
        randaug_num_layers=ra["num_layers"],
        randaug_prob=ra["prob"],
        ogl_p=method.ogl_p,
    )


def model_spec(options: Mapping[str, Any], num_classes: int) -> SlowFastSpec:
    m = options["model"]
    return SlowFastSpec(
        num_classes=num_classes,
        depth=m["depth"],
        alpha=m["alpha"],
        beta_inv=m["beta_inv"],
        stem_width=m["stem_width"],
        dropout=m["dropout"],
    )
