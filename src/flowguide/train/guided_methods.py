"""The guided methods of issue 6 (OGL + Dice, RRR + OGL, RRR + GradCAM, Object-ABN).

They plug into the registry of ``flowguide.train.method_base`` (where the hooks' contract is
documented); ``flowguide.train.methods`` imports this module, so every name is registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowguide.train.method_base import Method, MethodError, TrainContext, register_method

if TYPE_CHECKING:
    import torch
    from torch import nn

    from flowguide.modeling.slowfast import SlowFastSpec

# --- the guided methods of issue 6 -----------------------------------------------------------
# All four start from Kinetics-400 as in the thesis' Table 5.1 ("initialized with Kinetics
# pre-trained weights"; Object-ABN likewise fine-tunes a pre-trained backbone); config
# train.model.kinetics false turns that off for every method (the loop's _init_model).


def _check_range(method: str, key: str, value: Any, lo: float, hi: float | None = None) -> None:
    ok = value is not None and float(value) >= lo and (hi is None or float(value) <= hi)
    if not ok:
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise MethodError(f"train.method_options.{method}.{key} must be {bound}, got {value!r}")


class _RecorderMethod(Method):
    """A method that reads the last residual stage's activations of every forward."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._recorder = None
        self._activations: list[torch.Tensor] | None = None

    def wrap_model(self, model: nn.Module) -> nn.Module:
        from flowguide.modeling.gradcam import PathwayRecorder

        self._recorder = PathwayRecorder(model)
        return model

    def forward(self, model: nn.Module, clip: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        import torch

        logits = super().forward(model, clip, ctx)
        if self._recorder is None:
            raise MethodError(f"method {self.name}: wrap_model was not called on this model")
        acts = self._recorder.take()  # taken in evaluation too, so nothing is held
        self._activations = acts if torch.is_grad_enabled() else None
        return logits

    def take_activations(self) -> list[torch.Tensor]:
        if self._activations is None:
            raise MethodError(f"method {self.name}: loss_terms without a forward")
        acts, self._activations = self._activations, None
        return acts


@register_method
class OGLDice(_RecorderMethod):
    """Thesis 4.3.2: Dice between each pathway's differentiable GradCAM (true label) and the
    diver mask, weighted ``dice_weight``; the cross-entropy weighted ``ce_weight``.

    The thesis uses two conventions for its alpha: the equation of Section 4.3.2 puts alpha on
    the Dice term (L = alpha * Dice + beta * CE), while Section 5.2 and Figure 5.2 put it on the
    cross-entropy ("alpha = 0 ... leaving only the Dice loss"). The options are therefore named
    for what they weigh. Either may be null, meaning 1 minus the other (both null: 0.5 each), so
    a sweep over ``ce_weight`` draws Figure 5.2 on Section 5.2's axis with Dice = 1 - alpha.
    """

    name = "ogl_dice"
    init = "kinetics"
    needs_masks = True
    defaults = {"dice_weight": None, "ce_weight": None}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.dice_weight, self._ce_weight = ogl_dice_weights(
            self.options["dice_weight"], self.options["ce_weight"]
        )

    @property
    def ce_weight(self) -> float:
        return self._ce_weight

    def loss_terms(self, model, batch, logits, ctx):
        from flowguide.train.losses import ogl_dice_terms

        acts = self.take_activations()
        return ogl_dice_terms(
            logits, batch["label"], acts, batch["mask"], ctx.alpha, self.dice_weight
        )


def ogl_dice_weights(dice: float | None, ce: float | None) -> tuple[float, float]:
    """(Dice weight, CE weight) from the options; a null one is 1 minus the other, and no
    weight may come out negative (dice_weight 2 with ce_weight null would give CE -1)."""
    key = "train.method_options.ogl_dice"
    for name, value in (("dice_weight", dice), ("ce_weight", ce)):
        if value is not None:
            _check_range("ogl_dice", name, value, 0.0)
    if dice is None and ce is None:
        return 0.5, 0.5
    if dice is None or ce is None:
        given, name = (ce, "ce_weight") if dice is None else (dice, "dice_weight")
        if float(given) > 1.0:
            other = "dice_weight" if dice is None else "ce_weight"
            raise MethodError(
                f"{key}.{name} = {given} with {other} null would make {other} = 1 - {given} < 0;"
                f" set {other} explicitly"
            )
        return (1.0 - float(ce), float(ce)) if dice is None else (float(dice), 1.0 - float(dice))
    return float(dice), float(ce)


@register_method
class RRROGL(Method):
    """Thesis 4.4: RRR penalty on the input gradient outside the diver mask."""

    name = "rrr_ogl"
    init = "kinetics"
    needs_masks = True
    needs_input_grad = True
    defaults = {"lambda": 0.01, "reduction": "sum"}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        _check_range(self.name, "lambda", self.options["lambda"], 0.0)
        _check_reduction(self.name, self.options["reduction"])

    def loss_terms(self, model, batch, logits, ctx):
        from flowguide.train.losses import rrr_ogl_terms

        return rrr_ogl_terms(
            logits,
            batch["clip"],
            batch["mask"],
            float(self.options["lambda"]),
            self.options["reduction"],
        )


def _check_reduction(method: str, value: Any) -> None:
    from flowguide.train.losses import RRR_REDUCTIONS

    if value not in RRR_REDUCTIONS:
        raise MethodError(
            f"train.method_options.{method}.reduction must be one of {RRR_REDUCTIONS}, "
            f"got {value!r}"
        )


@register_method
class RRRGradCAM(_RecorderMethod):
    """Thesis 4.4: RRR penalty inside the model's own thresholded GradCAM, on the samples whose
    moving-average loss is in the worst ``percentile`` percent.

    The per-sample averages (``WorstPerformerTracker``) are refreshed after every optimiser
    step with the losses of that step's samples, gathered from every process, so the selection
    within one optimiser batch uses the statistics as of its start, whatever the number of
    processes. The tracker is the method's state, saved in every checkpoint.
    """

    name = "rrr_gradcam"
    init = "kinetics"
    needs_masks = False  # the region is the model's own GradCAM, not the diver mask
    needs_input_grad = True
    defaults = {
        "lambda": 0.01,
        "percentile": 10.0,
        "momentum": 0.9,
        "threshold": 0.5,
        "cam_target": "predicted",
        "reduction": "sum",
    }

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        _check_range(self.name, "lambda", o["lambda"], 0.0)
        _check_range(self.name, "percentile", o["percentile"], 1e-9, 100.0)
        _check_range(self.name, "momentum", o["momentum"], 0.0, 0.999999)
        _check_range(self.name, "threshold", o["threshold"], 0.0, 1.0)
        _check_reduction(self.name, o["reduction"])
        if o["cam_target"] not in ("predicted", "label"):
            raise MethodError(
                f"train.method_options.{self.name}.cam_target must be 'predicted' or 'label', "
                f"got {o['cam_target']!r}"
            )
        self.tracker = None
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def prepare(self, model_spec: SlowFastSpec, num_train: int) -> None:
        from flowguide.train.worst import WorstPerformerTracker

        self.tracker = WorstPerformerTracker(
            num_train, float(self.options["percentile"]), float(self.options["momentum"])
        )

    def _require_tracker(self):
        if self.tracker is None:
            raise MethodError(f"method {self.name}: prepare() was not called")
        return self.tracker

    def loss_terms(self, model, batch, logits, ctx):
        import torch.nn.functional as F

        from flowguide.train.losses import rrr_gradcam_terms

        tracker = self._require_tracker()
        acts = self.take_activations()
        index = batch["index"]
        selected = tracker.select(index)
        terms = rrr_gradcam_terms(
            logits,
            batch["label"],
            batch["clip"],
            acts,
            selected,
            float(self.options["lambda"]),
            float(self.options["threshold"]),
            self.options["cam_target"],
            self.options["reduction"],
        )
        ce = F.cross_entropy(logits.detach(), batch["label"], reduction="none")
        self._pending.append((index.detach().cpu().long(), ce.cpu()))
        return terms

    def end_step(self, ctx: TrainContext) -> None:
        import torch

        tracker = self._require_tracker()
        mine = (
            (torch.cat([i for i, _ in self._pending]), torch.cat([v for _, v in self._pending]))
            if self._pending
            else (torch.zeros(0, dtype=torch.long), torch.zeros(0))
        )
        self._pending = []
        for index, losses in ctx.gather(mine):  # rank order = the single-process batch order
            if len(index):
                tracker.update(index, losses)

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self._require_tracker().state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._require_tracker().load_state_dict(dict(state["tracker"]))


@register_method
class ABN(Method):
    """Object-ABN (paper 001): an attention branch on the last residual stage whose maps gate
    the features; its own CE, and (mode mask | mha) an MSE between the object map and the diver
    mask. The loop's CE is the perception branch's; metrics.csv gets the maps' mean entropy
    (paper 001's Eq. 11, bits) over the epoch's training batches as
    ``abn_eq11_entropy_bits`` (not the evaluate stage's ``norm_entropy``, a normalised Shannon
    entropy of a map in [0, 1])."""

    name = "abn"
    init = "kinetics"
    needs_masks = True
    defaults = {
        "mode": "mask",
        "source": "both",
        "width": 256,
        "pc": False,
        "weights": {
            "att": 1.0,
            "mask": 10.0,
            "mha": 10.0,
            "background": 1.0,
            "pc": 1e-4,
            "pc1": 1.0,
            "pc2": 1e-3,
        },
    }

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        from flowguide.modeling.abn import MAP_NAMES, ABNLossWeights

        given = dict(options or {})
        weights = {**self.defaults["weights"], **dict(given.pop("weights", None) or {})}
        super().__init__({**given, "weights": weights})
        try:
            self.loss_weights = ABNLossWeights(**{k: float(v) for k, v in weights.items()})
        except TypeError as exc:
            raise MethodError(f"train.method_options.abn.weights: {exc}") from None
        if self.options["mode"] not in MAP_NAMES:
            raise MethodError(
                f"train.method_options.abn.mode must be one of {sorted(MAP_NAMES)}, "
                f"got {self.options['mode']!r}"
            )
        if self.options["source"] not in ("fast", "both"):
            raise MethodError(
                f"train.method_options.abn.source must be 'fast' or 'both', "
                f"got {self.options['source']!r}"
            )
        _check_range(self.name, "width", self.options["width"], 1)
        self.spec = None
        self._out = None
        self._entropy_sum = 0.0
        self._entropy_n = 0

    def prepare(self, model_spec: SlowFastSpec, num_train: int) -> None:
        from flowguide.modeling.abn import ABNSpec

        o = self.options
        self.spec = ABNSpec(
            num_classes=model_spec.num_classes,
            alpha=model_spec.alpha,
            mode=o["mode"],
            source=o["source"],
            width=int(o["width"]),
            pc=bool(o["pc"]),
        )

    def wrap_model(self, model: nn.Module) -> nn.Module:
        from flowguide.modeling.abn import wrap_abn

        if self.spec is None:
            raise MethodError("method abn: prepare() was not called")
        return wrap_abn(model, self.spec)

    def forward(self, model: nn.Module, clip: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        import torch

        from flowguide.modeling.slowfast import pack_pathways

        out = model(pack_pathways(clip, ctx.alpha))
        self._out = out if torch.is_grad_enabled() else None  # no loss without a graph
        return out.logits

    def loss_terms(self, model, batch, logits, ctx):
        from flowguide.modeling.abn import abn_loss_terms, eq11_entropy_bits

        out, self._out = self._out, None
        if out is None or out.logits is not logits:
            raise MethodError("method abn: loss_terms without its training forward")
        first = out.maps["object" if "object" in out.maps else next(iter(out.maps))]
        entropy = eq11_entropy_bits(first)
        self._entropy_sum += float(entropy.sum())
        self._entropy_n += int(entropy.numel())
        centroids = getattr(model, "centroids", None)
        return abn_loss_terms(
            out,
            batch["label"],
            batch.get("mask"),
            self.loss_weights,
            centroids=centroids,
            class_weight=ctx.class_weights,
        )

    def epoch_metrics(self) -> dict[str, float]:
        if not self._entropy_n:
            return {}
        value = self._entropy_sum / self._entropy_n
        self._entropy_sum, self._entropy_n = 0.0, 0
        return {"abn_eq11_entropy_bits": value}
