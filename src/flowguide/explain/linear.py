"""A closed-form weighted linear surrogate for captum's Lime and KernelShap.

captum's defaults (SkLearnLasso, SkLearnLinearRegression) need scikit-learn, which this project
does not depend on; weighted least squares (ridge when ``alpha`` > 0) is a few lines of torch and
exact, where captum's SGD models would add an optimiser's noise.
"""

from __future__ import annotations

import torch
from captum._utils.models.model import Model
from torch import Tensor
from torch.utils.data import DataLoader


class WeightedLinearSurrogate(Model):
    """y ~ x @ w + b minimising sum_i s_i (y_i - x_i w - b)^2 + alpha |w|^2 (intercept free)."""

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = float(alpha)
        self.weight: Tensor | None = None
        self.intercept: Tensor | None = None

    def fit(self, train_data: DataLoader, **kwargs: object) -> dict[str, float]:
        xs, ys, ws = [], [], []
        for batch in train_data:
            x, y = batch[0], batch[1]
            w = batch[2] if len(batch) == 3 else torch.ones(len(x))
            xs.append(x.reshape(len(x), -1).double())
            ys.append(y.reshape(len(y)).double())
            ws.append(w.reshape(len(w)).double().to(x.device))
        x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
        self.weight, self.intercept = weighted_least_squares(x, y, w, self.alpha)
        return {"n_samples": float(len(x))}

    def representation(self) -> Tensor:
        if self.weight is None:
            raise RuntimeError("surrogate not fitted")
        return self.weight.float().unsqueeze(0)  # (1, n_features), as captum's linear models

    def __call__(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self.weight is None or self.intercept is None:
            raise RuntimeError("surrogate not fitted")
        return x.double() @ self.weight + self.intercept


def weighted_least_squares(
    x: Tensor, y: Tensor, w: Tensor, alpha: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Weights (n_features,) and intercept of a weighted (ridge) regression with free intercept.

    Centring by the weighted means removes the intercept from the penalty; the minimum-norm
    least-squares solution is used when the system is underdetermined.
    """
    w = w.clamp_min(0)
    total = w.sum().clamp_min(torch.finfo(w.dtype).tiny)
    x_mean = (w[:, None] * x).sum(0) / total
    y_mean = (w * y).sum() / total
    sw = w.sqrt()
    a = sw[:, None] * (x - x_mean)
    b = sw * (y - y_mean)
    if alpha > 0:
        eye = (alpha**0.5) * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        a = torch.cat([a, eye])
        b = torch.cat([b, torch.zeros(x.shape[1], dtype=b.dtype, device=b.device)])
    coef = torch.linalg.pinv(a) @ b
    return coef, y_mean - x_mean @ coef
