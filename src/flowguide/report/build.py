"""Build results/report/: index.html and report.md (the same content), figures/, tables/*.csv.

The report is made of whatever results exist; each section that lacks its inputs says what is
missing and which files would fill it, instead of failing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from flowguide.report import benchmark, collect, compute, figures, tables
from flowguide.report.figure_sections import FigureSections
from flowguide.report.render import render_html, render_markdown
from flowguide.report.section import Report, Section, first_rows
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
    "gpu_tflops": 10.0,  # assumed sustained throughput of one GPU for the estimated GPU time
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


class ReportBuilder(FigureSections):
    """The report's sections in order; the figure-heavy ones come from FigureSections."""

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

    def compute_section(self, runs: pd.DataFrame) -> Section:
        """Measured CPU and wall time per stage (Snakemake's benchmark files), of this folder
        and the pooled ones, and the one-GPU estimate (labelled as such)."""
        section = Section("Compute cost: measured on this machine, estimated for one GPU")
        folders = [self.results, *map(Path, self.options["pool"])]
        jobs = {folder.as_posix(): compute.load_job_times(folder) for folder in folders}
        times = self.table("compute_time", compute.time_table(jobs))
        if times.empty:
            section.missing.append("no Snakemake benchmark files (results/logs/benchmarks/**.tsv)")
            return section
        section.text.append(compute.COMPUTE_TEXT)
        section.tables.append(("Measured: seconds per stage, summed over the folders", times))
        tflops = float(self.options["gpu_tflops"])
        estimates = []
        for folder in folders:
            folder_runs = runs if folder == self.results else collect.load_runs(folder)
            estimate = compute.gpu_estimate(folder_runs, jobs[folder.as_posix()], tflops)
            estimates.append(estimate.assign(results=folder.name))
        estimate = self.table("gpu_estimate", pd.concat(estimates, ignore_index=True))
        total, speedup = compute.one_gpu_total(times, estimate)
        if estimate.empty or pd.isna(total):
            section.missing.append("no training run with gflops and training cost to estimate from")
            return section
        section.text.append(
            compute.GPU_TEXT.format(
                flops_per_mac=compute.FLOPS_PER_MAC,
                passes=compute.TRAIN_PASS_FACTOR,
                tflops=tflops,
                speedup=speedup,
            )
        )
        section.text.append(
            f"Estimated one-GPU serial time, lower bound: {total:.0f} s ({total / 60:.1f} min), "
            f"against {times['wall_s'].iloc[-1]:.0f} s measured here (serial, summed over jobs)."
        )
        caption = "Estimated (not measured): FLOP-bound GPU seconds per training run"
        section.tables.append((caption, estimate))
        return section

    def accuracy_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Accuracy by method and T (Table 5.1, Figure 5.1)")
        accuracy = self.table("accuracy", tables.accuracy_table(runs))
        complexity = self.table("complexity", tables.complexity_table(runs))
        if accuracy.empty:
            section.missing.append("no evaluation run: results/eval/{method}/T{T}/metrics.json")
            return section
        section.text.append("Test-split top-1 accuracy; '-' = that (method, T) did not run.")
        chance = tables.chance_level(runs)
        caption = "Table 5.1: top-1 accuracy, methods by T" + tables.chance_caption(chance)
        section.tables.append((caption, accuracy))
        image = self.figure(
            "accuracy_vs_t",
            figures.accuracy_vs_t(complexity, self.fig_path("accuracy_vs_t"), chance),
        )
        if image:
            dashed = "; dashed line: chance" if chance is not None else ""
            section.images.append((f"Figure 5.1: accuracy against T{dashed}", image))
        return section

    def complexity_section(self, runs: pd.DataFrame) -> Section:
        section = Section("Accuracy against complexity (Figure 5.4)")
        complexity = tables.complexity_table(runs)
        image = self.figure(
            "accuracy_vs_gflops",
            figures.accuracy_vs_gflops(
                complexity, self.fig_path("accuracy_vs_gflops"), tables.chance_level(runs)
            ),
        )
        if image is None:
            section.missing.append("no run recorded gflops in its metrics.json")
            return section
        section.text.append(
            "GFLOPs from fvcore, which counts one multiply-add as one flop "
            "(giga multiply-adds of one clip at the evaluation input size)."
        )
        caption = "Accuracy, GFLOPs and parameters" + tables.chance_caption(
            tables.chance_level(runs)
        )
        section.tables.append((caption, complexity))
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
        caption = "Accuracy by cue agreement" + tables.chance_caption(tables.chance_level(runs))
        section.tables.append((caption, cue))
        return section

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
                first_rows(failures, self.options["max_failure_rows"]),
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
            self.compute_section(runs),
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
