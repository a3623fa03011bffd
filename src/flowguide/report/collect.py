"""Read whatever results exist: evaluation runs, mask quality, mask shards, failures.

Each reader returns an empty table (and the report says what is missing) when its files are
absent; a file that exists but cannot be read is an error naming it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import h5py
import pandas as pd
from tqdm import tqdm

from flowguide.utils.failures import FAILURE_COLUMNS, FlowguideError
from flowguide.utils.h5 import iter_video_groups, read_mask_dataset, read_shard
from flowguide.utils.manifest import read_manifest

log = logging.getLogger("flowguide")

RUN_COLUMNS = [
    "run",
    "method",
    "T",
    "params",
    "is_sweep",
    "top1",
    "mean_class_accuracy",
    "n_clips",
    "num_classes",
    "gflops",
    "params_count",
    "hours_per_epoch",
    "seconds_per_clip",
    "epochs",
    "path",
]


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def run_row(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """One flat row of a metrics.json: method and sweep parameters from its fields, not its path."""
    for key in ("method", "T", "top1"):
        if key not in doc:
            raise FlowguideError(f"{path}: metrics.json lacks the field {key!r}")
    params = dict(doc.get("params") or {})
    cost = doc.get("training_cost") or {}
    row: dict[str, Any] = {
        "run": doc["method"],
        "method": doc.get("base_method") or doc["method"],
        "T": int(doc["T"]),
        "params": params,
        "is_sweep": bool(set(params) - {"seed"}),  # a training seed is a replicate, not a sweep
        "top1": _number(doc["top1"]),
        "mean_class_accuracy": _number(doc.get("mean_class_accuracy")),
        "n_clips": doc.get("n_clips"),
        "num_classes": doc.get("num_classes"),  # chance = 1 / num_classes in tables and plots
        "gflops": _number(doc.get("gflops")),
        "params_count": _number(doc.get("params_count")),
        "hours_per_epoch": _number(cost.get("hours_per_epoch")),
        "seconds_per_clip": _number(cost.get("seconds_per_clip")),
        "epochs": cost.get("epochs"),
        "path": str(path.parent),
    }
    for name, stats in (doc.get("maps") or {}).items():
        for stat in ("iou", "dice", "norm_entropy"):
            row[f"{name}_{stat}"] = _number(stats.get(stat))
    for key, value in (doc.get("cue") or {}).items():
        row[f"cue_{key}"] = _number(value)
    for key, value in params.items():
        row[f"param_{key}"] = value
    return row


def load_runs(results: str | Path) -> pd.DataFrame:
    """All results/eval/*/T*/metrics.json as rows (RUN_COLUMNS plus map, cue, param columns)."""
    rows = []
    for path in sorted(Path(results, "eval").glob("*/*/metrics.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise FlowguideError(f"{path}: not valid JSON: {exc}") from exc
        rows.append(run_row(doc, path))
    table = pd.DataFrame(rows)
    for column in RUN_COLUMNS:
        if column not in table:
            table[column] = pd.Series(dtype=object)
    return table


def load_quality(results: str | Path) -> pd.DataFrame:
    path = Path(results, "masks", "quality.csv")
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def mask_shard_stats(path: Path) -> list[dict[str, Any]]:
    """Per video of one mask shard: frames, mean mask coverage and the share of empty frames.

    Read from the shard's ``index`` table (written by select) when present, else computed
    from the masks themselves.
    """
    with read_shard(path) as fh:
        if isinstance(fh.get("index"), h5py.Dataset):
            index = fh["index"][()]
            return [
                {"shard": path.stem, "vid_name": _text(r["vid_name"]), "frames": int(r["frames"]),
                 "coverage": float(r["coverage"]), "empty_share": float(r["empty_ratio"])}
                for r in index
            ]  # fmt: skip
        rows = []
        for vid, group in iter_video_groups(fh, path):
            if "mask" not in group:
                continue
            masks = read_mask_dataset(group["mask"])
            per_frame = masks.reshape(len(masks), -1).mean(axis=1)
            rows.append({
                "shard": path.stem, "vid_name": vid, "frames": len(masks),
                "coverage": float(per_frame.mean()) if len(per_frame) else math.nan,
                "empty_share": float((per_frame == 0).mean()) if len(per_frame) else math.nan,
            })  # fmt: skip
    return rows


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_mask_stats(results: str | Path) -> pd.DataFrame:
    """Coverage and empty-frame share of every video in results/masks/*.h5, from the masks."""
    shards = sorted(Path(results, "masks").glob("*.h5"))
    rows = []
    for path in tqdm(shards, desc="mask shards", unit="shard", disable=len(shards) < 4):
        rows += mask_shard_stats(path)
    return pd.DataFrame(rows, columns=["shard", "vid_name", "frames", "coverage", "empty_share"])


def load_failures(results: str | Path) -> pd.DataFrame:
    """Every failure log row (stage, video, reason, severity) plus the file it came from: the
    per-job logs results/failures/**.csv and the explain stage's results/explain/**/failures.csv."""
    frames = []
    root = Path(results)
    logs = sorted(Path(results, "failures").rglob("*.csv"))
    logs += sorted(Path(results, "explain").rglob("failures.csv"))
    for path in logs:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "severity" not in table.columns:  # logs from before the column held errors only
            table["severity"] = "error"
        missing = set(FAILURE_COLUMNS) - set(table.columns)
        if missing:
            raise FlowguideError(f"{path}: failure log lacks columns {sorted(missing)}")
        table["file"] = str(path.relative_to(root))
        frames.append(table[[*FAILURE_COLUMNS, "file"]])
    if not frames:
        return pd.DataFrame(columns=[*FAILURE_COLUMNS, "file"])
    return pd.concat(frames, ignore_index=True)


def load_manifest(results: str | Path) -> pd.DataFrame:
    path = Path(results, "manifest.csv")
    return read_manifest(path) if path.exists() else pd.DataFrame()


def explain_dirs(results: str | Path) -> list[tuple[str, int, Path]]:
    """(run, T, folder) of every results/explain/{run}/T{T}/ holding a summary.csv, sorted."""
    found = []
    for summary in Path(results, "explain").glob("*/T*/summary.csv"):
        folder = summary.parent
        if folder.name[1:].isdigit():
            found.append((folder.parent.name, int(folder.name[1:]), folder))
    return sorted(found, key=lambda item: (item[0], item[1]))


def read_explain_summary(path: Path) -> pd.DataFrame:
    """One explain summary.csv (one row per map); empty when every clip failed (no rows)."""
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    if len(table) and "explainer" not in table:
        raise FlowguideError(f"{path}: explain summary lacks the column 'explainer'")
    return table


def load_explain(results: str | Path) -> pd.DataFrame:
    """Every explain summary.csv as one long table: run, T, then the summary's own columns
    (explainer, base, selective, cost, metric means over clips, n_clips) and the folder."""
    frames = []
    for run, t, folder in explain_dirs(results):
        table = read_explain_summary(folder / "summary.csv")
        if len(table):
            frames.append(table.assign(run=run, T=t, path=str(folder)))
    if not frames:
        return pd.DataFrame(columns=["run", "T", "explainer", "path"])
    table = pd.concat(frames, ignore_index=True)
    return table[["run", "T", *[c for c in table if c not in ("run", "T")]]]
