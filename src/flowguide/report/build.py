"""Build results/report/: index.html and report.md (the same content), figures/, tables/*.csv.

The report is made of whatever results exist; each section that lacks its inputs says what is
missing and which files would fill it, instead of failing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowguide.report import benchmark, collect, figures, tables
from flowguide.report.render import render_html, render_markdown
from flowguide.utils.atomic import atomic_path, atomic_write_text
from flowguide.utils.failures import FlowguideError

log = logging.getLogger("flowguide")

REPORT_DEFAULTS: dict[str, Any] = {
    "gallery_videos": 2,  # Figure 4.2: first videos of the test split that have masks
    "gallery_frames": 4,
    "cam_runs": 4,  # Figure 5.3: at most this many runs (main runs, highest T first)
    "cam_frames": 4,
    "max_failure_rows": 200,  # the page lists at most this many; tables/failures.csv has all
    "decimals": 4,
    "n_boot": 2000,  # bootstrap replicates of the summary's intervals
    # Other results folders (one per SynthDive data seed, `make benchmark`) whose runs the
    # summary pools with this folder's, each (data seed, training seed) one bootstrap unit.
    "pool": [],
    # Figure 4.2 renderer: "inspect" runs `flowguide inspect` (the one gallery renderer) and
    # falls back to the report's own, saying so; "report" uses the report's own directly.
    "gallery_renderer": "inspect",
    # Post-hoc explanations: metrics compared across runs in one table each (when > 1 run);
    # the galleries show cam_frames frames of each run's first explained clip.
    "explain_compare": ["topshare_iou", "deletion_auc", "insertion_auc"],
}

EXPLAIN_TEXT = (
    "Each explainer's map, scored against the diver masks of the evaluation clips; means over "
    "clips. Selective relevance (002: relevance kept where it rises sharply over time, temporal "
    "Sobel G_t > n_std standard deviations; selective.rule 'magnitude' keeps |G_t|) is shown "
    "only for voxel-level maps (GradCAM, RISE; SWAG-V's through its guided-backprop saliency, "
    "selective_guided_backprop): LIME, Kernel SHAP, LOCO, univariate and occlusion maps are "
    "constant per region, where the filter would only find region borders. Cost: model "
    "forward/backward passes and seconds per map (segmentation_seconds: the clip's one SLIC, "
    "shared by the segment-based explainers). deletion_auc: the class score as the most "
    "relevant voxels are removed (lower = more faithful); insertion_auc: as they are put back "
    "(higher = more faithful); pointing: share of clips whose map maximum lies in the mask; "
    "topshare_iou/dice: the top share of voxels (top_k, 10% by default; ties at the cut all "
    "kept) against the mask; minmax_iou/dice: the evaluate stage's convention (map min-max "
    "scaled, >= 0.5), comparable with its GradCAM IoU; loc_{value,mean,energy}_*: SWAG-V's weak "
    "localisation per threshold mode (box of the thresholded map against the mask's box, hit "
    "when the mean IoU > 0.5), alpha chosen on the other clips as Fong & Vedaldi; "
    "motion_precision: share of relevant voxels (relevance above the map's mean, 002's "
    "centring) that move (flow > flow_threshold); entropy: 001's per-frame histogram entropy "
    "in bits; selectivity_*: of the base map's positive voxels, the share the selective map "
    "keeps or removes, and the share of positive relevance kept. '-' = not computed for that map."
)


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, path relative to out)
    missing: list[str] = field(default_factory=list)


@dataclass
class Report:
    sections: list[Section]
    tables_written: dict[str, Path]
    figures_written: dict[str, Path]


class ReportBuilder:
    def __init__(
        self,
        results: str | os.PathLike,
        out: str | os.PathLike,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.results = Path(results)
        self.out = Path(out)
        self.options = {**REPORT_DEFAULTS, **(options or {})}
        self.tables_written: dict[str, Path] = {}
        self.figures_written: dict[str, Path] = {}

    def table(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        path = self.out / "tables" / f"{name}.csv"
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
        self.tables_written[name] = path
        return table

    def figure(self, name: str, path: Path | None) -> str | None:
        if path is None:
            return None
        self.figures_written[name] = path
        return path.relative_to(self.out).as_posix()

    def fig_path(self, name: str) -> Path:
        return self.out / "figures" / f"{name}.png"

    # --- sections --------------------------------------------------------------------------

    def summary_section(self, runs: pd.DataFrame) -> Section:
        """The answer first: the benchmark table with intervals and chance, one sentence per run."""
        section = Section("Summary: right for the right reasons? (SynthDive benchmark)")
        # This results folder, then the data-seed folders pooled in (report option "pool").
        frames = [benchmark.per_clip(runs, benchmark.load_clips(self.results))] if len(runs) else []
        for folder in map(Path, self.options["pool"]):
            if not (folder / "eval").is_dir():
                raise FlowguideError(f"report pool folder {folder} has no eval/ results")
            frames.append(
                benchmark.per_clip(collect.load_runs(folder), benchmark.load_clips(folder))
            )
        frames = [f for f in frames if len(f)]
        clip_rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if clip_rows.empty:
            section.missing.append(
                "no SynthDive run to score: needs results/eval/*/T*/predictions.csv and "
                "results/synthdive/clips.csv (the benchmark needs the planted cue)"
            )
            return section
        k = benchmark.num_classes_of(clip_rows)
        table = self.table(
            "benchmark", benchmark.benchmark_table(clip_rows, self.options["n_boot"])
        )
        section.text += benchmark.sentences(table, k)
        section.tables.append(
            (
                f"Benchmark: mean [95% interval]; {benchmark.chance_text(k)}",
                benchmark.display_table(table, k),
            )
        )
        image = self.figure(
            "benchmark", benchmark.benchmark_figure(table, k, self.fig_path("benchmark"))
        )
        if image:
            section.images.append(("Accuracies with 95% intervals; dashed line: chance", image))
        counts = self.table("test_design", benchmark.design_counts(clip_rows, k))
        section.tables.append(("Test split: clips per class and cue agreement", counts))
        section.text.append(benchmark.BOOTSTRAP_TEXT.format(n_boot=self.options["n_boot"]))
        return section

    def accuracy_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Accuracy by method and T (Table 5.1, Figure 5.1)")
        accuracy = self.table("accuracy", tables.accuracy_table(runs))
        complexity = self.table("complexity", tables.complexity_table(runs))
        if accuracy.empty:
            section.missing.append("no evaluation run: results/eval/{method}/T{T}/metrics.json")
            return section
        section.text.append("Test-split top-1 accuracy; '-' = that (method, T) did not run.")
        section.tables.append(("Table 5.1: top-1 accuracy, methods by T", accuracy))
        image = self.figure(
            "accuracy_vs_t", figures.accuracy_vs_t(complexity, self.fig_path("accuracy_vs_t"))
        )
        if image:
            section.images.append(("Figure 5.1: accuracy against T", image))
        return section

    def complexity_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Accuracy against complexity (Figure 5.4)")
        complexity = tables.complexity_table(runs)
        image = self.figure(
            "accuracy_vs_gflops",
            figures.accuracy_vs_gflops(complexity, self.fig_path("accuracy_vs_gflops")),
        )
        if image is None:
            section.missing.append("no run recorded gflops in its metrics.json")
            return section
        section.text.append(
            "GFLOPs from fvcore, which counts one multiply-add as one flop "
            "(giga multiply-adds of one clip at the evaluation input size)."
        )
        section.tables.append(("Accuracy, GFLOPs and parameters", complexity))
        section.images.append(("Figure 5.4: accuracy against GFLOPs", image))
        return section

    def cost_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Training cost (Table 5.4)")
        cost = self.table("training_cost", tables.cost_table(runs))
        if cost.empty:
            section.missing.append("no run recorded training_cost (results/train/*/T*/metrics.csv)")
            return section
        section.text.append(
            "Mean wall time per epoch from the training log; ratio = hours per "
            "epoch over vanilla's at the same T ('-' where vanilla did not run)."
        )
        section.tables.append(("Table 5.4: hours per epoch, ordered by T then cost", cost))
        return section

    def maps_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Explanations against the diver masks (GradCAM, attention)")
        maps = self.table("map_overlap", tables.maps_table(runs))
        if maps.empty:
            section.missing.append("no run scored maps against masks (cam_overlap in metrics.json)")
        else:
            section.text.append(
                "Map resized to the mask, min-max normalised over the clip, "
                "attended where >= the threshold in each run's metrics.json; "
                "mean IoU and Dice over clips; norm_entropy: Shannon entropy normalised to [0, 1]."
            )
            section.tables.append(
                ("IoU, Dice and entropy per map (slow/fast = GradCAM pathways)", maps)
            )
        self.cam_figures(runs, section)
        return section

    def cam_figures(self, runs: pd.DataFrame, section: Section) -> None:
        # vanilla first (the baseline every guided method's maps are compared with), then
        # main runs before sweeps, highest T first.
        candidates = (
            runs.assign(_other=runs["method"] != "vanilla").sort_values(
                ["_other", "is_sweep", "T"], ascending=[True, True, False]
            )
            if len(runs)
            else runs
        )
        shown = 0
        for _, run in candidates.iterrows():
            if shown >= self.options["cam_runs"]:
                break
            cams = Path(run["path"]) / "cams.h5"
            if not cams.exists():
                continue
            name = f"cam_{run['run']}_T{run['T']}"
            image = self.figure(
                name,
                figures.cam_vs_mask(
                    cams, self.fig_path(name), self.options["cam_frames"], run["run"]
                ),
            )
            if image:
                section.images.append(
                    (f"Figure 5.3: {run['run']} T={run['T']}: maps and mask", image)
                )
                shown += 1
        if shown == 0:
            section.missing.append("no cams.h5 with saved maps under results/eval/*/T*/")

    def explain_section(self) -> Section:
        section = Section("Post-hoc explanations (papers 002-004)")
        folders = sorted(  # the thesis' method order, as the other tables
            collect.explain_dirs(self.results),
            key=lambda item: (tables.method_sort_key(item[0]), item[1]),
        )
        summary = self.table(
            "explain_summary", tables.explain_summary_table(collect.load_explain(self.results))
        )
        if not folders:
            section.missing.append(
                "no explain output: results/explain/{run}/T{T}/summary.csv and maps.h5 "
                "(the explain rule, config explain section)"
            )
            return section
        section.text.append(EXPLAIN_TEXT)
        for metric in self.options["explain_compare"] if len(folders) > 1 else []:
            wide = self.table(f"explain_{metric}", tables.explain_compare_table(summary, metric))
            if len(wide):
                section.tables.append((f"{metric} by explainer and run", wide))
        for run, t, folder in folders:
            table = tables.explain_run_table(summary, run, t)
            if table.empty:
                section.missing.append(
                    f"{folder.relative_to(self.results)}/summary.csv has no rows "
                    "(no clip explained: see its failures.csv)"
                )
                continue
            section.tables.append((f"{run} T={t}: explainer by metric (means over clips)", table))
            self.explain_gallery(summary, run, t, folder, section)
        return section

    def explain_gallery(
        self, summary: pd.DataFrame, run: str, t: int, folder: Path, section: Section
    ) -> None:
        maps = folder / "maps.h5"
        clip = figures.first_explained_clip(maps) if maps.exists() else None
        if clip is None:
            where = maps.relative_to(self.results)
            problem = "holds no map" if maps.exists() else "absent"
            section.missing.append(f"gallery {run} T={t}: {where} {problem}")
            return
        cams = self.results / "eval" / run / f"T{t}" / "cams.h5"
        mask = figures.eval_clip_mask(cams, clip.vid_name, clip.shape)
        name = f"explain_{run}_T{t}"
        order = summary[(summary["run"] == run) & (summary["T"] == t)]["explainer"].tolist()
        path = figures.explain_gallery(
            clip, self.fig_path(name), self.options["cam_frames"], f"{run} T={t}", mask, order
        )
        where = cams.relative_to(self.results)
        overlay = (
            f"outline: the diver mask of the same clip from {where} (evaluation and explain "
            "take the same frames and crop)"
            if mask is not None
            else f"maps only, no mask outline: {where} "
            + ("holds no mask of this clip at the maps' geometry" if cams.exists() else "absent")
        )
        section.images.append(
            (
                f"{run} T={t}: post-hoc maps of {clip.vid_name} (first clip of maps.h5) on the "
                "model's input frames after the evaluation crop; a map without negative values "
                "min-max scaled over the clip, a signed one divided by its largest magnitude; "
                f"{overlay}",
                self.figure(name, path),
            )
        )

    def sweep_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Hyperparameter sweeps (Figure 5.2, Table 5.2)")
        sweeps = self.table("sweeps", tables.sweeps_table(runs))
        alpha = self.table("alpha_sweep", tables.alpha_sweep_table(runs))
        rrr = self.table("rrr_sweep", tables.rrr_sweep_table(runs))
        if sweeps.empty:
            section.missing.append("no sweep ran (no metrics.json with non-empty params)")
            return section
        if alpha.empty:
            section.missing.append("no ogl_dice ce_weight (Section 5.2 alpha) sweep")
        else:
            section.tables.append(("ogl_dice: alpha against accuracy, IoU and Dice", alpha))
            image = self.figure(
                "alpha_sweep", figures.alpha_sweep(alpha, self.fig_path("alpha_sweep"))
            )
            if image:
                section.images.append(("Figure 5.2: alpha against accuracy and IoU/Dice", image))
        if rrr.empty:
            section.missing.append("no rrr_* sweep (lambda, worst-performer percentile)")
        else:
            section.tables.append(("Table 5.2: RRR sweeps, accuracy in %", rrr))
        section.tables.append(("All sweep runs", sweeps))
        return section

    def cue_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Reliance on the planted cue (SynthDive)")
        cue = self.table("cue_reliance", tables.cue_table(runs))
        if cue.empty:
            section.missing.append(
                "no run has cue metrics (SynthDive clips.csv absent or Diving48)"
            )
            return section
        section.text.append(
            "Accuracy on test clips whose background cue agrees with the label "
            "vs clips where it does not; gap = the difference; follows_cue = share "
            "of disagreeing clips predicted as the cue's class."
        )
        section.tables.append(("Accuracy by cue agreement", cue))
        return section

    def mask_section(self) -> Section:
        section = Section("Mask quality and galleries (Figure 4.2)")
        quality = self.table("mask_quality", collect.load_quality(self.results))
        if quality.empty:
            section.missing.append(
                "results/masks/quality.csv (IoU against true masks; SynthDive only)"
            )
        else:
            section.tables.append(
                (
                    "Mask IoU against the true masks (results/masks/quality.csv)",
                    _head(quality, self.options["max_failure_rows"]),
                )
            )
        stats = collect.load_mask_stats(self.results)
        self.table("mask_coverage_per_video", stats)
        summary = self.table("mask_coverage", tables.mask_stats_summary(stats))
        if stats.empty:
            section.missing.append("no mask shards results/masks/*.h5")
        else:
            section.text.append(
                "Coverage = mean share of mask pixels per frame; empty share = "
                "share of frames with no mask (no candidate in the central band)."
            )
            section.tables.append(("Mask coverage and empty frames, from the mask shards", summary))
        self.galleries(stats, section)
        return section

    def galleries(self, stats: pd.DataFrame, section: Section) -> None:
        manifest = collect.load_manifest(self.results)
        if manifest.empty or stats.empty:
            section.missing.append("gallery: needs results/manifest.csv and mask shards")
            return
        with_masks = manifest[manifest["vid_name"].isin(stats["vid_name"])]
        # Test videos first (those are the ones evaluated), then by name: a stable choice.
        order = with_masks.assign(_train=with_masks["split"] != "test")
        chosen = order.sort_values(["_train", "vid_name"]).head(self.options["gallery_videos"])
        for _, video in chosen.iterrows():
            name = f"gallery_{video['vid_name']}"
            path = self.fig_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            problem = None
            if self.options["gallery_renderer"] == "inspect":
                problem = inspect_gallery(self.results, video, path)
            if self.options["gallery_renderer"] != "inspect" or problem:
                if problem:
                    section.text.append(
                        f"Gallery {video['vid_name']}: `flowguide inspect` "
                        f"failed ({problem}); rendered by the report instead."
                    )
                figures.mask_gallery(self.results, video, path, self.options["gallery_frames"])
            image = self.figure(name, path if path.exists() else None)
            if image:
                caption = f"Figure 4.2: RGB, flow, candidates, mask: {video['vid_name']}"
                section.images.append((caption, image))

    def failures_section(self) -> Section:
        section = Section("Failures recorded by the pipeline")
        failures = self.table("failures", collect.load_failures(self.results))
        # The pipeline-wide list of per-video failures, next to the manifest.
        with atomic_path(Path(self.results, "failures.csv")) as tmp:
            failures.to_csv(tmp, index=False)
        if failures.empty:
            section.text.append("No failure recorded (results/failures/**.csv empty or absent).")
            return section
        section.tables.append(("Failures per stage", tables.failures_summary(failures)))
        section.tables.append(
            (
                "Failures and warnings (stage, video, reason, severity: error = left out, "
                "warning = kept with the defect named)",
                _head(failures, self.options["max_failure_rows"]),
            )
        )
        return section

    def build(self) -> Report:
        for folder in (self.out, self.out / "figures", self.out / "tables"):
            folder.mkdir(parents=True, exist_ok=True)  # always: Snakemake declares both folders
        runs = collect.load_runs(self.results)
        self.table("runs", runs.drop(columns=["params"]) if len(runs) else runs)
        sections = [
            self.summary_section(runs),
            self.accuracy_section(runs),
            self.complexity_section(runs),
            self.cost_section(runs),
            self.maps_section(runs),
            self.explain_section(),
            self.sweep_section(runs),
            self.cue_section(runs),
            self.mask_section(),
            self.failures_section(),
        ]
        decimals = self.options["decimals"]
        atomic_write_text(self.out / "report.md", render_markdown(sections, decimals))
        atomic_write_text(self.out / "index.html", render_html(sections, decimals))
        return Report(sections, self.tables_written, self.figures_written)


def build_report(
    results: str | os.PathLike, out: str | os.PathLike, options: Mapping[str, Any] | None = None
) -> Report:
    return ReportBuilder(results, out, options).build()


def inspect_gallery(results: Path, video: pd.Series, png: Path) -> str | None:
    """Render Figure 4.2 with `flowguide inspect`; None on success, else the reason."""
    command = [
        sys.executable, "-m", "flowguide", "inspect", "--results", str(results),
        "--shard", str(video["shard"]), "--video", str(video["vid_name"]), "--out", str(png),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode == 0 and png.exists():
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1][-200:] if lines else f"exit status {done.returncode}"


def _head(table: pd.DataFrame, rows: int) -> pd.DataFrame:
    return table.head(rows)
