"""GPU memory and layout options: activation checkpointing, channels_last_3d, cudnn.benchmark.

Activation checkpointing (``train.activation_checkpointing``) keeps only the inputs of the
residual stages res2..res4 and recomputes their activations in the backward pass: memory for
time, useful for the second-order methods (RRR), whose double backward holds the graph of the
first gradient too. The stem (whose input is the clip RRR differentiates) and the last stage
(whose activations GradCAM records with hooks) are not checkpointed. Non-reentrant checkpointing
supports ``create_graph=True``; the recomputation replays the forward's RNG state, so results
equal those without it (tests/test_precision.py). The module structure and the state_dict keys
do not change (the block's ``forward`` is wrapped in place).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from flowguide.modeling.slowfast import LAST_STAGE


def _backbone_blocks(model: nn.Module) -> nn.ModuleList:
    return getattr(model, "backbone", model).blocks  # ObjectABN wraps the SlowFast


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Checkpoint res2..res4 of ``model`` (a SlowFast or an ObjectABN); returns how many."""
    blocks = _backbone_blocks(model)
    count = 0
    for block in list(blocks)[1:LAST_STAGE]:
        plain = block.forward

        def forward(x: Any, _plain=plain) -> Any:
            if not torch.is_grad_enabled():
                return _plain(x)

            # The pathway tensors go in as separate arguments and a fresh list is built at each
            # call: pytorchvideo's blocks write into their input list, which would corrupt the
            # recomputation.
            def run(*pathways: torch.Tensor) -> Any:
                return _plain(list(pathways))

            return checkpoint(run, *x, use_reentrant=False)

        block.forward = forward
        count += 1
    return count


def to_channels_last(model: nn.Module) -> nn.Module:
    """Weights in channels_last_3d layout (the loop feeds clips in the same layout)."""
    return model.to(memory_format=torch.channels_last_3d)


def set_cudnn_benchmark(enabled: bool) -> None:
    """cuDNN picks the fastest convolution algorithms for the first shapes it sees (fixed clip
    sizes in training); the choice may differ between runs, so results are not bitwise equal."""
    torch.backends.cudnn.benchmark = bool(enabled)
