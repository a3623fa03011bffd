"""Worst-sample bookkeeping for RRR + GradCAM (thesis 4.4): a per-sample moving-average loss
across epochs, and which samples are in the worst percentile."""

from __future__ import annotations

import math

import torch


class WorstPerformerTracker:
    """Per-sample exponential moving average of the training loss, across epochs.

    ``update(indices, losses)`` blends each seen sample's new loss into its average
    (ema = momentum * ema + (1 - momentum) * loss; the first loss of a sample is taken as is).
    ``select(indices)`` flags the samples among the worst ``percentile`` percent of all samples
    seen so far: the ceil(percentile / 100 * n_seen) largest averages (ties broken by index).
    State (``state_dict``) holds tensors only, for the checkpoint.
    """

    def __init__(self, num_samples: int, percentile: float = 10.0, momentum: float = 0.9) -> None:
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_samples = num_samples
        self.percentile = percentile
        self.momentum = momentum
        self.ema = torch.zeros(num_samples, dtype=torch.float64)
        self.seen = torch.zeros(num_samples, dtype=torch.bool)
        self._worst: torch.Tensor | None = None

    def update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        idx = indices.detach().long().cpu()
        new = losses.detach().double().cpu()
        old = self.ema[idx]
        blended = torch.where(self.seen[idx], self.momentum * old + (1 - self.momentum) * new, new)
        self.ema[idx] = blended
        self.seen[idx] = True
        self._worst = None

    def worst(self) -> torch.Tensor:
        """(num_samples,) bool: the samples currently in the worst percentile."""
        if self._worst is None:
            flags = torch.zeros(self.num_samples, dtype=torch.bool)
            seen_idx = self.seen.nonzero().squeeze(1)
            k = math.ceil(self.percentile / 100 * len(seen_idx))
            if k > 0:
                # Stable sort: equal averages keep index order, so ties go to the lower index.
                order = torch.sort(self.ema[seen_idx], descending=True, stable=True).indices
                flags[seen_idx[order[:k]]] = True
            self._worst = flags
        return self._worst

    def select(self, indices: torch.Tensor) -> torch.Tensor:
        """(len(indices),) bool on the indices' device."""
        return self.worst()[indices.detach().long().cpu()].to(indices.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"ema": self.ema.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["ema"].shape != (self.num_samples,):
            raise ValueError(
                f"WorstPerformerTracker: checkpoint has {tuple(state['ema'].shape)} samples, "
                f"this dataset {self.num_samples}"
            )
        self.ema = state["ema"].to(torch.float64).clone()
        self.seen = state["seen"].to(torch.bool).clone()
        self._worst = None
