"""Optical-flow backends: torchvision RAFT (large/small) and OpenCV DIS/Farneback.

Every backend maps frame pairs to flow with one call, ``compute_pairs(frames, pairs)``:
``frames`` is a clip (T, H, W, 3) uint8 RGB, ``pairs`` a (P, 2) array of (source, target) frame
indices, and the result is (P, 2, H, W) float32: channel 0 = dx, 1 = dy, in pixels of ``frames``,
so that pixel (x, y) of the source frame moves to (x + dx, y + dy) in the target frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from flowguide.utils.device import resolve_device
from flowguide.utils.failures import FlowguideError

log = logging.getLogger("flowguide.flow")

RAFT_BACKENDS = ("raft_large", "raft_small")
OPENCV_BACKENDS = ("dis", "farneback")
BACKENDS = RAFT_BACKENDS + OPENCV_BACKENDS

# torchvision's RAFT downsamples by 8 and builds a 4-level correlation pyramid on top: inputs must
# be a multiple of 8 and at least 128 pixels on each side.
RAFT_MULTIPLE = 8
RAFT_MIN_SIDE = 128

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# OpenCV's documented example values, with more pyramid levels for the larger motions of dives.
FARNEBACK_PARAMS = {
    "pyr_scale": 0.5,
    "levels": 5,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}


class FlowBackend(Protocol):
    name: str

    def compute_pairs(self, frames: np.ndarray, pairs: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


# --- OpenCV ---------------------------------------------------------------------------------


def to_gray(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


@dataclass
class OpenCVBackend:
    """DIS or Farneback on grayscale frames; no weights, CPU only."""

    name: str
    dis_preset: str = "medium"

    def __post_init__(self) -> None:
        if self.name not in OPENCV_BACKENDS:
            raise FlowguideError(f"flow backend {self.name!r} is not an OpenCV backend")
        self._dis = (
            cv2.DISOpticalFlow_create(DIS_PRESETS[self.dis_preset]) if self.name == "dis" else None
        )

    def pair_flow(self, src_gray: np.ndarray, dst_gray: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 flow from ``src_gray`` to ``dst_gray``."""
        if self._dis is not None:
            return self._dis.calc(src_gray, dst_gray, None)
        return cv2.calcOpticalFlowFarneback(src_gray, dst_gray, None, **FARNEBACK_PARAMS)

    def compute_pairs(self, frames: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        gray = to_gray(frames)
        height, width = gray.shape[1:]
        out = np.empty((len(pairs), 2, height, width), dtype=np.float32)
        for i, (src, dst) in enumerate(np.asarray(pairs)):
            out[i] = self.pair_flow(gray[src], gray[dst]).transpose(2, 0, 1)
        return out

    def describe(self) -> dict[str, Any]:
        common = {"weights": "none", "device": "cpu (OpenCV)", "input": "grayscale (RGB2GRAY)"}
        if self.name == "dis":
            return {**common, "dis_preset": self.dis_preset}
        return {**common, "farneback_params": dict(FARNEBACK_PARAMS)}


# --- RAFT -----------------------------------------------------------------------------------


def raft_weights_enum(backend: str):
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    return {"raft_large": Raft_Large_Weights, "raft_small": Raft_Small_Weights}[backend]


def raft_builder(backend: str):
    from torchvision.models.optical_flow import raft_large, raft_small

    return {"raft_large": raft_large, "raft_small": raft_small}[backend]


def named_weights(backend: str, weights: str | None):
    """The torchvision weights enum member that ``weights`` names (None = DEFAULT), else None.

    Accepted names: ``C_T_V2`` or ``Raft_Small_Weights.C_T_V2`` (and DEFAULT); anything else is a
    checkpoint path.
    """
    enum = raft_weights_enum(backend)
    if weights is None:
        return enum.DEFAULT
    name = weights.removeprefix(f"{enum.__name__}.")
    if name == "DEFAULT":
        return enum.DEFAULT
    return enum.__members__.get(name)


def resolve_raft_checkpoint(backend: str, weights: str | None) -> tuple[str, Path, str]:
    """(description, checkpoint file, hint for a missing file) of the configured RAFT weights."""
    from flowguide.utils.checkpoints import hub_checkpoint_path

    member = named_weights(backend, weights)
    if member is None:
        path = Path(str(weights)).expanduser()
        return str(path), path, "flow.weights is the path of a torchvision RAFT state_dict."
    path = hub_checkpoint_path(member.url)
    hint = (
        f"This node never downloads: fetch {member.url} on a machine with internet and copy "
        f"{path.name} into the torch hub folder {path.parent} (set $TORCH_HOME to move it)."
    )
    return f"torchvision {member}", path, hint


def strip_module_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """State dicts saved from DataParallel/DDP wrappers carry a ``module.`` prefix."""
    if state and all(k.startswith("module.") for k in state):
        return {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_raft(backend: str, weights: str | None):
    """A torchvision RAFT model in eval mode with the configured weights (never downloaded)."""
    from flowguide.utils.checkpoints import load_weights

    what, path, hint = resolve_raft_checkpoint(backend, weights)
    state = load_weights(path, f"{backend} ({what})", hint)
    if not isinstance(state, dict):
        raise FlowguideError(f"{path}: expected a RAFT state_dict, found {type(state).__name__}")
    model = raft_builder(backend)(weights=None, progress=False)
    try:
        model.load_state_dict(strip_module_prefix(state))
    except RuntimeError as exc:
        raise FlowguideError(f"{path}: not a torchvision {backend} state_dict: {exc}") from exc
    return model.eval(), what, str(path)


def padding_for(size: int) -> tuple[int, int]:
    """(before, after) padding that brings ``size`` to RAFT's constraints, centred."""
    target = max(RAFT_MIN_SIDE, math.ceil(size / RAFT_MULTIPLE) * RAFT_MULTIPLE)
    extra = target - size
    return extra // 2, extra - extra // 2


class RaftBackend:
    """torchvision RAFT with its own preprocessing (``weights.transforms()``: [-1, 1]).

    Frame pairs are batched on the device; inputs are padded (replicate) to a multiple of 8 and
    at least 128 px, and the flow is cropped back to the frame size.
    """

    def __init__(
        self,
        name: str,
        model,
        weights: str,
        weights_file: str | None,
        device: str = "cpu",
        num_flow_updates: int = 20,
        batch_size: int = 8,
        amp: bool = False,
    ) -> None:
        import torch

        self.name = name
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.weights = weights
        self.weights_file = weights_file
        self.num_flow_updates = num_flow_updates
        self.batch_size = batch_size
        self.amp = amp and self.device.type == "cuda"
        if amp and not self.amp:
            log.warning("flow.amp is for CUDA only; running in float32 on %s", self.device)
        self.transforms = raft_weights_enum(name).DEFAULT.transforms()

    def compute_pairs(self, frames: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        import torch

        height, width = frames.shape[1:3]
        pairs = np.asarray(pairs, dtype=np.int64)
        out = np.empty((len(pairs), 2, height, width), dtype=np.float32)
        clip = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2)
        for begin in range(0, len(pairs), self.batch_size):
            batch = torch.from_numpy(pairs[begin : begin + self.batch_size]).to(self.device)
            flow = self.batch_flow(clip[batch[:, 0]], clip[batch[:, 1]])
            out[begin : begin + len(batch)] = flow.cpu().numpy()
        return out

    def batch_flow(self, src, dst):
        """(B, 2, H, W) float32 flow of uint8 (B, 3, H, W) frame batches on the device."""
        import torch
        import torch.nn.functional as F

        height, width = src.shape[-2:]
        (top, bottom), (left, right) = padding_for(height), padding_for(width)
        with torch.inference_mode():
            img1, img2 = self.transforms(src, dst)
            pad = (left, right, top, bottom)
            img1 = F.pad(img1, pad, mode="replicate")
            img2 = F.pad(img2, pad, mode="replicate")
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                flow = self.model(img1, img2, num_flow_updates=self.num_flow_updates)[-1]
            return flow[:, :, top : top + height, left : left + width].float()

    def describe(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "weights_file": self.weights_file or "none",
            "num_flow_updates": self.num_flow_updates,
            "batch_size": self.batch_size,
            "amp": self.amp,
            "device": str(self.device),
            "preprocessing": "torchvision weights.transforms(): uint8 -> [-1, 1]; replicate-pad "
            f"to a multiple of {RAFT_MULTIPLE} (at least {RAFT_MIN_SIDE} px), flow cropped back",
        }


def build_backend(options: dict[str, Any], device: str = "auto") -> FlowBackend:
    """The backend of a validated ``flow`` config section (RAFT on a claimed device)."""
    name = options["backend"]
    if name in OPENCV_BACKENDS:
        return OpenCVBackend(name, options.get("dis_preset", "medium"))
    if name not in RAFT_BACKENDS:
        raise FlowguideError(f"flow.backend {name!r}: expected one of {', '.join(BACKENDS)}")
    model, weights, weights_file = load_raft(name, options.get("weights"))
    return RaftBackend(
        name,
        model,
        weights,
        weights_file,
        device=resolve_device(device),
        num_flow_updates=options["num_flow_updates"],
        batch_size=options["batch_size"],
        amp=options["amp"],
    )
