"""3D SLIC (Achanta et al.) under an explicit distance, in torch (CPU or GPU).

SWAG-V (paper 004, Eq. 3) clusters voxels by

    D'^2 = |f_i - f_k|^2 + (d_s / S)^2

with f the per-voxel features already divided by their weights (colour / w_c, saliency / w_g),
d_s the voxel distance to the cluster centre and S the grid step (SLIC's own w_s). scikit-image's
``slic`` cannot express this: it rescales the feature volume to [0, 1] and starts every centre
with colour 0, so we run SLIC ourselves:

1. S = (T H W / n_segments)^(1/3); seeds on a regular grid of round(size / S) cells per axis
   (at least one), at the cell centres; a seed's features are those of the voxel it sits on.
2. ``iterations`` times (10, as SLIC): each voxel goes to the centre minimising D' among the
   centres whose 2S box (|dt|, |dh|, |dw| <= 2S) contains it (ties: the lower centre index);
   each centre moves to the mean position and features of its voxels (an empty one stays).
   A voxel no box reaches keeps its centre. Stops early when no voxel changes centre.
3. Ids are made consecutive. SLIC's connectivity post-processing is not applied (a supervoxel
   may be split in space), so the result is exactly the D' clustering.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def grid_seeds(shape: tuple[int, int, int], n_segments: int) -> tuple[Tensor, float]:
    """(K, 3) float64 seed positions (t, h, w) at the cell centres of a regular grid, and S."""
    step = (math.prod(shape) / max(1, int(n_segments))) ** (1.0 / 3.0)
    axes = []
    for size in shape:
        cells = max(1, round(size / step))
        axes.append((torch.arange(cells, dtype=torch.float64) + 0.5) * size / cells)
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1), step


def weighted_slic(features: Tensor, n_segments: int, iterations: int = 10) -> Tensor:
    """(T, H, W) int64 supervoxel ids 0..S-1 of (T, H, W, F) weighted features under D'."""
    if features.ndim != 4:
        raise ValueError(f"features must be (T, H, W, F), got {tuple(features.shape)}")
    t, h, w, n_feat = features.shape
    device, dtype = features.device, features.dtype
    seeds, step = grid_seeds((t, h, w), n_segments)
    centres = seeds.to(device, dtype)
    seed_idx = centres.floor().long()
    centre_feats = features[seed_idx[:, 0], seed_idx[:, 1], seed_idx[:, 2]].clone()
    coords = [torch.arange(n, device=device, dtype=dtype) for n in (t, h, w)]
    flat = features.reshape(-1, n_feat)
    grid = torch.stack(torch.meshgrid(*coords, indexing="ij"), dim=-1).reshape(-1, 3)
    labels = torch.full((t, h, w), -1, dtype=torch.long, device=device)
    reach = 2.0 * step
    sizes = (t, h, w)
    for _ in range(max(1, int(iterations))):
        best = torch.full((t, h, w), math.inf, dtype=dtype, device=device)
        new = torch.full((t, h, w), -1, dtype=torch.long, device=device)
        lows = (centres - reach).ceil().clamp_min(0).long().tolist()
        highs = (centres + reach).floor().long().tolist()
        for k in range(centres.shape[0]):
            box = tuple(
                slice(lo, min(hi, n - 1) + 1)
                for lo, hi, n in zip(lows[k], highs[k], sizes, strict=True)
            )
            if any(b.start >= b.stop for b in box):
                continue
            d_s = sum(
                ((coords[a][box[a]] - centres[k, a]) / step)
                .pow(2)
                .reshape([-1 if b == a else 1 for b in range(3)])
                for a in range(3)
            )
            d_f = (features[box] - centre_feats[k]).pow(2).sum(-1)
            dist = d_s + d_f
            best_box, new_box = best[box], new[box]  # views: updated in place
            closer = dist < best_box
            torch.minimum(best_box, dist, out=best_box)
            new_box.masked_fill_(closer, k)
        # A voxel no moved centre reaches keeps its centre (never happens on the first pass).
        new = torch.where(new < 0, labels, new)
        if torch.equal(new, labels):
            break
        labels = new
        ids = labels.reshape(-1)
        counts = torch.bincount(ids, minlength=centres.shape[0]).to(dtype)
        filled = counts > 0
        pos_sum = torch.zeros_like(centres).index_add_(0, ids, grid)
        feat_sum = torch.zeros_like(centre_feats).index_add_(0, ids, flat)
        centres[filled] = pos_sum[filled] / counts[filled, None]
        centre_feats[filled] = feat_sum[filled] / counts[filled, None]
    return torch.unique(labels, return_inverse=True)[1].reshape(t, h, w)
