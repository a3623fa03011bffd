"""The report's lead: the SynthDive benchmark table with 95% intervals, chance, and one sentence
per method derived from the numbers.

Per clip it joins each evaluated run's ``predictions.csv`` (label, pred) and ``cam_overlap.csv``
(GradCAM-vs-mask IoU, mean of the slow and fast pathway maps) with SynthDive's ``clips.csv``
(cue_class). Runs that differ only in their training seed (run-name parameter ``seed``, e.g.
``vanilla-seed1``) are pooled into one row; each (data seed, training seed) pair is one seed unit
of the two-level bootstrap (flowguide.evaluate.uncertainty).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flowguide.evaluate.uncertainty import DEFAULT_N_BOOT, STATISTICS, cells, summarise
from flowguide.utils.failures import FlowguideError

SEED_PARAM = "seed"
CONTROLS = ("no_cue", "vanilla")  # listed first, in this order
LABELS = {
    "top1": "top-1",
    "right_reason": "right-reason acc.",
    "follows_cue": "follows cue",
    "overlap": "GradCAM IoU",
}
CAM_MAPS = ("slow", "fast")


def _clips_files(results: Path) -> list[Path]:
    """SynthDive clips.csv of the evaluated dataset (several data seeds: one folder each)."""
    return sorted(results.glob("synthdive/clips.csv")) + sorted(
        results.glob("seeds/*/synthdive/clips.csv")
    )


def load_clips(results: Path) -> pd.DataFrame:
    frames = []
    for path in _clips_files(results):
        table = pd.read_csv(path)
        missing = {"vid_name", "cue_class", "seed", "split"} - set(table.columns)
        if missing:
            raise FlowguideError(f"{path}: lacks column(s) {sorted(missing)}")
        frames.append(table[table["split"] == "test"][["vid_name", "cue_class", "seed"]])
    if not frames:
        return pd.DataFrame(columns=["vid_name", "cue_class", "seed"])
    return pd.concat(frames, ignore_index=True).drop_duplicates("vid_name")


def group_name(run: str, params: dict) -> str:
    """The run name without its training-seed parameter: what the table's row is called."""
    if SEED_PARAM not in params:
        return run
    return "-".join(p for p in run.split("-") if not p.startswith(SEED_PARAM))


def per_clip(runs: pd.DataFrame, clips: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, test clip): group, T, unit, label, pred, cue_class, overlap."""
    frames = []
    for _, run in runs.iterrows():
        folder = Path(run["path"])
        predictions = folder / "predictions.csv"
        if not predictions.exists():
            continue
        table = pd.read_csv(predictions)[["vid_name", "label", "pred"]]
        overlap = folder / "cam_overlap.csv"
        if overlap.exists():
            cams = pd.read_csv(overlap)
            cams = cams[cams["map"].isin(CAM_MAPS)]
            mean_iou = cams.groupby("vid_name")["iou"].mean().rename("overlap")
            table = table.merge(mean_iou, on="vid_name", how="left")
        table = table.merge(clips, on="vid_name", how="inner")
        params = run["params"] if isinstance(run["params"], dict) else {}
        seed = params.get(SEED_PARAM, 0)
        table["unit"] = [f"d{d}-t{int(seed)}" for d in table["seed"]]
        table["group"] = group_name(run["run"], params)
        table["T"] = int(run["T"])
        frames.append(table)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _order(groups: list[str]) -> list[str]:
    from flowguide.report.tables import method_sort_key

    controls = [c for c in CONTROLS if c in groups]
    rest = sorted((g for g in groups if g not in CONTROLS), key=method_sort_key)
    return controls + rest


def benchmark_table(
    clip_rows: pd.DataFrame, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """Per (run group, T): each statistic's mean, 95% interval and clip count, and seed units."""
    if clip_rows.empty:
        return pd.DataFrame()
    rows = []
    for t, at_t in clip_rows.groupby("T"):
        for group in _order(sorted(at_t["group"].unique())):
            own = at_t[at_t["group"] == group]
            rows.append({"run": group, "T": int(t), **summarise(own, STATISTICS, n_boot, seed)})
    return pd.DataFrame(rows)


def _ci(row: pd.Series, stat: str) -> str:
    if not np.isfinite(row[stat]):
        return "-"
    return f"{row[stat]:.2f} [{row[f'{stat}_low']:.2f}, {row[f'{stat}_high']:.2f}]"


