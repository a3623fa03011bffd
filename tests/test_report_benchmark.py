"""The report's lead: benchmark table (intervals, chance, counts), sentences, contents, layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowguide.report.build import build_report

K = 4
PER_CLASS = 8  # test clips per class: 2 agree, 6 disagree (the balanced design)


def _clips(seed: int = 0) -> pd.DataFrame:
    n = K * PER_CLASS
    label = np.arange(n) % K
    cue = (label + np.arange(n) // K) % K
    return pd.DataFrame(
        {
            "vid_name": [f"sd{seed}_test_{i:05d}" for i in range(n)],
            "split": "test",
            "label": label,
            "cue_class": cue,
            "cue_agrees": cue == label,
            "seed": seed,
        }
    )


def _write_run(results: Path, run: str, method: str, pred: np.ndarray, iou: np.ndarray, params):
    clips = _clips()
    folder = results / "eval" / run / "T8"
    folder.mkdir(parents=True)
    doc = {"method": run, "base_method": method, "T": 8, "params": params,
           "top1": float((pred == clips["label"]).mean()), "num_classes": K,
           "n_clips": len(clips)}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(doc))
    pd.DataFrame(
        {"vid_name": clips["vid_name"], "label": clips["label"], "pred": pred,
         "correct": pred == clips["label"]}
    ).to_csv(folder / "predictions.csv", index=False)  # fmt: skip
    rows = []
    for vid, value in zip(clips["vid_name"], iou, strict=True):
        rows += [{"vid_name": vid, "map": "slow", "iou": value},
                 {"vid_name": vid, "map": "fast", "iou": value / 2},
                 {"vid_name": vid, "map": "attention", "iou": 1.0}]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "cam_overlap.csv", index=False)


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    results = tmp_path / "results"
    (results / "synthdive").mkdir(parents=True)
    clips = _clips()
    clips.to_csv(results / "synthdive" / "clips.csv", index=False)
    rng = np.random.default_rng(0)
    label, cue = clips["label"].to_numpy(), clips["cue_class"].to_numpy()
    preds = {
        "vanilla": cue.copy(),  # reads the cue only
        "no_cue": np.where(np.arange(len(label)) % 8 == 7, (label + 1) % K, label),
        "ogl_transform": rng.integers(K, size=len(label)),
    }
    for run, pred in preds.items():
        _write_run(results, run, run, pred, rng.random(len(label)), {})
    # A second training seed of vanilla, pooled with the first.
    preds["vanilla-seed1"] = label.copy()
    _write_run(
        results, "vanilla-seed1", "vanilla", label.copy(), rng.random(len(label)), {"seed": 1}
    )
    return results, preds


def test_summary_leads_with_the_benchmark_table(results):
    results, preds = results
    out = results / "report"
    build_report(results, out, {"n_boot": 200})
    clips = _clips()
    label, cue = clips["label"].to_numpy(), clips["cue_class"].to_numpy()
    disagree = cue != label
    table = pd.read_csv(out / "tables" / "benchmark.csv").set_index("run")
    assert table.index.tolist()[:2] == ["no_cue", "vanilla"]  # controls first
    # Right-reason accuracy = accuracy on cue-disagreeing clips, computed here independently.
    for run in ("no_cue", "ogl_transform"):
        expected = (preds[run][disagree] == label[disagree]).mean()
        assert table.loc[run, "right_reason"] == pytest.approx(expected)
        assert table.loc[run, "right_reason_n"] == disagree.sum() == 24
        follows = (preds[run][disagree] == cue[disagree]).mean()
        assert table.loc[run, "follows_cue"] == pytest.approx(follows)
    # vanilla pools its two training seeds: seed 0 reads the cue (0 right), seed 1 the diver.
    assert table.loc["vanilla", "n_units"] == 2
    assert table.loc["vanilla", "right_reason"] == pytest.approx(0.5)
    assert (
        table.loc["vanilla", "right_reason_low"] < 0.5 < table.loc["vanilla", "right_reason_high"]
    )
    assert table.loc["vanilla", "top1_n"] == 64
    # GradCAM IoU: mean over clips of the mean of the slow and fast maps (not attention).
    cams = pd.read_csv(results / "eval" / "no_cue" / "T8" / "cam_overlap.csv")
    per_clip = cams[cams["map"] != "attention"].groupby("vid_name")["iou"].mean()
    assert table.loc["no_cue", "overlap"] == pytest.approx(per_clip.mean())

    counts = pd.read_csv(out / "tables" / "test_design.csv")
    assert counts["cue agrees"].tolist() == [2, 2, 2, 2, 8]
    assert counts["cue disagrees"].tolist() == [6, 6, 6, 6, 24]

    text = (out / "report.md").read_text()
    contents, body = text.split("## 1.", 1)
    assert "Contents:" in contents and "(#s1)" in contents
    assert body.lstrip().startswith("Summary")
    summary = body.split("## 2.")[0]
    assert "chance 0.25" in summary and "Chance: 0.25 (4 classes)" in summary
    assert "ogl_transform (T=8): right-reason accuracy" in summary
    assert "the ceiling" in summary
    assert "| 8 | 24" not in summary  # counts print as integers, no '8.0000'
    assert "8.0000" not in summary
    html = (out / "index.html").read_text()
    assert "<div class='scroll'>" in html and "<nav>" in html
    assert (out / "figures" / "benchmark.png").stat().st_size > 1000


def test_summary_says_what_is_missing_without_synthdive(tmp_path):
    out = tmp_path / "report"
    build_report(tmp_path / "results", out)
    text = (out / "report.md").read_text()
    assert "Missing: no SynthDive run to score" in text.split("## 2.")[0]
