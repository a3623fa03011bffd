"""A finished run's files beside the checkpoint: metrics.csv, timing.json; TensorBoard; the
per-epoch progress line."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from flowguide.utils.atomic import atomic_write_text


def write_outputs(
    out_dir: Path, metrics: list[dict[str, Any]], device: torch.device, clips: Mapping[str, Any]
) -> None:
    atomic_write_text(out_dir / "metrics.csv", pd.DataFrame(metrics).to_csv(index=False))
    seconds = [m["seconds"] for m in metrics]
    rates = [m["clips_per_second"] for m in metrics]
    timing = {
        "device": str(device),
        "epochs": len(metrics),
        "seconds_per_epoch": seconds,
        "median_seconds_per_epoch": statistics.median(seconds) if seconds else None,
        "clips_per_second": statistics.median(rates) if rates else None,
        "note": "median over epochs; epochs of earlier (resumed) runs keep their own timing",
        "clips": dict(clips),  # training clips used / in the manifest / excluded, and the rule
    }
    atomic_write_text(out_dir / "timing.json", json.dumps(timing, indent=2) + "\n")


def tensorboard_writer(out_dir: Path, options: Mapping):
    if not options["tensorboard"]:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


# The train rule passes the lines that start like this from the job's output to Snakemake's
# terminal (the full output goes to the rule's log); keep the two in step.
PROGRESS_PREFIX = "train "


def progress_line(method: str, T: int, row: Mapping[str, Any], epochs: int) -> str:
    """One short line per finished epoch: which run, how far, loss, accuracy, seconds."""
    return (
        f"{PROGRESS_PREFIX}{method} T={T}: epoch {row['epoch']}/{epochs} "
        f"loss {row['loss']:.4f} accuracy {row['accuracy']:.3f} ({row['seconds']:.0f} s)"
    )
