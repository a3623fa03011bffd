"""The thesis' Chapter 5 tables from the runs table (one row per results/eval/{run}/T{T})."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Registry name -> the thesis' row label (Table 5.1); unknown methods keep their name.
METHOD_NAMES = {
    "vanilla": "Vanilla",
    "kinetics": "Vanilla + Kinetics",
    "randaug": "RandAug + Kinetics",
    "ogl_dice": "OGL + Dice",
    "ogl_transform": "OGL + Transform",
    "rrr_gradcam": "RRR + GradCAM",
    "rrr_ogl": "RRR + OGL",
    "abn": "Object-ABN",
}
METHOD_ORDER = list(METHOD_NAMES)
BASELINE = "vanilla"


def display_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def method_sort_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs without sweep parameters: one per (method, T)."""
    return runs[~runs["is_sweep"].astype(bool)] if len(runs) else runs


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 5.1: methods by T, top-1 accuracy; NaN where a (method, T) did not run."""
    main = main_runs(runs)
    if main.empty:
        return pd.DataFrame(columns=["method", "name"])
    wide = main.pivot_table(index="method", columns="T", values="top1", aggfunc="first")
    wide = wide.reindex(sorted(wide.index, key=method_sort_key))
    wide.columns = [f"T={t}" for t in wide.columns]
    wide.insert(0, "name", [display_name(m) for m in wide.index])
    return wide.reset_index()


def complexity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 5.4's data: accuracy, GFLOPs (multiply-adds) and parameters per (method, T)."""
    main = main_runs(runs)
    columns = ["method", "name", "T", "top1", "gflops", "params_count"]
    if main.empty:
        return pd.DataFrame(columns=columns)
    table = main.assign(name=main["method"].map(display_name))[columns]
    return _sort_methods(table)


def cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 5.4: hours per epoch and seconds per clip, with the ratio to vanilla at the same T."""
    main = main_runs(runs)
    columns = [
        "method",
        "name",
        "T",
        "epochs",
        "hours_per_epoch",
        "seconds_per_clip",
        "ratio_to_vanilla",
    ]
    if main.empty or main["hours_per_epoch"].isna().all():
        return pd.DataFrame(columns=columns)
    table = main[main["hours_per_epoch"].notna()].copy()
    table["name"] = table["method"].map(display_name)
    baseline = table[table["method"] == BASELINE].set_index("T")["hours_per_epoch"]
    table["ratio_to_vanilla"] = [
        h / baseline[t] if t in baseline.index and baseline[t] > 0 else math.nan
        for h, t in zip(table["hours_per_epoch"], table["T"], strict=True)
    ]
    return table.sort_values(["T", "hours_per_epoch"])[columns].reset_index(drop=True)


def maps_table(runs: pd.DataFrame) -> pd.DataFrame:
    """GradCAM (slow, fast) and other maps' IoU/Dice/entropy against the masks, per run."""
    stat_columns = [c for c in runs.columns if c.endswith(("_iou", "_dice", "_entropy"))]
    if runs.empty or not stat_columns:
        return pd.DataFrame(columns=["run", "method", "T"])
    table = runs[["run", "method", "T", *sorted(stat_columns)]]
    table = table.dropna(how="all", subset=stat_columns)
    return _sort_methods(table)


