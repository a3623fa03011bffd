"""The report's figure-heavy sections: maps against the diver masks (Figure 5.3), post-hoc
explanations (papers 002-004) and mask quality with galleries (Figure 4.2). A mixin of
``ReportBuilder`` (report/build.py), which provides ``results``, ``options``, ``table``,
``figure`` and ``fig_path``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from flowguide.report import collect, figures, galleries, tables
from flowguide.report.section import Section, first_rows

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


class FigureSections:
    """Sections of ReportBuilder that draw figures from eval/, explain/ and masks/."""

    if TYPE_CHECKING:  # provided by ReportBuilder
        results: Path
        options: dict[str, Any]

        def table(self, name: str, table: pd.DataFrame) -> pd.DataFrame: ...
        def figure(self, name: str, path: Path | None) -> str | None: ...
        def fig_path(self, name: str) -> Path: ...

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
        clip = galleries.first_explained_clip(maps) if maps.exists() else None
        if clip is None:
            where = maps.relative_to(self.results)
            problem = "holds no map" if maps.exists() else "absent"
            section.missing.append(f"gallery {run} T={t}: {where} {problem}")
            return
        cams = self.results / "eval" / run / f"T{t}" / "cams.h5"
        mask = galleries.eval_clip_mask(cams, clip.vid_name, clip.shape)
        name = f"explain_{run}_T{t}"
        order = summary[(summary["run"] == run) & (summary["T"] == t)]["explainer"].tolist()
        path = galleries.explain_gallery(
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
                    first_rows(quality, self.options["max_failure_rows"]),
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
                galleries.mask_gallery(self.results, video, path, self.options["gallery_frames"])
            image = self.figure(name, path if path.exists() else None)
            if image:
                caption = f"Figure 4.2: RGB, flow, candidates, mask: {video['vid_name']}"
                section.images.append((caption, image))


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
