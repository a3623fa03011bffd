"""The report builds from a fixture results tree and its tables hold the fixture's numbers."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowguide.evaluate.evaluation import SavedMaps, write_saved_maps
from flowguide.report.build import build_report
from flowguide.utils.failures import write_failures
from flowguide.utils.h5 import write_masks, write_shard
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
    for alpha, (top1, iou) in ALPHA_RUNS.items():
        doc = metrics_doc(f"ogl_dice-alpha{alpha}", "ogl_dice", 8, {"alpha": alpha}, top1, iou=iou)
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
        write_masks(fh.create_group("v0"), "mask", masks)
    video = res / "synthdive" / "rgb" / "v0.mp4"
    write_video(video, np.full((4, 16, 16, 3), 128, np.uint8), fps=25, qscale=4)
    pd.DataFrame([{"vid_name": "v0", "split": "test", "label": 0, "path": str(video),
                   "start_frame": 0, "end_frame": 3, "shard": "test0000"}]).to_csv(
        res / "manifest.csv", index=False)  # fmt: skip
    return res


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
    for path in report.figures_written.values():
        assert path.exists() and path.stat().st_size > 1000


def test_markdown_and_html_show_the_accuracy_table(results: Path):
    out = results / "report"
    build_report(results, out)
    text = (out / "report.md").read_text()
    table = markdown_table(text, "Table 5.1: top-1 accuracy, methods by T").set_index("method")
    for (method, t), (top1, *_) in MAIN_RUNS.items():
        assert float(table.loc[method, f"T={t}"]) == pytest.approx(top1, abs=5e-5)
    first = html_tables((out / "index.html").read_text())[0].set_index("method")
    assert float(first.loc["rrr_ogl", "T=16"]) == pytest.approx(0.694)
    for image in ["figures/accuracy_vs_t.png", "figures/accuracy_vs_gflops.png"]:
        assert f"]({image})" in text and (out / image).exists()
    assert "Missing:" not in text.split("## Reliance")[0]  # every section above has its data


def test_report_from_nothing_says_what_is_missing(tmp_path: Path):
    out = tmp_path / "report"
    report = build_report(tmp_path / "results", out)
    text = (out / "report.md").read_text()
    assert "Missing: no evaluation run" in text
    assert "Missing: no sweep ran" in text
    assert "Missing: results/masks/quality.csv" in text
    assert "No failure recorded" in text
    assert report.figures_written == {}
    assert (out / "index.html").exists() and (out / "tables" / "accuracy.csv").exists()
