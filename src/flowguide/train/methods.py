"""The training methods by name: the registry (``flowguide.train.method_base``, where the hooks'
contract is documented), the plain methods of issue 5 here, and the guided methods of issue 6
(``flowguide.train.guided_methods``). Import methods from this module: it registers them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowguide.train.guided_methods import ABN, RRROGL, OGLDice, RRRGradCAM, ogl_dice_weights
from flowguide.train.method_base import (
    METHODS,
    Method,
    MethodError,
    TrainContext,
    create_method,
    method_class,
    needs_masks,
    register_method,
    training_set,
)

# --- the methods of issue 5 ------------------------------------------------------------------


@register_method
class Vanilla(Method):
    name = "vanilla"


@register_method
class NoCue(Vanilla):
    """The confounder-off control (SynthDive only): vanilla training on the same dives, whose
    planted cue is independent of the label in train as in test. It shows what the model can
    learn from the diver alone, the ceiling a method that ignores the cue can reach."""

    name = "no_cue"
    training_set = "no_cue"


@register_method
class Kinetics(Method):
    name = "kinetics"
    init = "kinetics"


@register_method
class RandAug(Method):
    name = "randaug"
    init = "kinetics"
    randaugment = True


@register_method
class OGLTransform(Method):
    """Thesis Section 4.3.3: the input is segmented by the diver mask with probability p."""

    name = "ogl_transform"
    init = "kinetics"
    needs_masks = True
    defaults = {"p": 0.5}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        p = self.options["p"]
        if not 0.0 <= float(p) <= 1.0:
            raise MethodError(f"train.method_options.ogl_transform.p must be in [0, 1], got {p}")

    @property
    def ogl_p(self) -> float:
        return float(self.options["p"])


__all__ = [
    "ABN", "METHODS", "RRROGL", "Kinetics", "Method", "MethodError", "NoCue", "OGLDice",
    "OGLTransform", "RRRGradCAM", "RandAug", "TrainContext", "Vanilla", "create_method",
    "method_class", "needs_masks", "ogl_dice_weights", "register_method", "training_set",
]  # fmt: skip
