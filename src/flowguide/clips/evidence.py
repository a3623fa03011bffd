"""Which mask frames carry evidence about where the diver is.

A frame in which the mask stage found no diver is stored all zeros. Such a frame says nothing
about where the diver is, so every mask-guided method treats it as "no evidence": RRR + OGL does
not penalise it, OGL + Transform does not black it out, Object-ABN puts no mask loss on it, and
OGL + Dice leaves it out of the Dice. This module is the one place that decides it, so a reader
with an explicit per-frame flag (utils.masks) can replace the rule here for all of them.
"""

from __future__ import annotations

import torch


def frame_evidence(mask: torch.Tensor) -> torch.Tensor:
    """Mask (..., T, H, W) -> (..., T) bool: True where the frame's mask has any pixel set."""
    if mask.dim() < 3:
        raise ValueError(f"frame_evidence: need (..., T, H, W), got shape {tuple(mask.shape)}")
    return mask.flatten(-2).ne(0).any(-1)
