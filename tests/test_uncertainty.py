"""Benchmark statistics: right-reason accuracy, follows_cue and the two-level bootstrap, checked
against computations written here independently of flowguide.evaluate.uncertainty."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flowguide.evaluate.uncertainty import bootstrap, cells, summarise
from flowguide.utils.failures import FlowguideError


def _table(seed: int = 0, units: int = 3, clips: int = 40, k: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(units):
        for i in range(clips):
            label = i % k
            cue = (label + i // k) % k
            pred = int(rng.integers(k)) if rng.random() < 0.5 else label
            rows.append(
                {
                    "unit": f"d{u}-t0",
                    "vid_name": f"v{i}",
                    "label": label,
                    "pred": pred,
                    "cue_class": cue,
                    "overlap": float(rng.random()) if i % 5 else math.nan,
                }
            )
    return pd.DataFrame(rows)


def test_point_estimates_equal_a_loop_over_clips():
    table = _table()
    correct = disagree = follows = 0
    total_overlap, n_overlap = 0.0, 0
    for row in table.itertuples():
        if row.cue_class != row.label:
            disagree += 1
            correct += row.pred == row.label
            follows += row.pred == row.cue_class
        if not math.isnan(row.overlap):
            total_overlap += row.overlap
            n_overlap += 1
    top1 = sum(r.pred == r.label for r in table.itertuples()) / len(table)
    row = summarise(table, n_boot=10)
    assert row["top1"] == pytest.approx(top1)
    assert row["right_reason"] == pytest.approx(correct / disagree)
    assert row["right_reason_n"] == disagree
    assert row["follows_cue"] == pytest.approx(follows / disagree)
    assert row["overlap"] == pytest.approx(total_overlap / n_overlap)
    assert row["overlap_n"] == n_overlap
    assert row["n_units"] == 3


def _independent_bootstrap(correct: dict[str, np.ndarray], n_boot: int, seed: int):
    """Two-level bootstrap written separately: units sorted by name, then clips within each."""
    names = sorted(correct)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        drawn = rng.integers(len(names), size=len(names))
        pooled = []
        for k in drawn:
            v = correct[names[k]]
            pooled.append(v[rng.integers(len(v), size=len(v))])
        reps.append(np.concatenate(pooled).mean())
    return np.percentile(reps, [2.5, 97.5])


def test_two_level_interval_equals_independent_computation():
    table = _table(seed=3)
    correct = {
        u: (rows["pred"] == rows["label"]).to_numpy(dtype=float)
        for u, rows in table.groupby("unit")
    }
    low, high = _independent_bootstrap(correct, 300, seed=7)
    est = bootstrap(table, "top1", n_boot=300, seed=7)
    assert (est.low, est.high) == pytest.approx((low, high))
    assert est.low <= est.mean <= est.high


def test_clip_bootstrap_matches_the_normal_approximation():
    # One unit, 400 clips, accuracy 0.7: the percentile interval ~ p +- 1.96 sqrt(p(1-p)/n).
    n = 400
    table = pd.DataFrame(
        {
            "unit": "d0-t0",
            "vid_name": [f"v{i}" for i in range(n)],
            "label": 0,
            "pred": [0 if i < 280 else 1 for i in range(n)],
            "cue_class": 1,
        }
    )
    est = bootstrap(table, "top1", n_boot=3000, seed=1)
    half = 1.96 * math.sqrt(0.7 * 0.3 / n)
    assert est.mean == pytest.approx(0.7)
    assert est.low == pytest.approx(0.7 - half, abs=0.01)
    assert est.high == pytest.approx(0.7 + half, abs=0.01)


def test_seed_variability_widens_the_interval():
    # Two units that disagree completely: the clip-only interval of each is zero-width, the
    # two-level interval spans both.
    rows = []
    for u, pred in (("d0-t0", 0), ("d0-t1", 1)):
        rows += [
            {"unit": u, "vid_name": f"v{i}", "label": 0, "pred": pred, "cue_class": 1}
            for i in range(30)
        ]
    est = bootstrap(pd.DataFrame(rows), "top1", n_boot=500, seed=0)
    assert est.mean == pytest.approx(0.5)
    assert est.low == pytest.approx(0.0) and est.high == pytest.approx(1.0)


def test_no_disagreeing_clip_gives_nan_and_bad_input_names_the_column():
    table = pd.DataFrame(
        {"unit": "u", "vid_name": ["a"], "label": [1], "pred": [1], "cue_class": [1]}
    )
    assert math.isnan(bootstrap(table, "right_reason", n_boot=5).mean)
    with pytest.raises(FlowguideError, match="cue_class"):
        bootstrap(table.drop(columns="cue_class"), "top1")
    with pytest.raises(FlowguideError, match="unknown"):
        bootstrap(table, "accuracy")


def test_cells_count_distinct_clips():
    table = _table(units=2, clips=16)
    counts = cells(table, 4)
    # 16 clips, 4 per class; the j-th clip of a class agrees when j % 4 == 0: 1 per class.
    assert counts["cue agrees"].tolist() == [1, 1, 1, 1]
    assert counts["cue disagrees"].tolist() == [3, 3, 3, 3]
