"""Scores of a (T, H, W) relevance map: against the model, the diver mask and the optical flow.

- Faithfulness (003, 004, after Petsiuk et al.): deletion and insertion AUC. Voxels are removed
  (or inserted into a black clip) in order of relevance over ``steps`` (28 as SWAG-V) equal steps,
  all channels at once, filled with black in pixel space; the target's softmax probability is
  tracked and integrated by the trapezoid rule over the removed/inserted fraction in [0, 1].
  Ties in relevance are broken by a seeded random order (segment-constant maps have many).
- Localisation against the diver mask, two named conventions: ``topshare``: IoU and Dice of
  the top ``top_k`` share of voxels (ties at the cut all kept); ``minmax``: the evaluate
  stage's (map min-max scaled, >= 0.5). Pointing game. SWAG-V's weak localisation (per-frame
  boxes, mean IoU above 0.5 is a hit) in three threshold modes, alpha held out per mode.
- Motion (002): precision against optical flow (centred relevance), selectivity.
- Sharpness (001): map entropy.

A metric that has nothing to measure (an empty mask, no kept voxel) returns NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowguide.explain.core import CountingModel, ModelFn, black_fill, blend

NAN = float("nan")


# --------------------------------------------------------------------------- faithfulness


def relevance_rank(relevance: Tensor, seed: int = 0) -> Tensor:
    """(T, H, W) int64: 0 for the most relevant voxel, ties in a seeded random order."""
    flat = relevance.reshape(-1).float().cpu()
    perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(int(seed)))
    order = perm[torch.argsort(-flat[perm], stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.reshape(relevance.shape)


def step_counts(n_voxels: int, steps: int) -> list[int]:
    """Voxels removed/inserted after each of 0..steps steps: floor(k * N / steps)."""
    return [(k * n_voxels) // steps for k in range(steps + 1)]


def trapezoid_auc(values: list[float] | np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoid rule)."""
    y = np.asarray(values, dtype=np.float64)
    if len(y) < 2:
        raise ValueError("an AUC needs at least two points")
    return float(np.sum((y[1:] + y[:-1]) / 2) / (len(y) - 1))


