"""The one loader of a trained model, for the stages after training (evaluate, explain).

A train-stage checkpoint (``flowguide.train/1``, written by ``flowguide.train.loop``) holds the
SlowFast spec (``model_spec``), the Object-ABN spec (``abn_spec``, null for the other methods),
the weights and what a reader needs to feed the model: T, SlowFast's alpha and the transform
parameters. ``load_trained`` rebuilds the model from those specs (no code from the file runs:
``weights_only=True``) and hands back a ``model_fn`` that gives plain logits for every method
(the perception branch's for ABN). It lives in ``modeling`` because stages may not import each
other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from flowguide.modeling.abn import ABNSpec, wrap_abn
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip, pack_pathways
from flowguide.utils.checkpoints import load_weights
from flowguide.utils.failures import FlowguideError

REQUIRED_KEYS = ("model_spec", "model", "alpha", "T", "num_classes", "transform", "method")


@dataclass
class TrainedModel:
    model: nn.Module  # eval mode, on the device
    model_fn: Callable[[torch.Tensor], torch.Tensor]  # (B, C, T, H, W) -> logits (B, K)
    alpha: int
    T: int
    num_classes: int
    transform: dict[str, Any]  # the TransformSpec fields the checkpoint stores
    method: str
    abn: bool
    meta: dict[str, Any] = field(repr=False)  # the checkpoint without its tensors of state

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sampling(self) -> str:
        """The frame sampling the model was trained with (clips.sampling); evaluation uses it."""
        return str(dict(self.meta.get("train_options") or {}).get("sampling", "stride"))

    @property
    def backbone(self) -> nn.Module:
        """The SlowFast itself (inside the ABN wrapper), whose pathway stages GradCAM hooks."""
        return self.model.backbone if self.abn else self.model

    def attention_maps(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """ABN's own attention maps, name -> (B, T, h, w) in [0, 1]; empty for other methods."""
        if not self.abn:
            return {}
        out = self.model(pack_pathways(clips, self.alpha))
        return {f"abn_{name}": value for name, value in out.maps.items()}


def load_trained(checkpoint_path: str | os.PathLike, device: torch.device | str) -> TrainedModel:
    """Rebuild the trained SlowFast (ABN-wrapped when the checkpoint says so), eval mode."""
    state = load_weights(
        checkpoint_path,
        "trained SlowFast",
        "It is written by the train stage (results/train/<run>/T<T>/checkpoint.pt).",
    )
    if not isinstance(state, Mapping):
        raise FlowguideError(f"{checkpoint_path}: not a training checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise FlowguideError(f"{checkpoint_path}: not a training checkpoint (missing {missing})")
    model = build_slowfast(SlowFastSpec(**state["model_spec"]))
    abn_spec = state.get("abn_spec")
    if abn_spec is not None:
        model = wrap_abn(model, ABNSpec(**abn_spec))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        msg = f"{checkpoint_path}: weights do not match the stored spec: {exc}"
        raise FlowguideError(msg) from None
    device = torch.device(device)
    model = model.eval().to(device)
    alpha = int(state["alpha"])
    meta = {
        key: value
        for key, value in state.items()
        if key not in ("model", "optimizer", "scheduler", "rng", "method_state")
    }
    return TrainedModel(
        model=model,
        model_fn=_logits_fn(model, alpha, abn_spec is not None),
        alpha=alpha,
        T=int(state["T"]),
        num_classes=int(state["num_classes"]),
        transform=dict(state["transform"]),
        method=str(state["method"]),
        abn=abn_spec is not None,
        meta=meta,
    )


def _logits_fn(model: nn.Module, alpha: int, abn: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if abn:
        return lambda clips: model(pack_pathways(clips, alpha)).logits
    return lambda clips: forward_clip(model, clips, alpha)
