"""Loading model weights safely: ``weights_only=True``, and a clear error for a missing file."""

from __future__ import annotations

import os
import re
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


SAFE_CONTENT = (
    "it must hold only tensors and plain Python containers and numbers (a state_dict, e.g. "
    "torch.save(model.state_dict(), path)); re-save it that way from a source you trust"
)


def load_weights(path: str | os.PathLike, what: str, hint: str = "") -> Any:
    """``torch.load`` with ``weights_only=True`` (no code from the file is ever executed).

    A refused file is described by what it holds and what it must hold: torch's own message
    suggests ``weights_only=False``, which would run the file's code, and is never passed on."""
    import torch

    path = require_weights(path, what, hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt/pickled files
        if type(exc).__name__ == "UnpicklingError":  # the safe unpickler met a class/function
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            holds = f"an object of {found[1]}" if found else "Python objects other than tensors"
            raise FlowguideError(
                f"{path}: {what} weights refused: the file holds {holds}, which is never loaded "
                f"(it could run code); {SAFE_CONTENT}"
            ) from None
        reason = str(exc).split(". ")[0].strip()
        raise FlowguideError(
            f"{path}: cannot read {what} weights ({reason}): the file is truncated, corrupt or "
            f"not a torch checkpoint; copy it again or re-save it"
        ) from exc


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub caches the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
