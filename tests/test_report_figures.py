"""Report figures: vanilla is always among the GradCAM figures (Figure 5.3), its maps are drawn
over the model's RGB input frames, and chance is marked in the accuracy tables and plots."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.axes
import numpy as np
import pandas as pd
import pytest

from flowguide.evaluate.evaluation import SavedMaps, write_saved_maps
from flowguide.report import figures, tables
from flowguide.report.build import ReportBuilder
from flowguide.report.section import Section

T, H, W = 4, 8, 8


def _cams(path: Path, method: str, t: int, rgb: np.ndarray) -> None:
    mask = np.zeros((T, H, W), bool)
    mask[:, 2:6, 2:6] = True
    cam = np.linspace(0, 1, T * H * W, dtype=np.float32).reshape(T, H, W)
    saved = SavedMaps("clip_a", 1, 1, {"slow": cam.astype(np.float16)}, mask, rgb)
    write_saved_maps(path / "cams.h5", [saved], 0.5, {"method": method, "T": t})


def test_vanilla_is_always_among_the_gradcam_figures_drawn_over_rgb(tmp_path, monkeypatch):
    rgb = np.random.default_rng(0).integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    rows = []
    # vanilla at the lowest T and last by name: a T-first order would leave it out.
    for method, t in [("ogl_transform", 16), ("rrr_ogl", 16), ("abn", 16), ("vanilla", 8)]:
        folder = tmp_path / "eval" / method / f"T{t}"
        folder.mkdir(parents=True)
        _cams(folder, method, t, rgb)
        rows.append({"run": method, "method": method, "T": t, "is_sweep": False,
                     "path": str(folder)})  # fmt: skip
    drawn: list[np.ndarray] = []
    original = matplotlib.axes.Axes.imshow

    def recording(self, image, *args, **kwargs):
        drawn.append(np.asarray(image))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", recording)
    builder = ReportBuilder(tmp_path, tmp_path / "report", {"cam_runs": 2})
    section = Section("maps")
    builder.cam_figures(pd.DataFrame(rows), section)
    captions = [caption for caption, _ in section.images]
    assert len(captions) == 2 and captions[0].startswith("Figure 5.3: vanilla T=8")
    # The first panel of the first figure (vanilla's slow map, frame 0): the RGB frame first,
    # the map over it.
    np.testing.assert_array_equal(drawn[0], rgb[0])
    assert drawn[1].shape == (H, W)


def test_chance_is_marked_in_accuracy_tables_and_plots(tmp_path, monkeypatch):
    runs = pd.DataFrame({"num_classes": [4, 4, None]})
    assert tables.chance_level(runs) == pytest.approx(0.25)
    assert tables.chance_caption(0.25) == "; chance 0.25"
    assert tables.chance_level(pd.DataFrame({"num_classes": [4, 48]})) is None  # mixed: no line
    assert tables.chance_caption(None) == ""
    lines: list[float] = []
    original = matplotlib.axes.Axes.axhline

    def recording(self, y=0, *args, **kwargs):
        lines.append(y)
        return original(self, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", recording)
    complexity = pd.DataFrame(
        {"method": ["vanilla", "vanilla"], "T": [8, 16], "top1": [0.5, 0.6], "gflops": [1.0, 2.0]}
    )
    assert figures.accuracy_vs_t(complexity, tmp_path / "a.png", 0.25) is not None
    assert figures.accuracy_vs_gflops(complexity, tmp_path / "b.png", 0.25) is not None
    assert lines == [0.25, 0.25]
    figures.accuracy_vs_t(complexity, tmp_path / "c.png")
    assert lines == [0.25, 0.25]  # no class count, no line


def test_report_captions_carry_chance(tmp_path):
    """Table 5.1 and the cue table say chance when the runs' metrics.json give the classes."""
    folder = tmp_path / "results" / "eval" / "vanilla" / "T8"
    folder.mkdir(parents=True)
    doc = {"method": "vanilla", "T": 8, "top1": 0.5, "num_classes": 4, "n_clips": 32,
           "cue": {"acc_cue_agrees": 1.0, "acc_cue_disagrees": 0.1, "gap": 0.9,
                   "follows_cue": 0.8, "n_cue_agrees": 8, "n_cue_disagrees": 24}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(doc))
    builder = ReportBuilder(tmp_path / "results", tmp_path / "report")
    report = builder.build()
    captions = [c for s in report.sections for c, _ in s.tables]
    assert "Table 5.1: top-1 accuracy, methods by T; chance 0.25" in captions
    assert "Accuracy by cue agreement; chance 0.25" in captions