def sweeps_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every sweep run: its parameters as columns, accuracy and map overlap."""
    if runs.empty or not runs["is_sweep"].astype(bool).any():
        return pd.DataFrame(columns=["run", "method", "T", "top1"])
    sweeps = runs[runs["is_sweep"].astype(bool)]
    param_columns = sorted(c for c in sweeps.columns if c.startswith("param_"))
    map_columns = [c for c in ("fast_iou", "fast_dice", "slow_iou", "slow_dice") if c in sweeps]
    table = sweeps[["run", "method", "T", *param_columns, "top1", *map_columns]]
    table = table.dropna(axis=1, how="all")
    return table.sort_values(["method", "T", *[c for c in param_columns if c in table]])


def alpha_sweep_table(runs: pd.DataFrame, method: str = "ogl_dice") -> pd.DataFrame:
    """Figure 5.2's data: ogl_dice runs swept over ce_weight, by T and alpha (Section 5.2's
    alpha is the cross-entropy weight, the Dice weight 1 - alpha)."""
    sweeps = sweeps_table(runs)
    if sweeps.empty or "param_ce_weight" not in sweeps:
        return pd.DataFrame(columns=["T", "alpha", "top1"])
    table = sweeps[(sweeps["method"] == method) & sweeps["param_ce_weight"].notna()]
    table = table.rename(columns={"param_ce_weight": "alpha"}).dropna(axis=1, how="all")
    keep = ["run", "T", "alpha", "top1"] + [c for c in table if c.endswith(("_iou", "_dice"))]
    return table[keep].sort_values(["T", "alpha"]).reset_index(drop=True)


def rrr_sweep_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 5.2: rrr_* sweep runs (lambda, worst-performer percentile), accuracy in %."""
    sweeps = sweeps_table(runs)
    if sweeps.empty:
        return pd.DataFrame(columns=["run", "method", "T", "accuracy_pct"])
    table = sweeps[sweeps["method"].str.startswith("rrr_")].dropna(axis=1, how="all").copy()
    if table.empty:  # sweeps of other methods only
        return pd.DataFrame(columns=["run", "method", "T", "accuracy_pct"])
    table["accuracy_pct"] = 100.0 * table["top1"]
    keep = ["run", "method", "T"] + [c for c in table if c.startswith("param_")] + ["accuracy_pct"]
    return table[keep].reset_index(drop=True)


def cue_table(runs: pd.DataFrame) -> pd.DataFrame:
    """SynthDive: accuracy on cue-agreeing vs cue-disagreeing test clips, per run."""
    columns = [
        "cue_acc_cue_agrees",
        "cue_acc_cue_disagrees",
        "cue_gap",
        "cue_follows_cue",
        "cue_n_cue_agrees",
        "cue_n_cue_disagrees",
    ]
    if runs.empty or "cue_gap" not in runs:
        return pd.DataFrame(columns=["run", "method", "T"])
    table = runs[["run", "method", "T", "top1", *[c for c in columns if c in runs]]]
    table = table[table["cue_gap"].notna() | table["cue_acc_cue_agrees"].notna()]
    table = table.rename(columns=lambda c: c.removeprefix("cue_") if c.startswith("cue_") else c)
    return _sort_methods(table)


