"""Training loop: class weights, schedule, gradient accumulation, resume, NaN stop, overfitting,
Kinetics init, the method registry and the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_train_data import make_dataset

from flowguide.modeling.slowfast import HEAD_PREFIX, SlowFastSpec, build_slowfast
from flowguide.train.checkpoint import load_checkpoint
from flowguide.train.errors import TrainingError
from flowguide.train.loop import _init_model, train
from flowguide.train.methods import (
    METHODS,
    Method,
    MethodError,
    TrainContext,
    create_method,
    register_method,
)
from flowguide.train.options import train_options
from flowguide.train.schedule import LRSchedule, group_sizes
from flowguide.train.step import accumulate_batch, class_weights, weighted_ce
from flowguide.utils.checkpoints import MissingWeightsError
from flowguide.utils.failures import FlowguideError

TINY = {
    "epochs": 2,
    "batch_size": 4,
    "loader_batch_size": 2,
    "num_workers": 0,
    "warmup": {"start_lr": 0.01, "batches": 2},
    "lr": 0.05,
    "tensorboard": False,
    "model": {"depth": 18, "stem_width": 16, "kinetics": False},
    "transform": {"short_side_min": 32, "short_side_max": 40, "crop": 32, "eval_short_side": 32,
                  "eval_crop": 32},
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    return make_dataset(tmp_path_factory.mktemp("loopset"))


def test_class_weights_follow_the_formula():
    labels = [0, 0, 0, 1, 2, 2, 0, 1]
    got = class_weights(labels, num_classes=4)
    n = len(labels)
    expected = [1 - sum(1 for y in labels if y == i) / n for i in range(4)]
    assert torch.allclose(got, torch.tensor(expected))
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    manual = sum(-got[y[i]] * torch.log_softmax(logits[i], 0)[y[i]] for i in range(5)) / 5
    assert torch.allclose(weighted_ce(logits, y, got), manual)


def test_default_schedule_is_the_thesis_warmup_then_constant():
    assert train_options({})["lr_schedule"] == "constant"
    s = LRSchedule(base_lr=0.1, start_lr=0.01, warmup_steps=4, total_steps=14)
    assert [round(0.1 * s(i), 6) for i in (0, 2, 4, 9, 14, 40)] == [0.01, 0.055, 0.1, 0.1, 0.1, 0.1]


def test_warmup_then_cosine_and_group_sizes():
    s = LRSchedule(base_lr=0.1, start_lr=0.01, warmup_steps=4, total_steps=14, kind="cosine")
    assert [round(0.1 * s(i), 6) for i in range(5)] == [0.01, 0.0325, 0.055, 0.0775, 0.1]
    assert math.isclose(0.1 * s(9), 0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert 0.1 * s(14) == pytest.approx(0.0, abs=1e-12)
    assert group_sizes(10, 3, 2) == [6, 4]  # loader batches 3,3,3,1 -> groups of 2
    assert group_sizes(8, 4, 1) == [4, 4]


def test_accumulated_gradients_equal_one_full_batch():
    """k loader batches, each scaled by b / |group|, give the full batch's gradient. BatchNorm in
    train mode normalises with per-batch statistics (and dropout draws masks), which couples the
    samples of a batch; in eval mode every sample's loss is independent of the others, so the
    equality is exact up to float rounding. That is the property under test."""
    torch.manual_seed(0)
    model = build_slowfast(SlowFastSpec(num_classes=3, depth=18, stem_width=16)).eval()
    method = create_method("vanilla")
    ctx = TrainContext(alpha=4, num_classes=3, class_weights=torch.tensor([0.5, 0.7, 0.8]),
                       device=torch.device("cpu"))  # fmt: skip
    clips, labels = torch.randn(6, 3, 8, 32, 32), torch.tensor([0, 1, 2, 2, 1, 0])

    def grads(batches):
        model.zero_grad()
        for lo, hi in batches:
            batch = {"clip": clips[lo:hi], "label": labels[lo:hi], "index": torch.arange(lo, hi)}
            accumulate_batch(model, method, batch, ctx, group_size=6)
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    full, accumulated = grads([(0, 6)]), grads([(0, 2), (2, 4), (4, 6)])
    assert len(full) == len(accumulated) > 10
    for a, b in zip(full, accumulated, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


ALL_METHODS = ["vanilla", "kinetics", "randaug", "ogl_transform", "ogl_dice", "rrr_ogl",
               "rrr_gradcam", "abn"]  # fmt: skip


@pytest.mark.parametrize("name", ALL_METHODS)
def test_accumulation_equals_the_full_batch_for_every_method_in_train_mode(name):
    """Every method's terms, in train mode (the methods' training paths, dropout 0), with
    non-uniform class weights, masks with empty frames and one sample without any mask: three
    loader batches of 2 give the gradient of one batch of 6. BatchNorm layers alone use their
    running statistics: with batch statistics a batch of 2 and a batch of 6 normalise
    differently by design, whatever the loss."""
    torch.manual_seed(0)
    spec = SlowFastSpec(num_classes=3, depth=18, stem_width=16, dropout=0.0)
    method = create_method(name, {"rrr_gradcam": {"percentile": 50.0, "lambda": 1.0},
                                  "rrr_ogl": {"lambda": 1.0}})  # fmt: skip
    method.prepare(spec, 6)
    model, _ = _init_model(spec, method, train_options({"model": {"kinetics": False}}))
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    if name == "rrr_gradcam":  # samples 1, 3 and 5 are the worst half
        method.tracker.update(torch.arange(6), torch.tensor([0.1, 2.0, 0.2, 3.0, 0.3, 4.0]))
    ctx = TrainContext(alpha=4, num_classes=3, class_weights=torch.tensor([0.2, 0.7, 0.9]),
                       device=torch.device("cpu"))  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    clips, labels = torch.randn(6, 3, 8, 32, 32, generator=gen), torch.tensor([0, 1, 2, 2, 1, 0])
    mask = torch.rand(6, 8, 32, 32, generator=gen) > 0.5
    mask[1, 2:5] = False  # empty frames
    mask[4] = False  # a clip without any mask

    def grads(batches):
        model.zero_grad()
        for lo, hi in batches:
            batch = {"clip": clips[lo:hi], "label": labels[lo:hi], "index": torch.arange(lo, hi),
                     "mask": mask[lo:hi]}  # fmt: skip
            accumulate_batch(model, method, batch, ctx, group_size=6)
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full, accumulated = grads([(0, 6)]), grads([(0, 2), (2, 4), (4, 6)])
    assert full.keys() == accumulated.keys() and len(full) > 10
    for key in full:
        assert torch.allclose(full[key], accumulated[key], rtol=1e-4, atol=1e-7), key


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resumed_run_equals_an_uninterrupted_one(dataset, tmp_path):
    manifest, masks = dataset
    straight = train(manifest, masks, "ogl_transform", 4, tmp_path / "a", TINY, "cpu")
    assert straight.epochs_run == 2 and (tmp_path / "a" / "last.pt").exists()
    first = train(
        manifest, masks, "ogl_transform", 4, tmp_path / "b", TINY, "cpu", stop_after_epochs=1
    )  # fmt: skip  (as if killed after epoch 1)
    assert (tmp_path / "b" / "last.pt").exists() and not (tmp_path / "b" / "checkpoint.pt").exists()
    torch.manual_seed(1234)  # a fresh process would have other RNG states: they must be restored
    resumed = train(manifest, masks, "ogl_transform", 4, tmp_path / "b", TINY, "cpu")
    assert first.epochs_run == 1 and resumed.resumed_from == 1 and resumed.epochs_run == 1
    a, b = _weights(straight.model), _weights(resumed.model)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoint.pt")  # weights_only=True inside
    assert ckpt["epoch"] == 2 and ckpt["method"] == "ogl_transform" and ckpt["T"] == 4
    for key, value in ckpt["model"].items():
        assert torch.allclose(value.float(), a[key].float(), atol=1e-6)
    metrics = pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2]
    # A job that finished but was marked failed (SLURM TIMEOUT just past its limit): Snakemake
    # deletes the declared outputs; last.pt is kept, so the retry trains no epoch again.
    for name in ("checkpoint.pt", "metrics.csv", "timing.json"):
        (tmp_path / "b" / name).unlink()
    redone = train(manifest, masks, "ogl_transform", 4, tmp_path / "b", TINY, "cpu")
    assert redone.resumed_from == 2 and redone.epochs_run == 0
    again = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for key, value in again["model"].items():
        assert torch.equal(value, ckpt["model"][key]), key
    assert pd.read_csv(tmp_path / "b" / "metrics.csv")["epoch"].tolist() == [1, 2]
    assert {"loss", "loss_ce", "accuracy", "lr", "seconds", "clips_per_second"} <= set(metrics)
    assert metrics["loss"].tolist() == pytest.approx(
        pd.read_csv(tmp_path / "a" / "metrics.csv")["loss"].tolist(), rel=1e-5
    )
    timing = json.loads((tmp_path / "b" / "timing.json").read_text())
    assert timing["seconds_per_epoch"] == pytest.approx(metrics["seconds"].tolist())
    # lr logged at the last optimiser step of each epoch: 6 clips, B_l 2, k 2 -> steps 0,1 | 2,3
    options = train_options(TINY)
    sched = LRSchedule(0.05, 0.01, 1, 4)  # the default: constant after warm-up
    assert metrics["lr"].tolist() == pytest.approx([0.05 * sched(1), 0.05 * sched(3)])
    assert options["lr"] == 0.05


def test_changed_options_do_not_resume_a_stale_state(dataset, tmp_path):
    manifest, masks = dataset
    train(manifest, masks, "vanilla", 4, tmp_path, TINY, "cpu", stop_after_epochs=1)
    other = {**TINY, "seed": 5}
    result = train(manifest, masks, "vanilla", 4, tmp_path, other, "cpu", stop_after_epochs=1)
    assert result.resumed_from == 0 and result.epochs_run == 1


@register_method
class _NanAtEpoch2(Method):
    name = "_test_nan"

    def loss_terms(self, model, batch, logits, ctx):
        value = float("nan") if ctx.epoch == 1 else 0.0
        return {"exploding": logits.sum() * 0 + value}


def test_non_finite_loss_stops_naming_the_term_and_keeps_the_last_checkpoint(dataset, tmp_path):
    manifest, masks = dataset
    with pytest.raises(TrainingError, match="'exploding'"):
        train(manifest, masks, "_test_nan", 4, tmp_path, TINY, "cpu")
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and not (tmp_path / "checkpoint.pt").exists()


def test_tiny_model_overfits_a_handful_of_clips(dataset, tmp_path):
    manifest, masks = dataset
    options = {**TINY, "epochs": 10, "batch_size": 6, "loader_batch_size": 6, "lr": 0.05,
               "lr_schedule": "constant", "warmup": {"batches": 0},
               "model": {**TINY["model"], "dropout": 0.0},
               "transform": {**TINY["transform"], "short_side_max": 32,
                             "hflip_p": 0.0}}  # fmt: skip
    result = train(manifest, masks, "vanilla", 4, tmp_path, options, "cpu")
    losses = [m["loss"] for m in result.metrics]
    assert result.metrics[-1]["accuracy"] == 1.0
    assert min(losses[-3:]) < 0.2 * losses[0]


def test_kinetics_init_loads_all_but_the_head(tmp_path):
    spec = SlowFastSpec(num_classes=5, depth=18, stem_width=16)
    torch.manual_seed(3)
    donor = build_slowfast(spec).state_dict()
    path = tmp_path / "kinetics.pyth"
    torch.save({"model_state": donor}, path)
    options = train_options({"model": {"depth": 18, "stem_width": 16,
                                       "kinetics_checkpoint": str(path)}})  # fmt: skip
    model, init = _init_model(spec, create_method("kinetics"), options)
    assert init == "kinetics"
    for key, value in model.state_dict().items():
        if key.startswith(HEAD_PREFIX):  # a new head (its zero-initialised bias may coincide)
            assert key.endswith("bias") or not torch.equal(value, donor[key]), key
        else:
            assert torch.equal(value, donor[key]), key
    missing = train_options({"model": {"kinetics_checkpoint": str(tmp_path / "none.pyth")}})
    with pytest.raises(MissingWeightsError, match="none.pyth"):
        _init_model(spec, create_method("randaug"), missing)


def test_registry_errors_and_switches():
    with pytest.raises(MethodError, match="known: .*ogl_transform.*vanilla"):
        create_method("no_such_method")
    with pytest.raises(MethodError, match="unknown option"):
        create_method("ogl_transform", {"ogl_transform": {"q": 1}})
    assert create_method("ogl_transform", {"ogl_transform": {"p": 0.3}}).ogl_p == 0.3
    assert {"vanilla", "kinetics", "randaug", "ogl_transform"} <= set(METHODS)
    assert METHODS["randaug"].randaugment and METHODS["ogl_transform"].needs_masks
    assert METHODS["kinetics"].init == "kinetics" and METHODS["vanilla"].init == "random"


def test_cli_trains_and_writes_the_rule_outputs(dataset, tmp_path, capfd):
    from flowguide.cli import main

    manifest, masks = dataset
    out = tmp_path / "train" / "vanilla" / "T4"
    options = json.dumps({**TINY, "epochs": 2})
    argv = [
        "train",
        "--manifest",
        str(manifest),
        "--masks-dir",
        str(masks),
        "--method",
        "vanilla",
        "--T",
        "4",
        "--out-dir",
        str(out),
        "--options",
        options,
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "metrics.csv", "timing.json"}
    # One progress line per epoch on stderr (the train rule passes these to the terminal), with
    # the loss metrics.csv records for that epoch.
    progress = re.findall(
        r"^train vanilla T=4: epoch (\d+)/2 loss ([\d.]+) accuracy [\d.]+ \(\d+ s\)$",
        capfd.readouterr().err,
        flags=re.M,
    )
    metrics = pd.read_csv(out / "metrics.csv")
    assert [int(e) for e, _ in progress] == [1, 2] == metrics["epoch"].tolist()
    assert [float(x) for _, x in progress] == pytest.approx(metrics["loss"].tolist(), abs=1e-4)
    assert main([*argv[:6], "nope", *argv[7:]]) == 2  # unknown method: a clear error, exit 2


def test_every_method_trains_on_the_same_clips_by_default(dataset, tmp_path):
    """clip_set common (the default): a clip without a mask is left out for the baselines too;
    clip_set own keeps it for them. Counts against the manifest and the shard, read here."""
    import shutil

    import h5py

    manifest, masks = dataset
    own_masks = tmp_path / "masks"
    shutil.copytree(masks, own_masks)
    rows = pd.read_csv(manifest)
    train_rows = rows[rows["split"] == "train"]
    dropped = train_rows.iloc[:2]  # two, so that the loader batches of 2 stay whole
    for _, row in dropped.iterrows():
        with h5py.File(own_masks / f"{row['shard']}.h5", "a") as fh:
            del fh["videos"][row["vid_name"]]
    options = {**TINY, "epochs": 1}
    used = {}
    for name, clip_set in (("vanilla", "common"), ("ogl_transform", "common"),
                           ("vanilla", "own")):  # fmt: skip
        out = tmp_path / f"{name}-{clip_set}"
        train(manifest, own_masks, name, 4, out, {**options, "clip_set": clip_set}, "cpu")
        clips = json.loads((out / "timing.json").read_text())["clips"]
        listed = out / "excluded.csv"  # written when clips are picked by their masks
        excluded = pd.read_csv(listed)["vid_name"].tolist() if listed.exists() else []
        used[(name, clip_set)] = (clips["train"], clips["excluded"], excluded)
    n = len(train_rows)
    assert used[("vanilla", "common")] == used[("ogl_transform", "common")]
    assert used[("vanilla", "common")] == (n - 2, 2, dropped["vid_name"].tolist())
    assert used[("vanilla", "own")][:2] == (n, 0)
    with pytest.raises(TrainingError, match="clip_set"):
        train(manifest, None, "vanilla", 4, tmp_path / "none", options, "cpu")


def test_full_disk_names_the_checkpoint_and_the_cause(dataset, tmp_path, monkeypatch):
    """A short write (torch says only 'unexpected pos ...') names last.pt and the likely cause;
    the previous last.pt stays whole and no partial file is left."""
    import flowguide.train.checkpoint as checkpoint_module

    manifest, masks = dataset
    train(manifest, masks, "vanilla", 4, tmp_path, TINY, "cpu", stop_after_epochs=1)
    before = (tmp_path / "last.pt").read_bytes()

    def full_disk(obj, path):
        Path(path).write_bytes(b"PK\x03\x04 partial")  # what a short write leaves
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1493248 "
                           "vs 1493144")  # fmt: skip

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(checkpoint_module.CheckpointWriteError) as info:
        train(manifest, masks, "vanilla", 4, tmp_path, TINY, "cpu")
    message = str(info.value)
    assert str(tmp_path / "last.pt") in message and "disk" in message and "MiB free" in message
    assert "previous one is kept" in message and "unexpected pos" in message
    assert (tmp_path / "last.pt").read_bytes() == before
    assert not list(tmp_path.glob(".*.part")) and not list(tmp_path.glob("*.part"))


def test_corrupt_last_pt_says_which_file_to_remove_and_what_is_lost(dataset, tmp_path):
    manifest, masks = dataset
    train(manifest, masks, "vanilla", 4, tmp_path, TINY, "cpu", stop_after_epochs=1)
    state = tmp_path / "last.pt"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])  # truncated, as by a kill or a full disk
    with pytest.raises(FlowguideError) as info:
        train(manifest, masks, "vanilla", 4, tmp_path, TINY, "cpu")
    message = str(info.value)
    assert f"Remove {state}" in message and "from epoch 1" in message
    assert "1 epoch(s)" in message and "metrics.csv" in message
    state.unlink()  # what the message says to do: the run then trains from scratch
    result = train(manifest, masks, "vanilla", 4, tmp_path, TINY, "cpu")
    assert result.resumed_from == 0 and result.epochs_run == 2
