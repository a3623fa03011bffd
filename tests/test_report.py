"""The report builds from a fixture results tree and its tables hold the fixture's numbers."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowguide.evaluate.evaluation import SavedMaps, write_saved_maps
from flowguide.report import galleries
from flowguide.report.build import build_report
from flowguide.utils.failures import write_failures
from flowguide.utils.flowviz import flow_to_color
from flowguide.utils.h5 import (
    create_video_group,
    set_attrs,
    write_frames_dataset,
    write_masks,
    write_shard,
)
from flowguide.utils.video import write_video

# (method, T) -> (top1, gflops, hours per epoch, fast-pathway IoU)
MAIN_RUNS = {
    ("vanilla", 8): (0.4732, 1.25, 0.20, 0.05),
    ("vanilla", 16): (0.5100, 2.50, 0.40, 0.06),
    ("rrr_ogl", 8): (0.5370, 1.25, 0.50, 0.08),
    ("rrr_ogl", 16): (0.6940, 2.50, 1.10, 0.09),
}
ALPHA_RUNS = {0.0: (0.0418, 0.02), 0.25: (0.4780, 0.05)}  # alpha -> (top1, fast IoU), T = 8
RRR_RUNS = {0.01: 0.534, 0.5: 0.489}  # lambda -> top1, rrr_ogl, T = 8
# The explain stage's summary.csv of rrr_ogl T=16: explainer -> (forward passes, deletion AUC,
# insertion AUC, top-k IoU, selectivity kept fraction); in the stage's row order.
EXPLAIN_ROWS = {
    "gradcam": (1.0, 0.125, 0.625, 0.25, None),
    "selective_gradcam": (1.0, 0.375, 0.5, 0.0625, 0.75),
    "occlusion": (181.0, 0.0625, 0.875, 0.5, None),
    "selective_occlusion": (181.0, 0.25, 0.4375, 0.125, 0.5),
}
EXPLAIN_VIDEOS = ["clip_a", "clip_b"]  # maps.h5 groups; clip_a has a mask in the run's cams.h5
EXPLAIN_FRAMES = [0, 2, 5, 7]


def metrics_doc(method, base, t, params, top1, gflops=None, hours=None, iou=None, cue=None):
    doc = {
        "method": method, "base_method": base, "T": t, "params": params, "top1": top1,
        "num_classes": 3, "n_clips": 12, "gflops": gflops, "params_count": 1000,
        "training_cost": {"hours_per_epoch": hours, "seconds_per_clip": None, "epochs": 2},
        "maps": {} if iou is None else {"fast": {"iou": iou, "dice": 2 * iou / (1 + iou)},
                                        "slow": {"iou": iou / 2, "dice": iou}},
    }  # fmt: skip
    if cue:
        doc["cue"] = cue
    return doc


def write_run(results: Path, doc: dict, folder: str) -> Path:
    # The folder name deliberately differs from doc["method"] for sweeps: the report must read
    # the fields, not the path.
    run_dir = results / "eval" / folder / f"T{doc['T']}"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(doc))
    return run_dir


@pytest.fixture
def results(tmp_path: Path) -> Path:
    res = tmp_path / "results"
    for (method, t), (top1, gflops, hours, iou) in MAIN_RUNS.items():
        cue = {"acc_cue_agrees": 0.9, "acc_cue_disagrees": top1 - 0.1, "gap": 1.0 - top1,
               "follows_cue": 0.5, "n_cue_agrees": 4, "n_cue_disagrees": 8}  # fmt: skip
        run_dir = write_run(res, metrics_doc(method, method, t, {}, top1, gflops, hours, iou, cue),
                            method)  # fmt: skip
        if (method, t) == ("rrr_ogl", 16):
            mask = np.zeros((4, 8, 8), bool)
            mask[:, 2:6, 2:6] = True
            saved = SavedMaps("clip_a", 1, 1, {"fast": mask.astype(np.float16)}, mask)
            write_saved_maps(run_dir / "cams.h5", [saved], 0.5, {"method": method, "T": t})
            write_explain(res / "explain" / method / f"T{t}")
    for alpha, (top1, iou) in ALPHA_RUNS.items():
        doc = metrics_doc(
            f"ogl_dice-ce_weight{alpha}", "ogl_dice", 8, {"ce_weight": alpha}, top1, iou=iou
        )
        write_run(res, doc, f"sweep_a{alpha}")
    for lam, top1 in RRR_RUNS.items():
        doc = metrics_doc(f"rrr_ogl-lambda{lam}", "rrr_ogl", 8, {"lambda": lam}, top1)
        write_run(res, doc, f"sweep_l{lam}")
    (res / "masks").mkdir(parents=True)
    pd.DataFrame({"vid_name": ["v0", "v1", "overall"], "iou": [0.5, 0.7, 0.6]}).to_csv(
        res / "masks" / "quality.csv", index=False
    )
    write_failures(res / "failures" / "flow" / "train0000.csv", [
        {"stage": "flow", "video": "bad1", "reason": "VideoError: cannot decode"},
        {"stage": "flow", "video": "bad2", "reason": "VideoError: no stream"},
    ])  # fmt: skip
    write_failures(res / "failures" / "select" / "test0000.csv", [
        {"stage": "select", "video": "v9", "reason": "ShardError: missing"},
    ])  # fmt: skip
    # One mask shard: v0 has 4 frames, 2 empty, 2 with 16 of 64 pixels -> coverage 0.125.
    masks = np.zeros((4, 8, 8), bool)
    masks[2:, 2:6, 2:6] = True
    with write_shard(res / "masks" / "test0000.h5") as fh:
        write_masks(create_video_group(fh, "v0"), "mask", masks)
    with write_shard(res / "flow" / "test0000.h5") as fh:  # (gaps, 2, H, W), as the flow stage
        create_video_group(fh, "v0").create_dataset("flow", data=fixture_flow())
    video = res / "synthdive" / "rgb" / "v0.mp4"
    write_video(video, np.full((4, 16, 16, 3), 128, np.uint8), fps=25, qscale=4)
    pd.DataFrame([{"vid_name": "v0", "split": "test", "label": 0, "path": str(video),
                   "start_frame": 0, "end_frame": 3, "shard": "test0000"}]).to_csv(
        res / "manifest.csv", index=False)  # fmt: skip
    return res


def fixture_flow() -> np.ndarray:
    """Flow of v0's 3 gaps: a uniform shift that grows with the gap, plus a ramp."""
    flow = np.zeros((3, 2, 8, 8), np.float32)
    for gap in range(3):
        flow[gap, 0] = gap + 1.0
        flow[gap, 1] = np.linspace(-1, 1, 8)[None, :]
    return flow