def mask_stats_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Per shard split (train/test): videos, frames, mean coverage, empty-frame share."""
    if stats.empty:
        return pd.DataFrame(columns=["split", "videos", "frames", "coverage", "empty_share"])
    split = stats["shard"].str.extract(r"^([a-z]+)", expand=False).fillna("all")
    rows = []
    for name, part in [*stats.groupby(split, sort=True), ("all", stats)]:
        frames = part["frames"].to_numpy()
        weights = frames / frames.sum() if frames.sum() else np.full(len(frames), 1 / len(frames))
        rows.append(
            {
                "split": name,
                "videos": len(part),
                "frames": int(frames.sum()),
                "coverage": float(np.nansum(part["coverage"] * weights)),
                "empty_share": float(np.nansum(part["empty_share"] * weights)),
                "videos_all_empty": int((part["empty_share"] == 1.0).sum()),
            }
        )
    return pd.DataFrame(rows)


def failures_summary(failures: pd.DataFrame) -> pd.DataFrame:
    """Per stage: failures (videos left out), warnings (videos kept with a defect), videos."""
    if failures.empty:
        return pd.DataFrame(columns=["stage", "failures", "warnings", "videos"])
    grouped = failures.groupby("stage")
    return pd.DataFrame(
        {
            "failures": grouped["severity"].agg(lambda s: int((s != "warning").sum())),
            "warnings": grouped["severity"].agg(lambda s: int((s == "warning").sum())),
            "videos": grouped["video"].nunique(),
        }
    ).reset_index()


def _sort_methods(table: pd.DataFrame) -> pd.DataFrame:
    order = table["method"].map(lambda m: method_sort_key(m)[0])
    return (
        table.assign(_order=order)
        .sort_values(["_order", "method", "T"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


# The explain stage's summary columns, in reading order: cost, then the metrics (papers 002-004).
EXPLAIN_COST = ["n_clips", "forward_passes", "backward_passes", "seconds", "segmentation_seconds"]
EXPLAIN_METRICS = [
    "deletion_auc",
    "insertion_auc",
    "pointing",
    "topshare_iou",
    "topshare_dice",
    "minmax_iou",
    "minmax_dice",
    "loc_value_hit",
    "loc_mean_hit",
    "loc_energy_hit",
    "loc_value_box_iou",
    "loc_mean_box_iou",
    "loc_energy_box_iou",
    "motion_precision",
    "entropy",
    "selectivity_kept_fraction",
    "selectivity_removed_fraction",
    "selectivity_relevance_fraction",
]
# Summary columns that are not a property of the explainer: the mean target class id, the
# folder, and the forward passes the metrics themselves cost (the same for every map).
EXPLAIN_DROPPED = ["target", "path", "metric_forward_passes"]


def explain_summary_table(explain: pd.DataFrame) -> pd.DataFrame:
    """Every (run, T, explainer): cost and metric means over clips (tables/explain_summary.csv).

    Runs in method order then T; explainers in the explain stage's order (each explainer, then
    its selective version)."""
    if explain.empty:
        return pd.DataFrame(columns=["run", "T", "explainer", *EXPLAIN_COST, *EXPLAIN_METRICS])
    known = ["run", "T", "explainer", "base", "selective", *EXPLAIN_COST, *EXPLAIN_METRICS]
    others = [c for c in explain if c not in known and c not in EXPLAIN_DROPPED]
    table = explain[[c for c in [*known, *others] if c in explain]]
    order = table["run"].map(lambda r: method_sort_key(r)[0])
    return (
        table.assign(_order=order, _row=range(len(table)))
        .sort_values(["_order", "run", "T", "_row"])
        .drop(columns=["_order", "_row"])
        .reset_index(drop=True)
    )


def explain_run_table(summary: pd.DataFrame, run: str, t: int) -> pd.DataFrame:
    """One run's explainer-by-metric table: rows explainer, columns cost then metrics; columns
    that no map of this run has (e.g. selectivity of a run without selective maps) left out."""
    part = summary[(summary["run"] == run) & (summary["T"] == t)]
    columns = [c for c in [*EXPLAIN_COST, *EXPLAIN_METRICS] if c in part]
    part = part[["explainer", *columns]].dropna(axis=1, how="all")
    return part.reset_index(drop=True)


def explain_compare_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric across runs: rows explainer (first run's order), columns '{run} T={T}'."""
    if summary.empty or metric not in summary:
        return pd.DataFrame(columns=["explainer"])
    runs = summary[["run", "T"]].drop_duplicates()
    labels = [f"{r} T={t}" for r, t in zip(runs["run"], runs["T"], strict=True)]
    wide = summary.assign(_column=summary["run"] + " T=" + summary["T"].astype(str)).pivot_table(
        index="explainer", columns="_column", values=metric, aggfunc="first", dropna=False
    )
    explainers = list(dict.fromkeys(summary["explainer"]))
    wide = wide.reindex(index=explainers, columns=labels)
    wide.columns.name = None
    return wide.reset_index()


def chance_level(runs: pd.DataFrame) -> float | None:
    """Top-1 chance (1 / classes) when every run has the same class count; None otherwise."""
    if runs.empty or "num_classes" not in runs:
        return None
    counts = pd.to_numeric(runs["num_classes"], errors="coerce").dropna().unique()
    return 1.0 / float(counts[0]) if len(counts) == 1 and counts[0] > 0 else None


def chance_caption(chance: float | None) -> str:
    """'; chance 0.25' for a table caption ('' when the class count is unknown or varies)."""
    return "" if chance is None else f"; chance {chance:.2f}"