def deletion_insertion(
    model_fn: ModelFn,
    clip: Tensor,
    target: int,
    relevance: Tensor,
    steps: int = 28,
    batch_size: int = 16,
    options: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Deletion and insertion curves (steps + 1 points each) and their AUCs.

    ``options`` carries ``pixel_mean``/``pixel_std`` (the black fill) and ``output``.
    """
    options = options or {}
    counter = CountingModel(model_fn, options.get("output", "prob"))
    rank = relevance_rank(relevance, seed).to(clip.device)
    counts = torch.tensor(step_counts(rank.numel(), steps), device=clip.device)
    fill = black_fill(clip, options)
    curves: dict[str, list[float]] = {}
    with torch.inference_mode():
        for game in ("deletion", "insertion"):
            scores = []
            for start in range(0, len(counts), max(1, batch_size)):
                n = counts[start : start + batch_size][:, None, None, None]
                keep = rank[None] >= n if game == "deletion" else rank[None] < n
                scores.append(counter.scores(blend(clip, fill, keep))[:, target])
            curves[game] = torch.cat(scores).cpu().tolist()
    return {
        "deletion_auc": trapezoid_auc(curves["deletion"]),
        "insertion_auc": trapezoid_auc(curves["insertion"]),
        "deletion_curve": curves["deletion"],
        "insertion_curve": curves["insertion"],
        "forward_passes": counter.forward_passes,
    }


# --------------------------------------------------------------------------- localisation


def _as_bool(mask: Tensor | np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool().cpu()


def _pointing_hit(relevance: Tensor, mask: Tensor) -> float:
    """1 when the map's maximum lies in the mask; with ties, when most tied voxels do."""
    tied = relevance == relevance.max()
    return float(2 * int((tied & mask).sum()) > int(tied.sum()))


def pointing_game(relevance: Tensor, mask: Tensor | np.ndarray, per_frame: bool = False) -> float:
    """Pointing game against a (T, H, W) bool mask.

    Per clip (default): 1.0 or 0.0 for the maximum over the whole clip. Per frame: the share of
    frames with a non-empty mask whose own maximum lies in that frame's mask. NaN without mask.
    """
    rel, m = relevance.float().cpu(), _as_bool(mask)
    if not per_frame:
        return _pointing_hit(rel, m) if m.any() else NAN
    hits = [_pointing_hit(rel[t], m[t]) for t in range(m.shape[0]) if m[t].any()]
    return float(np.mean(hits)) if hits else NAN


def top_fraction(relevance: Tensor, fraction: float) -> Tensor:
    """Bool map of the voxels at or above the k-th largest value, k = ceil(fraction * N).

    Ties at the cut are all kept (the region may exceed k voxels), so the region depends only
    on the values, never on voxel order: a mirrored clip gets the mirrored region."""
    flat = relevance.reshape(-1).float().cpu()
    k = min(flat.numel(), max(1, math.ceil(fraction * flat.numel())))
    cut = torch.topk(flat, k).values[-1]
    return (flat >= cut).reshape(relevance.shape)


def iou_dice(pred: Tensor, mask: Tensor | np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two bool volumes; NaN when the mask is empty."""
    p, m = _as_bool(pred), _as_bool(mask)
    if not m.any():
        return NAN, NAN
    inter, union = int((p & m).sum()), int((p | m).sum())
    return inter / union, 2 * inter / (int(p.sum()) + int(m.sum()))


def topshare_iou_dice(
    relevance: Tensor, mask: Tensor | np.ndarray, fraction: float = 0.1
) -> dict[str, float]:
    """IoU/Dice of the top ``fraction`` of voxels (``top_fraction``) against the mask."""
    iou, dice = iou_dice(top_fraction(relevance, fraction), mask)
    return {"iou": iou, "dice": dice}


def minmax_iou_dice(
    relevance: Tensor, mask: Tensor | np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """IoU/Dice under the evaluate stage's convention (flowguide.evaluate.metrics, the same
    function): the map min-max scaled over the clip, attended where >= ``threshold``."""
    from flowguide.evaluate.metrics import map_mask_overlap

    m = _as_bool(mask)
    if not m.any():
        return {"iou": NAN, "dice": NAN}
    iou, dice = map_mask_overlap(relevance.float().cpu(), m, threshold)
    return {"iou": iou, "dice": dice}


def threshold_map(relevance: Tensor, mode: str = "mean", alpha: float | None = None) -> Tensor:
    """Bool (T, H, W) region of a map, thresholded over the whole clip (Fong & Vedaldi's three):

    ``value``: min-max scaled map > alpha (0.5); ``mean``: map > alpha (1.0) * its mean;
    ``energy``: the most relevant voxels holding alpha (0.5) of the positive relevance (all
    voxels tied with the last one needed are kept). Deterministic: depends only on values.
    """
    r = relevance.float().cpu()
    if mode == "value":
        lo, hi = r.min(), r.max()
        return (
            (r - lo) / (hi - lo) > (0.5 if alpha is None else alpha)
            if hi > lo
            else torch.zeros_like(r, dtype=torch.bool)
        )
    if mode == "mean":
        return r > (1.0 if alpha is None else alpha) * r.mean()
    if mode == "energy":
        pos = r.clamp_min(0).reshape(-1)
        total = float(pos.sum())
        if total <= 0:
            return torch.zeros_like(r, dtype=torch.bool)
        values = torch.sort(pos, descending=True).values
        need = (0.5 if alpha is None else alpha) * total
        k = (
            int(
                torch.searchsorted(
                    torch.cumsum(values.double(), 0), torch.tensor(need, dtype=torch.float64)
                )
            )
            + 1
        )
        # All voxels tied with the k-th are kept: the region depends on values, not on order.
        cut = values[min(k, pos.numel()) - 1]
        return ((pos >= cut) & (pos > 0)).reshape(r.shape)
    raise ValueError(f"threshold mode must be value, mean or energy, not {mode!r}")


def bounding_box(mask2d: Tensor | np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1), inclusive pixel bounds of a 2D bool mask; None when empty."""
    m = _as_bool(mask2d)
    if not m.any():
        return None
    ys, xs = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
    return int(ys[0]), int(xs[0]), int(ys[-1]), int(xs[-1])


def box_iou(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> float:
    """IoU of two inclusive pixel boxes; 0 when either is missing."""
    if a is None or b is None:
        return 0.0
    ih = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iw = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0, ih) * max(0, iw)
    area = lambda box: (box[2] - box[0] + 1) * (box[3] - box[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def weak_localisation(
    relevance: Tensor,
    mask: Tensor | np.ndarray,
    mode: str = "mean",
    alpha: float | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """SWAG-V's weak localisation at one alpha: per frame with a mask, the box of the
    thresholded map vs the mask's box; the clip is a hit when the mean box IoU exceeds 0.5."""
    region, m = threshold_map(relevance, mode, alpha), _as_bool(mask)
    ious = [
        box_iou(bounding_box(region[t]), bounding_box(m[t]))
        for t in range(m.shape[0])
        if m[t].any()
    ]
    if not ious:
        return {"box_iou": NAN, "hit": NAN}
    mean = float(np.mean(ious))
    return {"box_iou": mean, "hit": float(mean > iou_threshold)}


# SWAG-V (004, Table 3) thresholds every map three ways and picks alpha as Fong & Vedaldi (2017)
# do: the alpha with the lowest localisation error on held-out data, per method and mode, from
# these grids (value and energy 0:0.05:0.95, mean 0:0.5:10).
LOC_MODES = ("value", "mean", "energy")
LOC_ALPHAS: dict[str, tuple[float, ...]] = {
    "value": tuple(round(0.05 * i, 2) for i in range(20)),
    "energy": tuple(round(0.05 * i, 2) for i in range(20)),
    "mean": tuple(0.5 * i for i in range(21)),
}


def weak_localisation_curve(
    relevance: Tensor, mask: Tensor | np.ndarray, mode: str, alphas: tuple[float, ...]
) -> list[float]:
    """Mean box IoU of the map thresholded at each alpha (NaN each when the mask is empty)."""
    return [weak_localisation(relevance, mask, mode, a)["box_iou"] for a in alphas]


def choose_alpha(curves: np.ndarray, iou_threshold: float = 0.5) -> int:
    """Index of the alpha with the lowest error (share of clips with mean box IoU <= 0.5) over
    ``curves`` (clips, alphas); ties: the higher mean box IoU, then the lower alpha."""
    error = (curves <= iou_threshold).mean(0)
    mean_iou = curves.mean(0)
    return int(np.lexsort((np.arange(curves.shape[1]), -mean_iou, error))[0])


def held_out_localisation(
    curves: np.ndarray, alphas: tuple[float, ...], iou_threshold: float = 0.5
) -> list[dict[str, float]]:
    """Per clip, the alpha chosen on the other clips (leave one clip out, so a clip never
    picks its own threshold) and this clip's box IoU and hit there. NaN for a clip without
    mask and for every clip when fewer than two clips have one."""
    valid = ~np.isnan(curves).any(1)
    out = []
    for i in range(len(curves)):
        others = valid.copy()
        others[i] = False
        if not valid[i] or not others.any():
            out.append({"alpha": NAN, "box_iou": NAN, "hit": NAN})
            continue
        j = choose_alpha(curves[others], iou_threshold)
        iou = float(curves[i, j])
        out.append({"alpha": alphas[j], "box_iou": iou, "hit": float(iou > iou_threshold)})
    return out


# --------------------------------------------------------------------------- motion, sharpness


def flow_magnitude_volume(flow: np.ndarray | Tensor, n_frames: int) -> Tensor:
    """(T, H, W) flow magnitude from (F, 2, H, W) flow t -> t+1; frames past the last flow
    reuse it (a clip of T frames has T - 1 flows)."""
    f = torch.as_tensor(np.asarray(flow) if not isinstance(flow, Tensor) else flow).float()
    mag = f.pow(2).sum(1).sqrt()
    idx = torch.clamp(torch.arange(n_frames), max=mag.shape[0] - 1)
    return mag[idx]


def motion_precision(
    relevance: Tensor,
    flow_magnitude: Tensor,
    flow_threshold: float = 0.0,
    centre: bool = True,
    kept: Tensor | None = None,
) -> float:
    """002's precision P = sum(I_R * I_O) / sum(I_R).

    I_R = R > 0 after centring R around zero (002: "we center all explanations around zero";
    here: minus its mean over the clip), so an all-positive map is not "relevant everywhere".
    I_O = flow magnitude > ``flow_threshold`` (002: O > 0; estimated flow is rarely exactly 0,
    so a small threshold in pixels per frame may be wanted). ``kept``: a selective map's kept
    voxels, centred with its base map's mean (centre first, then filter, as 002). NaN when no
    voxel is relevant."""
    r = relevance.float().cpu()
    relevant = (r - r.mean() > 0) if centre else (r > 0)
    if kept is not None:
        relevant &= kept.bool().cpu()
    if not relevant.any():
        return NAN
    moving = flow_magnitude.float().cpu() > flow_threshold
    return int((relevant & moving).sum()) / int(relevant.sum())


def selectivity(baseline: Tensor, selective: Tensor) -> dict[str, float]:
    """002's selectivity: of the baseline's positive voxels, the share the selective map keeps,
    the share it removes, and the share of positive relevance it keeps."""
    base, sel = baseline.float().cpu(), selective.float().cpu()
    n_base = int((base > 0).sum())
    if n_base == 0:
        return {"kept_fraction": NAN, "removed_fraction": NAN, "relevance_fraction": NAN}
    kept = int((sel > 0).sum()) / n_base
    mass = float(base.clamp_min(0).sum())
    return {
        "kept_fraction": kept,
        "removed_fraction": 1.0 - kept,
        "relevance_fraction": float(sel.clamp_min(0).sum()) / mass,
    }


def map_entropy(relevance: Tensor, bins: int = 10) -> float:
    """Object-ABN's entropy (001, Eq. 11): per frame min-max scale to [0, 1], a ``bins``-bin
    histogram, -sum p log2 p; averaged over frames (max log2(bins))."""
    values = []
    for frame in relevance.float().cpu().numpy():
        lo, hi = frame.min(), frame.max()
        scaled = (frame - lo) / (hi - lo) if hi > lo else np.zeros_like(frame)
        hist, _ = np.histogram(scaled, bins=bins, range=(0.0, 1.0))
        p = hist[hist > 0] / hist.sum()
        values.append(float(-(p * np.log2(p)).sum()))
    return float(np.mean(values))
