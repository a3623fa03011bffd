"""Training state on disk: RNG states, atomic checkpoints, and the fingerprint that decides
whether a ``last.pt`` may be resumed."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowguide.train.methods import Method
from flowguide.utils.atomic import atomic_path
from flowguide.utils.checkpoints import load_weights
from flowguide.utils.failures import FlowguideError

CHECKPOINT_FORMAT = "flowguide.train/1"
STATE_NAME = "last.pt"
FINAL_NAME = "checkpoint.pt"
# Options that change neither the data nor the arithmetic: a resume may differ in them.
NOT_FINGERPRINTED = ("num_workers", "tensorboard", "methods", "T")


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


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    state = load_weights(path, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FlowguideError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return state


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