def explain_maps(vid: str) -> dict[str, np.ndarray]:
    """Known (T, H, W) maps of one clip: gradcam >= 0, occlusion signed, selective ones sparse."""
    rng = np.random.default_rng(len(vid))
    gradcam = rng.random((4, 8, 8)).astype(np.float16)
    occlusion = (rng.random((4, 8, 8)) - 0.5).astype(np.float16)
    return {
        "gradcam": gradcam,
        "selective_gradcam": np.where(gradcam > 0.8, gradcam, 0).astype(np.float16),
        "occlusion": occlusion,
        "selective_occlusion": np.where(np.abs(occlusion) > 0.4, occlusion, 0).astype(np.float16),
    }


def write_explain(folder: Path) -> None:
    """The explain stage's outputs (summary.csv, maps.h5) with known numbers."""
    folder.mkdir(parents=True)
    rows = [
        {"explainer": name, "base": name.removeprefix("selective_"),
         "selective": name.startswith("selective_"), "target": 0.5, "forward_passes": fp,
         "backward_passes": 1.0 if "gradcam" in name else 0.0, "seconds": 0.01,
         "entropy": 1.5, "deletion_auc": deletion, "insertion_auc": insertion,
         "metric_forward_passes": 58.0, "pointing": 0.5, "topshare_iou": topk,
         "topshare_dice": 2 * topk / (1 + topk), "selectivity_kept_fraction": kept, "n_clips": 2}
        for name, (fp, deletion, insertion, topk, kept) in EXPLAIN_ROWS.items()
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    with write_shard(folder / "maps.h5", {"checkpoint": "ckpt.pt"}) as fh:
        for label, vid in enumerate(EXPLAIN_VIDEOS):
            group = create_video_group(fh, vid)
            set_attrs(group, {"label": label, "target": label, "frame_indices": EXPLAIN_FRAMES})
            for name, volume in explain_maps(vid).items():
                write_frames_dataset(group, name, volume, {"explainer": name})


def markdown_table(text: str, caption: str) -> pd.DataFrame:
    """The Markdown pipe table following ``**caption**``."""
    block = text.split(f"**{caption}**", 1)[1].strip().split("\n\n", 1)[0]
    rows = [line for i, line in enumerate(block.splitlines()) if i != 1]  # drop the |---| rule
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in rows]
    return pd.DataFrame(cells[1:], columns=cells[0])