def display_table(table: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """The summary's table: 'mean [low, high]' per statistic, chance once per column header."""
    chance = 1 / num_classes
    out = pd.DataFrame({"run": table["run"], "T": table["T"]})
    for stat in STATISTICS:
        label = LABELS[stat]
        if stat != "overlap":
            label += f" (chance {chance:.2f})"
        out[label] = [_ci(row, stat) for _, row in table.iterrows()]
    out["seed units"] = table["n_units"].astype(int)
    out["clips (disagreeing)"] = [
        f"{int(a)} ({int(b)})"
        for a, b in zip(table["top1_n"], table["right_reason_n"], strict=True)
    ]
    return out


def _overlaps(a: pd.Series, b: pd.Series, stat: str) -> bool:
    return not (a[f"{stat}_high"] < b[f"{stat}_low"] or b[f"{stat}_high"] < a[f"{stat}_low"])


def sentences(table: pd.DataFrame, num_classes: int) -> list[str]:
    """One sentence per row, from the numbers: against chance and against vanilla's interval."""
    chance = 1 / num_classes
    out = []
    for t, at_t in table.groupby("T", sort=False):
        rows = {r["run"]: r for _, r in at_t.iterrows()}
        vanilla = rows.get("vanilla")
        for name, row in rows.items():
            rr = row["right_reason"]
            if not np.isfinite(rr):
                out.append(f"{name} (T={t}): no cue-disagreeing test clip, no right-reason score.")
                continue
            vs_chance = (
                "above chance"
                if row["right_reason_low"] > chance
                else "below chance"
                if row["right_reason_high"] < chance
                else "not distinguishable from chance"
            )
            text = (
                f"{name} (T={t}): right-reason accuracy {rr:.2f} "
                f"[{row['right_reason_low']:.2f}, {row['right_reason_high']:.2f}], {vs_chance} "
                f"({chance:.2f}); it follows the cue on {row['follows_cue']:.0%} of "
                f"cue-disagreeing clips"
            )
            if name == "no_cue":
                text += " (the ceiling: the same model trained without the shortcut)"
            elif name == "vanilla":
                control = rows.get("no_cue")
                if control is None or not np.isfinite(control["right_reason"]):
                    text += " (no no_cue control to compare with)"
                elif _overlaps(row, control, "right_reason"):
                    text += "; its interval overlaps the no_cue control's: no measurable shortcut"
                else:
                    text += "; its interval lies below the no_cue control's: the shortcut shows"
            elif vanilla is not None and np.isfinite(vanilla["right_reason"]):
                if _overlaps(row, vanilla, "right_reason"):
                    text += "; its interval overlaps vanilla's: no measurable gain over vanilla"
                elif rr > vanilla["right_reason"]:
                    text += (
                        "; its interval lies above vanilla's: right for the right reasons "
                        "more often than vanilla"
                    )
                else:
                    text += "; its interval lies below vanilla's: worse than vanilla"
            out.append(text + ".")
    return out


def design_counts(clip_rows: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Test-split cells (class x cue agreement) of the first seed unit's clips, as integers."""
    if clip_rows.empty:
        return pd.DataFrame()
    counts = cells(clip_rows, num_classes)
    total = {
        "class": "all",
        "cue agrees": int(counts["cue agrees"].sum()),
        "cue disagrees": int(counts["cue disagrees"].sum()),
    }
    counts["class"] = counts["class"].astype(str)
    return pd.concat([counts, pd.DataFrame([total])], ignore_index=True)


def num_classes_of(clip_rows: pd.DataFrame) -> int:
    """K from the labels seen (the test split has every class)."""
    return int(max(clip_rows["label"].max(), clip_rows["pred"].max())) + 1


BOOTSTRAP_TEXT = (
    "Intervals: 95% two-level percentile bootstrap ({n_boot} replicates): draw seed units "
    "(data seed x training seed) with replacement, then each drawn unit's test clips with "
    "replacement, and recompute the statistic over the pooled clips. With one seed unit only "
    "the test clips are resampled, so the interval does not include training-seed variation. "
    "right-reason acc. = accuracy on the clips whose cue disagrees with the label; follows cue "
    "= share of those predicted as the cue's class; GradCAM IoU = mean over clips of the IoU "
    "of the GradCAM map (mean of slow and fast pathway) with the diver mask. Chance = 1/K for "
    "the three accuracies (a model that reads only the cue scores 0 right-reason accuracy and "
    "follows the cue on every disagreeing clip)."
)


def chance_text(k: int) -> str:
    return f"Chance: {1 / k:.2f} ({k} classes)."


def benchmark_figure(table: pd.DataFrame, num_classes: int, path: Path) -> Path | None:
    """Top-1 and right-reason accuracy per run with 95% intervals and the chance line."""
    from flowguide.report.figures import _save, plt

    if table.empty:
        return None
    stats = ("top1", "right_reason", "follows_cue")
    labels = [f"{r} T={t}" for r, t in zip(table["run"], table["T"], strict=True)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(table) + 2), 3.4))
    x = np.arange(len(table))
    width = 0.8 / len(stats)
    for i, stat in enumerate(stats):
        mean = table[stat].to_numpy(float)
        err = np.vstack([mean - table[f"{stat}_low"], table[f"{stat}_high"] - mean])
        ax.bar(x + (i - 1) * width, mean, width, yerr=err, capsize=3, label=LABELS[stat])
    ax.axhline(1 / num_classes, color="k", ls="--", lw=1, label=f"chance ({1 / num_classes:.2f})")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of test clips")
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    return _save(fig, path)
