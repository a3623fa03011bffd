"""Mixed precision for training: ``train.precision`` fp32 | bf16 | fp16.

bf16 and fp16 run the forward and the loss terms under ``torch.autocast`` (weights, optimiser
state and the gradients of the parameters stay fp32). fp16 has a narrow exponent range, so its
loss is multiplied by a ``GradScaler`` factor before the backward and the optimiser step skips
steps whose gradients overflowed (the scaler halves its factor then); bf16 has fp32's range and
needs no scaler. The RRR losses take a gradient inside the loss (double backward): under
autocast that inner gradient flows through the reduced-precision activations too; its accuracy
against fp32 is tested in tests/test_precision.py (tolerances stated there).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast context, loss scaling and the optimiser step for one precision."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {sorted(PRECISIONS)}, got {name!r}")
        self.name = name
        self.device_type = device.type
        self.dtype = PRECISIONS[name]
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step (the scaler unscales first and skips a step with inf/NaN)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