class TableParser(HTMLParser):
    """Cells of every <table> in a page (stdlib only: pandas.read_html needs lxml)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def html_tables(text: str) -> list[pd.DataFrame]:
    parser = TableParser()
    parser.feed(text)
    return [pd.DataFrame(rows[1:], columns=rows[0]) for rows in parser.tables]


def test_report_tables_hold_the_fixture_numbers(results: Path):
    out = results / "report"
    report = build_report(results, out)
    for section in report.sections:  # no table repeats a column
        for caption, table in section.tables:
            assert table.columns.is_unique, (caption, list(table.columns))
    accuracy = pd.read_csv(out / "tables" / "accuracy.csv").set_index("method")
    assert sorted(accuracy.index) == ["rrr_ogl", "vanilla"]  # sweeps are not rows of Table 5.1
    for (method, t), (top1, *_) in MAIN_RUNS.items():
        assert accuracy.loc[method, f"T={t}"] == pytest.approx(top1)

    cost = pd.read_csv(out / "tables" / "training_cost.csv")
    for (method, t), (_, _, hours, _) in MAIN_RUNS.items():
        row = cost[(cost["method"] == method) & (cost["T"] == t)].iloc[0]
        assert row["hours_per_epoch"] == pytest.approx(hours)
        assert row["ratio_to_vanilla"] == pytest.approx(hours / MAIN_RUNS[("vanilla", t)][2])

    alpha = pd.read_csv(out / "tables" / "alpha_sweep.csv")
    assert alpha["alpha"].tolist() == sorted(ALPHA_RUNS)
    assert alpha["top1"].tolist() == pytest.approx([ALPHA_RUNS[a][0] for a in sorted(ALPHA_RUNS)])
    assert alpha["fast_iou"].tolist() == pytest.approx(
        [ALPHA_RUNS[a][1] for a in sorted(ALPHA_RUNS)]
    )
    rrr = pd.read_csv(out / "tables" / "rrr_sweep.csv").sort_values("param_lambda")
    assert rrr["accuracy_pct"].tolist() == pytest.approx(
        [100 * RRR_RUNS[k] for k in sorted(RRR_RUNS)]
    )

    maps = pd.read_csv(out / "tables" / "map_overlap.csv")
    row = maps[(maps["run"] == "rrr_ogl") & (maps["T"] == 16)].iloc[0]
    assert row["fast_iou"] == pytest.approx(0.09) and row["slow_iou"] == pytest.approx(0.045)
    cue = pd.read_csv(out / "tables" / "cue_reliance.csv")
    assert cue.set_index(["method", "T"]).loc[("vanilla", 8), "acc_cue_disagrees"] == pytest.approx(
        0.4732 - 0.1
    )

    coverage = pd.read_csv(out / "tables" / "mask_coverage.csv").set_index("split")
    assert coverage.loc["test", "coverage"] == pytest.approx(2 * 16 / (4 * 64))
    assert coverage.loc["test", "empty_share"] == pytest.approx(0.5)
    quality = pd.read_csv(out / "tables" / "mask_quality.csv")
    assert quality.set_index("vid_name").loc["overall", "iou"] == pytest.approx(0.6)
    failures = pd.read_csv(out / "tables" / "failures.csv")
    assert len(failures) == 3 and set(failures["stage"]) == {"flow", "select"}
    assert "VideoError: no stream" in failures["reason"].tolist()
    pipeline_failures = pd.read_csv(results / "failures.csv")  # the pipeline-wide list
    assert pipeline_failures[["stage", "video", "reason"]].equals(
        failures[["stage", "video", "reason"]]
    )

    assert {"accuracy_vs_t", "accuracy_vs_gflops", "alpha_sweep"} <= set(report.figures_written)
    assert any(name.startswith("cam_rrr_ogl") for name in report.figures_written)
    assert any(name.startswith("gallery_v0") for name in report.figures_written)
    assert "explain_rrr_ogl_T16" in report.figures_written
    for path in report.figures_written.values():
        assert path.exists() and path.stat().st_size > 1000


def test_markdown_and_html_show_the_accuracy_table(results: Path):
    out = results / "report"
    build_report(results, out)
    text = (out / "report.md").read_text()
    # 3 classes in every run's metrics.json: the caption marks chance.
    caption = "Table 5.1: top-1 accuracy, methods by T; chance 0.33"
    table = markdown_table(text, caption).set_index("method")
    for (method, t), (top1, *_) in MAIN_RUNS.items():
        assert float(table.loc[method, f"T={t}"]) == pytest.approx(top1, abs=5e-5)
    first = html_tables((out / "index.html").read_text())[0].set_index("method")
    assert float(first.loc["rrr_ogl", "T=16"]) == pytest.approx(0.694)
    for image in ["figures/accuracy_vs_t.png", "figures/accuracy_vs_gflops.png"]:
        assert f"]({image})" in text and (out / image).exists()
    # Every section between the summary (this fixture has no predictions.csv) and the cue
    # section has its data.
    assert "Missing:" not in text.split("Accuracy by method and T")[2].split("Reliance")[0]


def test_report_from_nothing_says_what_is_missing(tmp_path: Path):
    out = tmp_path / "report"
    report = build_report(tmp_path / "results", out)
    text = (out / "report.md").read_text()
    assert "Missing: no evaluation run" in text
    assert "Missing: no sweep ran" in text
    assert "Missing: results/masks/quality.csv" in text
    assert "Missing: no explain output" in text
    assert pd.read_csv(out / "tables" / "explain_summary.csv").empty
    assert "No failure recorded" in text
    assert report.figures_written == {}
    assert (out / "index.html").exists() and (out / "tables" / "accuracy.csv").exists()


def test_explain_table_holds_the_summary_numbers(results: Path):
    out = results / "report"
    build_report(results, out)
    summary = pd.read_csv(out / "tables" / "explain_summary.csv")
    assert summary["explainer"].tolist() == list(EXPLAIN_ROWS)  # the stage's row order
    assert set(summary["run"]) == {"rrr_ogl"} and set(summary["T"]) == {16}
    assert "target" not in summary  # a mean class id is no property of an explainer
    for _, row in summary.iterrows():
        fp, deletion, insertion, topk, kept = EXPLAIN_ROWS[row["explainer"]]
        assert row["forward_passes"] == fp and row["deletion_auc"] == pytest.approx(deletion)
        assert row["insertion_auc"] == pytest.approx(insertion)
        assert row["topshare_iou"] == pytest.approx(topk)
        assert row["topshare_dice"] == pytest.approx(2 * topk / (1 + topk))
        assert (pd.isna(row["selectivity_kept_fraction"]) and kept is None) or row[
            "selectivity_kept_fraction"
        ] == pytest.approx(kept)

    text = (out / "report.md").read_text()
    section = text.split(". Post-hoc explanations (papers 002-004)", 1)[1].split("\n## ", 1)[0]
    table = markdown_table(section, "rrr_ogl T=16: explainer by metric (means over clips)")
    table = table.set_index("explainer")
    assert list(table.index) == list(EXPLAIN_ROWS)
    for name, (_, deletion, insertion, topk, kept) in EXPLAIN_ROWS.items():
        assert float(table.loc[name, "deletion_auc"]) == pytest.approx(deletion, abs=5e-5)
        assert float(table.loc[name, "insertion_auc"]) == pytest.approx(insertion, abs=5e-5)
        assert float(table.loc[name, "topshare_iou"]) == pytest.approx(topk, abs=5e-5)
        assert table.loc[name, "selectivity_kept_fraction"] == (
            "-" if kept is None else f"{kept:.4f}"
        )
    assert "Missing:" not in section
    assert "](figures/explain_rrr_ogl_T16.png)" in section
    assert "outline: the diver mask of the same clip from eval/rrr_ogl/T16/cams.h5" in section
    assert (out / "figures" / "explain_rrr_ogl_T16.png").stat().st_size > 1000


def test_explain_section_says_which_run_explained_nothing(results: Path):
    folder = results / "explain" / "vanilla" / "T8"
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text("\n")  # what the stage writes when every clip failed
    out = results / "report"
    report = build_report(results, out)
    text = (out / "report.md").read_text()
    assert "Missing: explain/vanilla/T8/summary.csv has no rows" in text
    # With two runs, each compared metric gets a table: rows explainer, a column per run.
    compare = pd.read_csv(out / "tables" / "explain_topshare_iou.csv").set_index("explainer")
    assert list(compare.columns) == ["rrr_ogl T=16"]  # the empty run adds no column
    assert compare["rrr_ogl T=16"].tolist() == pytest.approx([r[3] for r in EXPLAIN_ROWS.values()])
    assert "explain_vanilla_T8" not in report.figures_written


def test_explain_gallery_reads_the_first_clip_and_the_eval_mask(results: Path):
    folder = results / "explain" / "rrr_ogl" / "T16"
    clip = galleries.first_explained_clip(folder / "maps.h5")
    assert clip.vid_name == EXPLAIN_VIDEOS[0] and clip.frame_indices == EXPLAIN_FRAMES
    assert (clip.label, clip.target) == (0, 0)
    for name, volume in explain_maps(clip.vid_name).items():
        np.testing.assert_array_equal(clip.maps[name], volume.astype(np.float32))
    cams = results / "eval" / "rrr_ogl" / "T16" / "cams.h5"
    mask = galleries.eval_clip_mask(cams, clip.vid_name, clip.shape)
    expected = np.zeros((4, 8, 8), bool)
    expected[:, 2:6, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    assert galleries.eval_clip_mask(cams, clip.vid_name, (4, 16, 16)) is None  # other geometry
    assert galleries.eval_clip_mask(cams, "clip_b", clip.shape) is None  # not in cams.h5
    # Scalings: min-max over the clip, and signed maps by their largest magnitude.
    volume = clip.maps["occlusion"]
    scaled = galleries.minmax_clip(volume)
    assert scaled.min() == 0 and scaled.max() == 1
    np.testing.assert_allclose(scaled, (volume - volume.min()) / (volume.max() - volume.min()))
    np.testing.assert_allclose(galleries.signed_clip(volume), volume / np.abs(volume).max())
    assert galleries.map_order(sorted(clip.maps)) == list(EXPLAIN_ROWS)


def test_mask_gallery_draws_flow_with_the_shared_visualiser(results: Path, monkeypatch):
    drawn: list[np.ndarray] = []

    def recording(flow: np.ndarray) -> np.ndarray:
        drawn.append(flow)
        return flow_to_color(flow)

    monkeypatch.setattr(galleries, "flow_to_color", recording)
    report = build_report(results, results / "report", {"gallery_renderer": "report"})
    assert "gallery_v0" in report.figures_written
    # 4 frames of 4 -> gaps 0..3, the last clamped to the shard's last gap (3 gaps).
    expected = fixture_flow()[[0, 1, 2, 2]]
    assert len(drawn) == 4
    for got, want in zip(drawn, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not hasattr(galleries, "flow_to_rgb")  # one flow visualiser in the project


def test_candidate_colours_and_relative_video_paths(tmp_path: Path):
    labels = np.array([[0, 1, 2], [10, 11, 0]])
    rgb = galleries.label_colors(labels)
    tab10 = np.array(galleries.plt.get_cmap("tab10").colors)
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])  # no candidate: black
    np.testing.assert_allclose(rgb[0, 1], tab10[0])  # id 1 = best candidate
    np.testing.assert_allclose(rgb[1, 0], tab10[9])
    np.testing.assert_allclose(rgb[1, 1], tab10[0])  # ids past 10 wrap
    video = tmp_path / "work" / "results" / "synthdive" / "rgb" / "v.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"")
    results = tmp_path / "work" / "results"
    assert galleries.video_path(results, "results/synthdive/rgb/v.mp4") == video
    assert galleries.video_path(results, "elsewhere/v.mp4") == Path("elsewhere/v.mp4")


def test_failures_table_tells_warnings_from_failures(tmp_path: Path) -> None:
    """A truncated video kept with a warning and one left out are both listed, each with its
    severity, and counted apart; a log from before the severity column reads as errors."""
    from flowguide.report import collect, tables
    from flowguide.utils.failures import FailureLog

    log = FailureLog("manifest")
    log.record("cut", "VideoError: 10 of 30 (33%) lost")
    log.warn("short", "2 of 22 (9%) lost; kept")
    log.warn("short2", "2 of 21 (10%) lost; kept")
    log.write(tmp_path / "failures" / "manifest.csv")
    old = tmp_path / "failures" / "flow" / "train0000.csv"
    old.parent.mkdir(parents=True)
    old.write_text("stage,video,reason\nflow,bad,VideoError: no stream\n")
    failures = collect.load_failures(tmp_path)
    by_video = failures.set_index("video")["severity"].to_dict()
    assert by_video == {"cut": "error", "short": "warning", "short2": "warning", "bad": "error"}
    summary = tables.failures_summary(failures).set_index("stage")
    assert summary.loc["manifest", ["failures", "warnings", "videos"]].tolist() == [1, 2, 3]
    assert summary.loc["flow", ["failures", "warnings", "videos"]].tolist() == [1, 0, 1]
