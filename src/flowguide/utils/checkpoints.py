"""Loading model weights safely: ``weights_only=True``, and a clear error for a missing file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flowguide.utils.failures import FlowguideError


class MissingWeightsError(FlowguideError):
    """A checkpoint the config asks for is missing (nothing is downloaded behind a user's back)."""


def require_weights(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        extra = f" {hint}" if hint else ""
        raise MissingWeightsError(
            f"{what} weights not found: {path} "
            f"(put the file there, or set the path in config.yaml).{extra}"
        )
    return path


def load_weights(path: str | os.PathLike, what: str, hint: str = "") -> Any:
    """``torch.load`` with ``weights_only=True`` (no code from the file is ever executed)."""
    import torch

    path = require_weights(path, what, hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt/pickled files
        raise FlowguideError(f"{path}: cannot load {what} weights safely: {exc}") from exc


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub caches the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
