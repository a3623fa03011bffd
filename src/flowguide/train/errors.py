"""The training stage's error type."""

from __future__ import annotations

from flowguide.utils.failures import FlowguideError


class TrainingError(FlowguideError):
    """Training cannot go on (a non-finite loss, no training clips, ...)."""
