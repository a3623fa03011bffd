"""What every explainer shares: result type, forward-pass counter, pixel-space fills, batching.

An explainer sees the model only as ``model_fn``: a (N, C, T, H, W) batch of clips, already
normalised for the model, -> (N, classes) logits. Perturbation methods reason in pixel space
("black" is the colour 0 there), so the clip's normalisation (pixel = clip * std + mean, pixels in
[0, 1]) is part of the options.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

ModelFn = Callable[[Tensor], Tensor]

# pytorchvideo's Kinetics normalisation, in [0, 1] pixel units (the SlowFast recipe's default).
DEFAULT_PIXEL_MEAN = (0.45, 0.45, 0.45)
DEFAULT_PIXEL_STD = (0.225, 0.225, 0.225)


@dataclass
class ExplanationResult:
    """A relevance map (T, H, W) float32 on the CPU (higher = more relevant) and its cost."""

    map: Tensor
    forward_passes: int
    seconds: float
    backward_passes: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class CountingModel:
    """Wraps ``model_fn``: counts clips sent through it, runs under inference mode on demand.

    ``forward_passes`` counts clips (one perturbed clip = one pass), not batches, so that the
    figure does not depend on ``batch_size``.
    """

    def __init__(self, model_fn: ModelFn, output: str = "prob") -> None:
        if output not in ("prob", "logit"):
            raise ValueError(f"output must be 'prob' or 'logit', not {output!r}")
        self.model_fn = model_fn
        self.output = output
        self.forward_passes = 0
        self.batches = 0

    def scores(self, clips: Tensor) -> Tensor:
        """(N, classes) class probabilities (or logits) of a batch, without autograd."""
        with torch.inference_mode():
            logits = self.model_fn(clips)
            out = logits.softmax(dim=1) if self.output == "prob" else logits
        self.forward_passes += clips.shape[0]
        self.batches += 1
        # A clone made outside inference mode is an ordinary tensor that callers (captum) may
        # modify in place.
        return out.float().clone()

    __call__ = scores

    def target_scores(self, clips: Tensor, target: int, batch_size: int) -> Tensor:
        """(N,) score of class ``target`` for many clips, ``batch_size`` at a time."""
        return torch.cat([self.scores(b)[:, target] for b in split_batches(clips, batch_size)])


def split_batches(clips: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, clips.shape[0], max(1, batch_size)):
        yield clips[start : start + batch_size]


def channel_stats(options: dict[str, Any], clip: Tensor) -> tuple[Tensor, Tensor]:
    """(C, 1, 1, 1) mean and std tensors of the clip's normalisation, on its device."""
    c = clip.shape[0]
    mean = torch.as_tensor(options.get("pixel_mean", DEFAULT_PIXEL_MEAN), dtype=clip.dtype)
    std = torch.as_tensor(options.get("pixel_std", DEFAULT_PIXEL_STD), dtype=clip.dtype)
    if mean.numel() not in (1, c) or std.numel() not in (1, c):
        raise ValueError(f"pixel_mean/pixel_std need 1 or {c} values")
    shape = (-1, 1, 1, 1)
    return (
        mean.expand(c).reshape(shape).to(clip.device),
        std.expand(c).reshape(shape).to(clip.device),
    )


def black_fill(clip: Tensor, options: dict[str, Any]) -> Tensor:
    """(C, 1, 1, 1) model-space value of a black pixel: (0 - mean) / std per channel."""
    mean, std = channel_stats(options, clip)
    return -mean / std


def to_pixels(clip: Tensor, options: dict[str, Any]) -> Tensor:
    """Model-space clip (C, T, H, W) -> pixel-space clip, values nominally in [0, 1]."""
    mean, std = channel_stats(options, clip)
    return clip * std + mean


def blend(clip: Tensor, fill: Tensor, keep: Tensor) -> Tensor:
    """Clips with ``keep`` (N, T, H, W) in [0, 1] kept and the rest faded to ``fill``.

    Linear in pixel space, so with a black fill this is RISE's I * M.
    """
    keep = keep.to(clip.dtype).unsqueeze(1)  # (N, 1, T, H, W)
    return fill.unsqueeze(0) + keep * (clip - fill).unsqueeze(0)


def segments_to_map(values: Tensor, segments: Tensor) -> Tensor:
    """Paint each voxel with its segment's value: values (S,), segments (T, H, W) int ids 0..S-1."""
    return values.to(torch.float32)[segments.long()]


def finish(
    relevance: Tensor, counter: CountingModel, started: float, **extras: Any
) -> ExplanationResult:
    return ExplanationResult(
        map=relevance.detach().to("cpu", torch.float32),
        forward_passes=counter.forward_passes,
        seconds=time.perf_counter() - started,
        extras={"batches": counter.batches, **extras},
    )


def as_int_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(f"{name} needs {n} values, got {list(out)}")
    return out


class ModuleFn(torch.nn.Module):
    """A ``model_fn`` that is also an nn.Module (guided backprop must find the network's ReLUs).

    ``ModuleFn(model, lambda m, x: forward_clip(m, x, alpha))`` for SlowFast.
    """

    def __init__(
        self, module: torch.nn.Module, forward: Callable[[torch.nn.Module, Tensor], Tensor]
    ):
        super().__init__()
        self.module = module
        self._forward = forward

    def forward(self, clips: Tensor) -> Tensor:
        return self._forward(self.module, clips)
