"""The method registry: a training method is a small object the one training loop consults.

A method may change the input transform (RandAugment, OGL Transform), the initialisation
(random or Kinetics-400), wrap the model (e.g. an attention branch), and add named loss terms
to the weighted cross-entropy. Guided methods (ogl_dice, rrr_gradcam, rrr_ogl, abn) plug in by
subclassing ``Method`` and decorating the class with ``@register_method``.

Contract of the hooks (all optional):

- ``forward(model, clip, ctx) -> logits``: default ``forward_clip(model, clip, ctx.alpha)``.
- ``loss_terms(model, batch, logits, ctx) -> {name: scalar tensor}``: each term is a *mean over
  the loader batch*; the loop adds them to the CE and rescales for gradient accumulation.
  ``batch`` holds ``clip`` (B,C,T,H,W; ``requires_grad`` when ``needs_input_grad``), ``label``
  (B,), ``index`` (B,) dataset positions (stable ids for per-sample statistics), ``vid_name``
  and, when ``needs_masks``, ``mask`` (B,T,H,W) bool aligned with the clip's pixels.
- ``ce_weight``: factor on the weighted cross-entropy (default 1; OGL + Dice's ``ce_weight``).
- ``wrap_model(model) -> model``: called once, before the optimiser is built.
- ``state_dict()/load_state_dict()``: per-sample statistics kept across epochs; saved in every
  checkpoint (plain types and tensors only, so ``torch.load(weights_only=True)`` reads it).
- ``end_epoch(ctx)``: called after each epoch (e.g. to update percentiles).
- ``prepare(model_spec, num_train)``: called once before the model is built, with the SlowFast
  spec and the number of training clips (per-sample statistics, the attention branch's size).
- ``end_step(ctx)``: called after every optimiser step, on every process of a distributed run
  (the same number of times on each); ``ctx.gather(obj)`` returns the list of every process's
  ``obj`` in rank order (``[obj]`` in a single process), so per-sample statistics stay equal.
- ``epoch_metrics() -> {name: float}``: extra metrics.csv columns for the epoch just run (reset
  by the call).

``forward`` must return the logits; a method that needs more of the forward (recorded
activations, the attention branch's output) keeps it until ``loss_terms`` takes it. Every
forward of a method with a ``PathwayRecorder`` takes the activations, in evaluation too, so no
activation outlives its step.

Options come from config ``train.method_options.<name>``; unknown keys are errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from flowguide.utils.failures import FlowguideError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from flowguide.modeling.slowfast import SlowFastSpec


class MethodError(FlowguideError):
    """An unknown method name or a bad method option."""


@dataclass
class TrainContext:
    """What a method's hooks may need besides the batch."""

    alpha: int
    num_classes: int
    class_weights: torch.Tensor
    device: torch.device
    epoch: int = 0
    global_batch: int = 0  # loader batches seen so far
    extra: dict[str, Any] = field(default_factory=dict)
    gather: Callable[[Any], list[Any]] = field(default=lambda obj: [obj])


class Method:
    name: ClassVar[str] = ""
    needs_masks: ClassVar[bool] = False
    init: ClassVar[str] = "random"  # "random" | "kinetics"
    randaugment: ClassVar[bool] = False
    needs_input_grad: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    # "main": the dataset's training split; "no_cue": SynthDive's twin training split whose cue
    # is independent of the label (the workflow builds it; see workflow/rules/data.smk).
    training_set: ClassVar[str] = "main"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise MethodError(
                f"train.method_options.{self.name}: unknown option(s) {unknown}; known: {known}"
            )
        self.options: dict[str, Any] = {**self.defaults, **options}

    @property
    def ogl_p(self) -> float:
        """Probability of the OGL Transform (input masked by the diver mask); 0 = off."""
        return 0.0

    @property
    def ce_weight(self) -> float:
        """Factor on the weighted cross-entropy term (OGL + Dice: its ``ce_weight``)."""
        return 1.0

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def forward(self, model: nn.Module, clip: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        from flowguide.modeling.slowfast import forward_clip

        return forward_clip(model, clip, ctx.alpha)

    def loss_terms(
        self, model: nn.Module, batch: dict[str, Any], logits: torch.Tensor, ctx: TrainContext
    ) -> dict[str, torch.Tensor]:
        return {}

    def end_epoch(self, ctx: TrainContext) -> None:
        return None

    def prepare(self, model_spec: SlowFastSpec, num_train: int) -> None:
        return None

    def end_step(self, ctx: TrainContext) -> None:
        return None

    def epoch_metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise MethodError(f"method {self.name} keeps no state but the checkpoint has some")


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method {cls.name!r} registered twice")
    if cls.init not in ("random", "kinetics"):
        raise ValueError(f"method {cls.name!r}: init must be 'random' or 'kinetics'")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise MethodError(f"unknown training method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def create_method(name: str, method_options: Mapping[str, Any] | None = None) -> Method:
    """``method_options`` is the config's ``train.method_options`` (all methods' options)."""
    return method_class(name)((method_options or {}).get(name))


def needs_masks(name: str) -> bool:
    """For the Snakefile: does this method read the diver-mask shards?"""
    return method_class(name).needs_masks


def training_set(name: str) -> str:
    """For the Snakefile: which training split the method reads ("main" or "no_cue")."""
    return method_class(name).training_set
