"""The SAM backend's weights: which files each mode needs, strict loading, provenance.

Modes (``segment.sam.mode``):

- ``flowp`` (FlowP-SAM, the thesis' segmenter): SAM ViT-H on the RGB frame (image and prompt
  encoders), SAM ViT-B on the flow images (image encoder), and the FlowP-SAM decoder
  checkpoint (flow prompt generator, MOS head);
- ``flowi`` (FlowI-SAM): SAM ViT-B on the flow images and the FlowI-SAM decoder checkpoint;
- ``sam_on_flow``: plain SAM on the flow images, no FlowSAM weights. An explicit choice, never
  a fallback: ``flowi``/``flowp`` without their FlowSAM checkpoint stop with an error.

Every file is checked before anything is loaded, and one error lists all the missing ones
with where to get them and the config key that takes them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowguide.utils.checkpoints import MissingWeightsError, load_weights
from flowguide.utils.failures import FlowguideError

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
FLOWSAM_URL = "https://drive.google.com/drive/folders/16I6zjJI4FCxhdGVIXgDddC5c64raKEuu"
FLOWSAM_FILES = {
    "flowp": "frame_level_flowpsam_vitbvith_train_on_oclrsyn_dvs17.pth (or the dvs16 one)",
    "flowi": "the FlowI-SAM (vitb) .pth",
}
MODES = ("flowp", "flowi", "sam_on_flow")


@dataclass(frozen=True)
class WeightFile:
    role: str  # what the file is used for
    key: str  # config key that takes its path
    path: str | None
    source: str  # where to get it

    @property
    def missing(self) -> bool:
        return not self.path or not Path(self.path).expanduser().is_file()


def required_files(params: Any) -> list[WeightFile]:
    """The weight files ``params.mode`` needs, in the order they are loaded."""
    if params.mode not in MODES:
        raise FlowguideError(f"segment.sam.mode {params.mode!r}: expected one of {MODES}")
    flow_sam = WeightFile(
        f"SAM {params.model_type} (flow encoder)",
        "segment.sam.checkpoint",
        params.checkpoint,
        SAM_URL + SAM_FILES[params.model_type],
    )
    if params.mode == "sam_on_flow":
        if params.flowsam_checkpoint:
            raise FlowguideError(
                "segment.sam.mode 'sam_on_flow' runs plain SAM: unset "
                "segment.sam.flowsam_checkpoint, or choose mode flowi/flowp to use it"
            )
        return [flow_sam]
    decoder = WeightFile(
        f"{'FlowP' if params.mode == 'flowp' else 'FlowI'}-SAM decoder",
        "segment.sam.flowsam_checkpoint",
        params.flowsam_checkpoint,
        f"{FLOWSAM_FILES[params.mode]} from {FLOWSAM_URL}",
    )
    if params.mode == "flowi":
        return [flow_sam, decoder]
    rgb_sam = WeightFile(
        f"SAM {params.rgb_model_type} (RGB encoder and prompt encoder)",
        "segment.sam.rgb_checkpoint",
        params.rgb_checkpoint,
        SAM_URL + SAM_FILES[params.rgb_model_type],
    )
    return [rgb_sam, flow_sam, decoder]


def raft_file(flow: dict[str, Any]) -> WeightFile | None:
    """The RAFT weights file of a validated ``flow`` section (None for OpenCV backends)."""
    from flowguide.flow.backends import RAFT_BACKENDS, named_weights, resolve_raft_checkpoint

    if flow["backend"] not in RAFT_BACKENDS:
        return None
    _, path, _ = resolve_raft_checkpoint(flow["backend"], flow.get("weights"))
    member = named_weights(flow["backend"], flow.get("weights"))
    source = member.url if member is not None else "your RAFT training (a torchvision state_dict)"
    return WeightFile(f"RAFT {flow['backend']}", "flow.weights", str(path), source)


def missing_message(what: str, missing: list[WeightFile]) -> str:
    lines = [
        f"  - {f.role}: {f.path or '(not set)'} -> set {f.key}; get it from {f.source}"
        for f in missing
    ]
    return (
        f"{what} needs {len(missing)} missing weight file(s) (nothing is downloaded):\n"
        + "\n".join(lines)
        + "\n(segment.sam.mode: sam_on_flow runs plain SAM on flow images without FlowSAM "
        "weights; segment.backend: motion needs no weights.)"
    )


def check_weight_files(params: Any) -> list[WeightFile]:
    """All files of the mode, or one MissingWeightsError listing every missing one."""
    files = required_files(params)
    missing = [f for f in files if f.missing]
    if missing:
        what = f"segment.backend 'sam' with segment.sam.mode {params.mode!r}"
        raise MissingWeightsError(missing_message(what, missing))
    return files


def check_workflow_weights(config: dict[str, Any]) -> None:
    """Called when the workflow loads: the flow and segment stages' weight files, all missing
    ones in one error, before any job runs (config validated, defaults filled)."""
    from flowguide.segment.sam import SamParams

    segment = config["segment"]
    files = []
    raft = raft_file(config["flow"])
    if raft is not None:
        files.append(raft)
    what = f"flow.backend {config['flow']['backend']!r}, segment.backend {segment['backend']!r}"
    if segment["backend"] == "sam":
        params = SamParams.from_options(segment)
        files += required_files(params)
        what += f" with segment.sam.mode {params.mode!r}"
    missing = [f for f in files if f.missing]
    if missing:
        raise MissingWeightsError(missing_message(what, missing))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(files: list[WeightFile]) -> list[dict[str, str]]:
    """Provenance for the candidates file: role, config key, file name, sha256."""
    return [
        {
            "role": f.role,
            "key": f.key,
            "file": Path(str(f.path)).name,
            "sha256": sha256_file(f.path),
        }
        for f in files
    ]


def load_strict(module: torch.nn.Module, state: Any, path: str | os.PathLike, what: str) -> None:
    """Load ``state`` into ``module``: every key used, none missing, shapes equal; an error names
    the offending keys."""
    if not isinstance(state, dict):
        raise FlowguideError(f"{path}: expected a {what} state dict, found {type(state).__name__}")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            problems.append(f"{label} key(s): {shown}")
    if problems:
        raise FlowguideError(f"{path}: not a {what} checkpoint: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def flowsam_state(path: str | os.PathLike, what: str) -> Any:
    """The decoder state of an official FlowSAM file ({'model_state_dict': ..., ...})."""
    state = load_weights(path, what, f"get it from {FLOWSAM_URL}")
    if isinstance(state, dict) and "model_state_dict" in state:
        return state["model_state_dict"]
    return state


def load_sam(model_type: str, path: str) -> torch.nn.Module:
    """A whole segment-anything SAM of ``model_type``, strictly loaded from ``path``."""
    from segment_anything import sam_model_registry

    sam = sam_model_registry[model_type](checkpoint=None)
    load_strict(sam, load_weights(path, f"SAM {model_type}"), path, f"SAM {model_type}")
    return sam


def build_segmentation_model(params: Any) -> tuple[torch.nn.Module, list[dict[str, str]]]:
    """The model of ``params.mode`` with its weights, and the files' provenance."""
    from flowguide.segment.flowp import FlowPSam, build_flowp_decoder

    files = check_weight_files(params)
    if params.mode == "flowp":
        rgb = load_sam(params.rgb_model_type, params.rgb_checkpoint)
        flow = load_sam(params.model_type, params.checkpoint)
        decoder = build_flowp_decoder()
        load_strict(decoder, flowsam_state(params.flowsam_checkpoint, "FlowP-SAM"),
                    params.flowsam_checkpoint, "FlowP-SAM decoder")  # fmt: skip
        model: torch.nn.Module = FlowPSam(
            rgb.image_encoder, flow.image_encoder, rgb.prompt_encoder, decoder
        )
    else:
        model = load_sam(params.model_type, params.checkpoint)
        if params.mode == "flowi":
            # FlowI-SAM's decoder has exactly segment-anything's MaskDecoder parameters (its
            # IoU head predicts the foreground IoU).
            load_strict(model.mask_decoder, flowsam_state(params.flowsam_checkpoint, "FlowI-SAM"),
                        params.flowsam_checkpoint, "FlowI-SAM decoder")  # fmt: skip
    return model.eval(), describe_files(files)
