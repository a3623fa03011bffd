"""Evaluation metrics against hand-computed values, and the evaluation loop's output files."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from flowguide.evaluate.evaluation import evaluate, metrics_document, write_outputs
from flowguide.evaluate.metrics import (
    classification_metrics,
    count_gflops,
    count_parameters,
    cue_reliance,
    map_mask_overlap,
    normalise_map,
    normalised_entropy,
    overlap_scores,
    read_clips_per_epoch,
    training_cost,
)
from flowguide.evaluate.stage import evaluate_run, slowfast_cam_fn
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.utils.failures import FlowguideError
from flowguide.utils.h5 import read_mask_dataset, video_group, video_names
from flowguide.utils.runs import parse_run_name, run_name

# 6 clips, 3 classes: labels and the (one-hot-ish) predictions below.
LABELS = [0, 0, 1, 1, 2, 0]
PREDS = [0, 1, 1, 1, 0, 0]


def logits_for(preds: list[int], k: int = 3) -> torch.Tensor:
    logits = torch.full((len(preds), k), -1.0)
    logits[torch.arange(len(preds)), torch.tensor(preds)] = 2.0
    return logits


def test_classification_metrics_match_hand_counts():
    m = classification_metrics(logits_for(PREDS), torch.tensor(LABELS), 3)
    assert m.top1 == pytest.approx(4 / 6)
    # class 0: 2 of 3 right; class 1: 2 of 2; class 2: 0 of 1
    np.testing.assert_allclose(m.per_class, [2 / 3, 1.0, 0.0])
    np.testing.assert_array_equal(m.support, [3, 2, 1])
    np.testing.assert_array_equal(m.confusion, [[2, 1, 0], [0, 2, 0], [1, 0, 0]])


def test_per_class_accuracy_is_nan_for_a_class_without_clips():
    m = classification_metrics(logits_for([0, 1], k=3), torch.tensor([0, 0]), 3)
    assert m.per_class[0] == pytest.approx(0.5)
    assert math.isnan(m.per_class[1]) and math.isnan(m.per_class[2])


def test_overlap_scores_by_hand():
    pred = np.zeros((1, 2, 4), bool)
    mask = np.zeros((1, 2, 4), bool)
    pred[0, 0, :3] = True  # 3 pixels
    mask[0, 0, 1:] = True  # 3 pixels, 2 shared; union 4
    iou, dice = overlap_scores(pred, mask)
    assert iou == pytest.approx(2 / 4)
    assert dice == pytest.approx(2 * 2 / (3 + 3))
    assert all(
        math.isnan(v) for v in overlap_scores(np.zeros((2, 2), bool), np.zeros((2, 2), bool))
    )


def test_map_overlap_normalises_then_thresholds_at_one_half():
    # Values 10..18 over 2 frames: min-max gives 0, .125, ..., 1; >= 0.5 means raw >= 14.
    saliency = torch.arange(10.0, 18.0).reshape(2, 2, 2)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[1] = True  # raw values 14..17: exactly the attended set
    assert normalise_map(saliency).max() == 1.0 and normalise_map(saliency).min() == 0.0
    assert map_mask_overlap(saliency, mask) == pytest.approx((1.0, 1.0))
    # Threshold 0.75 keeps raw >= 15.25 -> 16, 17: IoU 2/4, Dice 2*2/(2+4)
    assert map_mask_overlap(saliency, mask, threshold=0.75) == pytest.approx((0.5, 4 / 6))


def test_map_overlap_resizes_a_coarse_map_to_the_mask():
    # A (1, 2, 2) map with one hot cell, upsampled to (2, 4, 4): the hot quadrant covers the
    # top-left 2x2 block of both frames (trilinear keeps the block above 0.5 there).
    saliency = torch.zeros(1, 2, 2)
    saliency[0, 0, 0] = 1.0
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True
    iou, dice = map_mask_overlap(saliency, mask)
    assert iou == pytest.approx(1.0) and dice == pytest.approx(1.0)


def test_normalised_entropy_uniform_and_peaked():
    assert normalised_entropy(torch.ones(2, 3, 3)) == pytest.approx(1.0)
    peaked = torch.zeros(2, 3, 3)
    peaked[0, 1, 1] = 5.0
    assert normalised_entropy(peaked) == pytest.approx(0.0)
    half = torch.zeros(4)
    half[:2] = 1.0  # two equal cells of four: log 2 / log 4
    assert normalised_entropy(half) == pytest.approx(0.5)


def test_gflops_of_one_conv3d_is_its_multiply_adds():
    conv = nn.Conv3d(3, 8, kernel_size=(3, 3, 3), padding=1)
    x = torch.zeros(1, 3, 4, 8, 8)
    macs = 8 * 3 * 27 * (4 * 8 * 8)  # C_out * C_in * k_t*k_h*k_w * output positions
    assert count_gflops(conv, (x,)) == pytest.approx(macs / 1e9)
    assert count_parameters(conv) == 8 * 3 * 27 + 8


def test_training_cost_from_a_tiny_log(tmp_path):
    log = tmp_path / "metrics.csv"
    pd.DataFrame(
        {"epoch": [0, 1, 2], "loss": [2.0, 1.5, 1.2], "seconds": [3600, 7200, 5400]}
    ).to_csv(log, index=False)
    (tmp_path / "timing.json").write_text(json.dumps({"train_clips": 100}))
    clips = read_clips_per_epoch(tmp_path / "timing.json")
    cost = training_cost(log, clips)
    assert cost.hours_per_epoch == pytest.approx(1.5)
    assert cost.seconds_per_clip == pytest.approx(5400 / 100)
    assert cost.epochs == 3
    assert math.isnan(training_cost(log).seconds_per_clip)
    # The training loop's own log: seconds and clips_per_second per epoch (100 and 50 clips).
    pd.DataFrame({"epoch": [0, 1], "seconds": [20.0, 10.0], "clips_per_second": [5.0, 5.0]}).to_csv(
        log, index=False
    )
    cost = training_cost(log)
    assert cost.hours_per_epoch == pytest.approx(15.0 / 3600)
    assert cost.seconds_per_clip == pytest.approx(30.0 / 150)
    pd.DataFrame({"epoch": [0]}).to_csv(log, index=False)
    with pytest.raises(FlowguideError, match="epoch-time column"):
        training_cost(log)


def test_cue_reliance_split():
    preds = pd.DataFrame(
        {"vid_name": list("abcdef"), "label": [0, 1, 2, 0, 1, 2], "pred": [0, 1, 1, 1, 0, 2]}
    )
    clips = pd.DataFrame(
        {
            "vid_name": list("abcdef"),
            "split": "test",
            "label": [0, 1, 2, 0, 1, 2],
            "cue_class": [0, 1, 1, 1, 2, 2],
            "cue_agrees": ["True", "True", "False", "False", "False", "True"],
        }
    )
    r = cue_reliance(preds, clips)
    # agree: a, b, f all right; disagree: c (1 vs 2), d (1 vs 0), e (0 vs 1) all wrong
    assert (r["n_cue_agrees"], r["n_cue_disagrees"]) == (3, 3)
    assert r["acc_cue_agrees"] == pytest.approx(1.0)
    assert r["acc_cue_disagrees"] == pytest.approx(0.0)
    assert r["gap"] == pytest.approx(1.0)
    # disagreeing clips predicted as their cue class: c (1 == 1), d (1 == 1); e predicts 0, cue 2
    assert r["follows_cue"] == pytest.approx(2 / 3)


def test_run_names_round_trip_and_stay_path_safe():
    name = run_name("rrr_gradcam", {"percentile": 20, "lambda": 0.01})
    assert name == "rrr_gradcam-lambda0.01-percentile20"
    assert parse_run_name(name) == ("rrr_gradcam", {"lambda": 0.01, "percentile": 20.0})
    assert run_name("ogl_dice", {"alpha": 1e-5}) == "ogl_dice-alpha0.00001"
    with pytest.raises(ValueError):
        run_name("ogl-dice")


def test_evaluate_loop_scores_and_writes_outputs(tmp_path):
    names = [f"v{i}" for i in range(6)]
    table = dict(zip(names, logits_for(PREDS), strict=True))
    # Clips carry their index in pixel 0 so that model_fn and cam_fn can look clips up.
    clips = torch.zeros(6, 3, 4, 8, 8)
    clips[:, 0, 0, 0, 0] = torch.arange(6, dtype=torch.float32)
    masks = torch.zeros(6, 4, 8, 8, dtype=torch.bool)
    masks[:, :, 2:6, 2:6] = True  # 16 of 64 pixels per frame

    def model_fn(x):
        return torch.stack([table[names[int(i)]] for i in x[:, 0, 0, 0, 0]])

    def cam_fn(x, labels):
        # fast map == mask (IoU 1); slow map (1 frame of 4) covers the left half (IoU 16/(32+16))
        n = x.shape[0]
        fast = masks[:n].float()
        slow = torch.zeros(n, 1, 8, 8)
        slow[:, :, :, :4] = 1.0
        return slow, fast

    batches = [
        (clips[i : i + 4], torch.tensor(LABELS[i : i + 4]), names[i : i + 4], masks[i : i + 4])
        for i in (0, 4)
    ]
    result = evaluate(model_fn, batches, 3, cam_fn=cam_fn, n_saved_maps=2)
    assert result.classification.top1 == pytest.approx(4 / 6)
    fast = result.overlap[result.overlap["map"] == "fast"]
    slow = result.overlap[result.overlap["map"] == "slow"]
    assert len(fast) == 6 and np.allclose(fast["iou"], 1.0) and np.allclose(fast["dice"], 1.0)
    # slow attended: columns 0-3, all rows = 32 px/frame; mask 16 px; shared rows 2-5 x cols 2-3 = 8
    assert np.allclose(slow["iou"], 8 / (32 + 16 - 8))
    assert np.allclose(slow["dice"], 2 * 8 / (32 + 16))

    doc = metrics_document(
        result,
        {
            "method": "ogl_dice-alpha0.25",
            "base_method": "ogl_dice",
            "T": 4,
            "params": {"alpha": 0.25},
        },
        {"gflops": 1.5},
    )
    write_outputs(tmp_path, result, doc)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(4 / 6) and metrics["gflops"] == 1.5
    assert metrics["params"] == {"alpha": 0.25} and metrics["base_method"] == "ogl_dice"
    assert [c["accuracy"] for c in metrics["per_class"]] == pytest.approx([2 / 3, 1.0, 0.0])
    assert metrics["maps"]["slow"]["iou"] == pytest.approx(8 / 40)
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert predictions["pred"].tolist() == PREDS and predictions["label"].tolist() == LABELS
    np.testing.assert_allclose(
        predictions[["prob_0", "prob_1", "prob_2"]].sum(axis=1), 1.0, rtol=1e-6
    )
    confusion = pd.read_csv(tmp_path / "confusion.csv").set_index("label")
    np.testing.assert_array_equal(confusion.to_numpy(), [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert len(pd.read_csv(tmp_path / "cam_overlap.csv")) == 12
    with h5py.File(tmp_path / "cams.h5") as fh:
        assert video_names(fh) == ["v0", "v1"]
        v0 = video_group(fh, "v0")
        np.testing.assert_array_equal(read_mask_dataset(v0["mask"]), masks[0].numpy())
        np.testing.assert_allclose(v0["fast"][()], masks[0].numpy().astype(np.float16))


def test_evaluate_run_with_a_tiny_slowfast(tmp_path):
    torch.manual_seed(0)
    model = build_slowfast(SlowFastSpec(num_classes=3, depth=18, stem_width=16)).eval()
    clips = torch.randn(4, 3, 8, 32, 32)
    labels = torch.tensor([0, 1, 2, 0])
    masks = torch.zeros(4, 8, 32, 32, dtype=torch.bool)
    masks[:, :, 8:24, 12:20] = True
    names = ["a", "b", "c", "d"]
    batches = [
        (clips[:2], labels[:2], names[:2], masks[:2]),
        (clips[2:], labels[2:], names[2:], masks[2:]),
    ]
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    pd.DataFrame({"epoch": [0, 1], "seconds": [36.0, 72.0], "clips_per_second": [2.0, 1.0]}).to_csv(
        train_dir / "metrics.csv", index=False
    )
    synth = tmp_path / "clips.csv"
    pd.DataFrame({"vid_name": names, "cue_class": [0, 0, 0, 0],
                  "cue_agrees": [True, False, False, True]}).to_csv(synth, index=False)  # fmt: skip

    def model_fn(x):
        return forward_clip(model, x, 4)

    run = {"method": "vanilla", "base_method": "vanilla", "T": 8, "params": {}}
    doc = evaluate_run(tmp_path / "eval", run, model_fn, batches, 3,
                       cam_fn=slowfast_cam_fn(model, 4), flops_model=model, alpha=4,
                       train_dir=train_dir, synth_clips=synth)  # fmt: skip
    with torch.no_grad():
        preds = forward_clip(model, clips, 4).argmax(1)
    assert doc["top1"] == pytest.approx(float((preds == labels).float().mean()))
    assert doc["gflops"] > 0 and doc["params_count"] == count_parameters(model)
    assert doc["training_cost"]["hours_per_epoch"] == pytest.approx(54.0 / 3600)
    assert doc["training_cost"]["seconds_per_clip"] == pytest.approx(108.0 / 144)
    agree = (preds == labels).numpy()[[0, 3]].mean()
    assert doc["cue"]["acc_cue_agrees"] == pytest.approx(agree)
    overlap = pd.read_csv(tmp_path / "eval" / "cam_overlap.csv")
    assert sorted(overlap["map"].unique()) == ["fast", "slow"] and len(overlap) == 8
    assert overlap["iou"].between(0, 1).all() and (overlap["mask_coverage"] == 0.125).all()
