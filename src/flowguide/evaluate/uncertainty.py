"""Benchmark statistics with uncertainty: right-reason accuracy and a two-level bootstrap.

Per-clip table (one row per test clip and training run), columns:

    unit      the seed unit the clip was scored in: "d<data seed>-t<training seed>"
    vid_name  the clip
    label     true class
    pred      predicted class
    cue_class the class the planted cue shows (SynthDive; -1 when the confounder is off)
    overlap   optional: GradCAM-vs-mask IoU of the clip (NaN where undefined)

Statistics (each a mean over clips):

- ``top1``: share of clips with pred == label;
- ``right_reason``: accuracy on the clips whose cue disagrees with the label (cue_class >= 0 and
  != label). A model that reads only the cue scores 0 there; one that reads only the diver scores
  its diver accuracy; chance is 1/K;
- ``follows_cue``: share of those cue-disagreeing clips predicted as the cue's class (chance 1/K;
  a pure cue reader scores 1);
- ``overlap``: mean GradCAM-vs-mask IoU (clips where it is defined).

Confidence intervals: a two-level (hierarchical) percentile bootstrap. Each replicate draws the
seed units with replacement, then, inside each drawn unit, that unit's clips with replacement,
and computes the statistic over the pooled drawn clips. The interval is the 2.5th and 97.5th
percentile of ``n_boot`` replicates; the point estimate is the statistic over all clips of all
units. With one seed unit the first level is a no-op and this is the ordinary clip bootstrap, so
the interval then reflects only the finite test set, not training variability; with several
seeds it covers both. Replicates come from ``numpy.random.default_rng(seed)``: reruns give the
same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowguide.utils.failures import FlowguideError

STATISTICS = ("top1", "right_reason", "follows_cue", "overlap")
DEFAULT_N_BOOT = 2000
REQUIRED = ("unit", "vid_name", "label", "pred", "cue_class")


def _disagree(table: pd.DataFrame) -> np.ndarray:
    cue = table["cue_class"].to_numpy()
    return (cue >= 0) & (cue != table["label"].to_numpy())


def statistic_arrays(table: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(numerator value per clip, weight per clip): statistic = sum(v * w) / sum(w)."""
    label, pred = table["label"].to_numpy(), table["pred"].to_numpy()
    n = len(table)
    if name == "top1":
        return (pred == label).astype(float), np.ones(n)
    if name == "right_reason":
        return (pred == label).astype(float), _disagree(table).astype(float)
    if name == "follows_cue":
        return (pred == table["cue_class"].to_numpy()).astype(float), _disagree(table).astype(float)
    if name == "overlap":
        if "overlap" not in table:
            return np.zeros(n), np.zeros(n)
        values = table["overlap"].to_numpy(dtype=float)
        defined = np.isfinite(values)
        return np.where(defined, values, 0.0), defined.astype(float)
    raise FlowguideError(f"unknown benchmark statistic {name!r}; known: {STATISTICS}")


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n_clips: int  # clips the statistic is computed over (all units)
    n_units: int  # seed units

    def as_dict(self, prefix: str) -> dict[str, float | int]:
        return {
            prefix: self.mean,
            f"{prefix}_low": self.low,
            f"{prefix}_high": self.high,
            f"{prefix}_n": self.n_clips,
        }


def _check(table: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in table]
    if missing:
        raise FlowguideError(f"benchmark table lacks column(s) {missing}")


def bootstrap(
    table: pd.DataFrame,
    name: str,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Point estimate and two-level percentile bootstrap interval of one statistic."""
    _check(table)
    values, weights = statistic_arrays(table, name)
    total = weights.sum()
    units = table["unit"].astype(str).to_numpy()
    names = sorted(set(units))
    if total == 0:
        return Estimate(np.nan, np.nan, np.nan, 0, len(names))
    point = float((values * weights).sum() / total)
    # Per unit: its clips' (value, weight) arrays, so a replicate is two index draws.
    per_unit = [(values[units == u], weights[units == u]) for u in names]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        num = den = 0.0
        for k in rng.integers(len(per_unit), size=len(per_unit)):
            v, w = per_unit[k]
            idx = rng.integers(len(v), size=len(v))
            num += float((v[idx] * w[idx]).sum())
            den += float(w[idx].sum())
        reps[b] = num / den if den > 0 else np.nan
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(reps, [tail, 100 - tail])
    return Estimate(point, float(low), float(high), int(np.count_nonzero(weights)), len(names))


def summarise(
    table: pd.DataFrame,
    statistics: tuple[str, ...] = STATISTICS,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> dict[str, float | int]:
    """One run's row of the benchmark table: each statistic with its interval and count."""
    row: dict[str, float | int] = {"n_units": int(table["unit"].nunique())}
    for name in statistics:
        row.update(bootstrap(table, name, n_boot, seed).as_dict(name))
    return row


def cells(table: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Test-split design: clips per class and cue agreement (counts over distinct clips)."""
    clips = table.drop_duplicates("vid_name")
    agree = clips["cue_class"].to_numpy() == clips["label"].to_numpy()
    frame = pd.DataFrame({"label": clips["label"].to_numpy(), "agrees": agree})
    rows = []
    for k in range(num_classes):
        own = frame[frame["label"] == k]
        rows.append(
            {
                "class": k,
                "cue agrees": int(own["agrees"].sum()),
                "cue disagrees": int((~own["agrees"]).sum()),
            }
        )
    return pd.DataFrame(rows)
