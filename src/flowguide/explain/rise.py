"""3D RISE (paper 003 after Petsiuk et al.): random soft masks, relevance = score-weighted mean.

A mask is a random binary (gt, gh, gw) grid (each cell kept with probability p), upsampled
trilinearly (align_corners=False) to (g + 1) cells of ceil(size / g) voxels and cropped at a
random shift, so cell borders fall anywhere. Trilinear interpolation is separable, so the
cropped mask is the grid contracted with three small (size, g) interpolation matrices, one per
axis, whose rows are cut at the shift: no (g + 1)-cell volume is ever built, and everything
runs on the clip's device (masks are made where the model runs, not copied there).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from flowguide.explain.core import (
    CountingModel,
    ExplanationResult,
    ModelFn,
    as_int_tuple,
    black_fill,
    blend,
    finish,
)


def rise_geometry(
    shape: tuple[int, int, int], grid: tuple[int, int, int]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Cells per axis (at most the size), cell size ceil(size / cells), upsampled size."""
    cells = tuple(min(g, s) for g, s in zip(grid, shape, strict=True))
    cell = tuple(math.ceil(s / g) for s, g in zip(shape, cells, strict=True))
    up = tuple((g + 1) * c for g, c in zip(cells, cell, strict=True))
    return cells, cell, up


def interpolation_matrix(cells: int, size: int, device: torch.device | str) -> Tensor:
    """(size, cells): row i holds the linear-interpolation weights of output sample i when
    ``cells`` values are resized to ``size`` (torch's align_corners=False rule)."""
    eye = torch.eye(cells, device=device)[None]  # (1, cells, cells): each basis vector a channel
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T


def rise_draws(
    n: int,
    shape: tuple[int, int, int],
    grid: tuple[int, int, int],
    p: float,
    generator: torch.Generator,
    device: torch.device | str,
) -> tuple[Tensor, Tensor]:
    """(n, gt, gh, gw) binary grids and (n, 3) integer shifts, drawn on ``device``."""
    cells, cell, _ = rise_geometry(shape, grid)
    binary = (torch.rand((n, *cells), generator=generator, device=device) < p).float()
    limits = torch.tensor(cell, device=device)
    shifts = (torch.rand((n, 3), generator=generator, device=device) * limits).long()
    return binary, torch.minimum(shifts, limits - 1)


def masks_from_draws(binary: Tensor, shifts: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """(n, T, H, W) masks: each grid upsampled and cropped at its shift (see module docstring)."""
    cells = tuple(binary.shape[1:])
    _, _, up = rise_geometry(shape, cells)
    rows = []
    for axis in range(3):
        full = interpolation_matrix(cells[axis], up[axis], binary.device)  # (up, g)
        index = shifts[:, axis, None] + torch.arange(shape[axis], device=binary.device)
        rows.append(full[index])  # (n, size, g): the rows of the cropped window
    out = torch.einsum("nabc,nwc->nabw", binary, rows[2])
    out = torch.einsum("nabw,nhb->nahw", out, rows[1])
    return torch.einsum("nahw,nta->nthw", out, rows[0])


def rise_masks(
    n: int,
    shape: tuple[int, int, int],
    grid: tuple[int, int, int],
    p: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Tensor:
    """(n, T, H, W) RISE masks on ``device`` (``generator`` must live there too)."""
    binary, shifts = rise_draws(n, shape, grid, p, generator, device)
    return masks_from_draws(binary, shifts, shape)


def rise_3d(
    model_fn: ModelFn, clip: Tensor, target: int, options: dict[str, Any]
) -> ExplanationResult:
    """3D RISE: relevance = sum_i score(I * M_i) M_i / (N p), soft masks faded to black.

    The seeded generator lives on the clip's device, so a CPU and a GPU run draw different
    masks from the same seed (each is reproducible on its own device)."""
    started = time.perf_counter()
    counter = CountingModel(model_fn, options["output"])
    gen = torch.Generator(device=clip.device).manual_seed(int(options["seed"]))
    n, p, batch = int(options["n_samples"]), float(options["p"]), int(options["batch_size"])
    grid = as_int_tuple(options["grid"], 3, "grid")
    shape = tuple(clip.shape[1:])
    fill = black_fill(clip, options)
    relevance = torch.zeros(shape, device=clip.device)
    with torch.inference_mode():
        for start in range(0, n, batch):
            masks = rise_masks(min(batch, n - start), shape, grid, p, gen, clip.device)
            scores = counter.scores(blend(clip, fill, masks))[:, target]
            relevance += torch.einsum("n,nthw->thw", scores.to(masks.dtype), masks)
    return finish(relevance / (n * p), counter, started)
