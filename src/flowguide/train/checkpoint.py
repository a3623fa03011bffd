"""Training state on disk: RNG states, atomic checkpoints, and the fingerprint that decides
whether a ``last.pt`` may be resumed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowguide.train.methods import Method
from flowguide.train.options import EXECUTION_OPTIONS
from flowguide.utils.atomic import atomic_path
from flowguide.utils.checkpoints import load_weights
from flowguide.utils.failures import FlowguideError

CHECKPOINT_FORMAT = "flowguide.train/1"
STATE_NAME = "last.pt"
FINAL_NAME = "checkpoint.pt"
# Options that change neither the data nor the arithmetic: a resume may differ in them.
# channels_last and activation_checkpointing are fingerprinted: they change rounding and
# BatchNorm statistics (README "Execution settings"), so a state trained otherwise is not resumed.
NOT_FINGERPRINTED = (*EXECUTION_OPTIONS, "methods", "T")


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors and plain types (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": py_version,
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointWriteError(FlowguideError):
    """A checkpoint could not be written (a full disk, a quota, an I/O error)."""


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically: a failed write leaves the previous file as it was and no partial file.

    torch's zip writer reports a short write as e.g. ``unexpected pos 1493248 vs 1493144``;
    the error raised here names the file, the likely cause and the free space instead.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(dict(state), tmp)
    except (OSError, RuntimeError) as exc:
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        kept = "the previous one is kept unchanged" if path.exists() else "none was there before"
        raise CheckpointWriteError(
            f"{path}: writing the training checkpoint failed, most likely because the disk or "
            f"quota of {path.parent} is full ({free}); {kept}. Free space and rerun: training "
            f"resumes from the last checkpoint. ({type(exc).__name__}: {exc})"
        ) from exc


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    state = load_weights(path, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FlowguideError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return state


def load_resumable_state(path: Path) -> dict[str, Any]:
    """``last.pt`` of an interrupted run; an unreadable one (truncated by a kill or a full disk,
    or corrupt) stops with which file to remove and what removing it costs."""
    try:
        return load_checkpoint(path)
    except FlowguideError as exc:
        metrics = path.parent / "metrics.csv"
        done = ""
        if metrics.exists():
            lines = metrics.read_text().strip().splitlines()
            done = f" ({max(0, len(lines) - 1)} epoch(s), per {metrics})"
        raise FlowguideError(
            f"{path}: the saved training state of this run cannot be read (truncated or "
            f"corrupt): {exc}. Remove {path} to train this run from epoch 1; the epochs it "
            f"held{done} are lost and retrained. Nothing else needs removing."
        ) from exc


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_fingerprint(
    manifest: Path, masks: list[Path], method: Method, num_samples: int, options: Mapping
) -> str:
    """Identifies what a resumable state was trained on; a mismatch means start afresh."""
    described = {
        "method": method.name,
        "method_options": method.options,
        "T": num_samples,
        "options": {k: v for k, v in options.items() if k not in NOT_FINGERPRINTED},
        "manifest": file_sha256(manifest),
        "masks": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in masks],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()
