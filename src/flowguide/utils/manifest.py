"""The manifest file contract, shared by every stage that reads manifest.csv or a shard CSV."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from flowguide.utils.failures import FlowguideError

MANIFEST_COLUMNS = [
    "vid_name", "split", "label", "path", "start_frame", "end_frame",
    "n_frames", "video_frames", "fps", "width", "height", "shard",
]  # fmt: skip
_TEXT_COLUMNS = {"vid_name": str, "split": str, "path": str, "shard": str}


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """manifest.csv or one shard's CSV; vid_name stays text (Diving48 names can look numeric)."""
    if not Path(path).is_file():
        raise FlowguideError(f"{path}: manifest does not exist")
    return pd.read_csv(path, dtype=_TEXT_COLUMNS)
