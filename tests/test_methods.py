"""Guided training methods (ogl_dice, rrr_ogl, rrr_gradcam, abn): their loss terms equal the
loss library called directly on an independently recorded forward, each trains end to end
through ``train()``, rrr_gradcam's tracker survives a resume, and ``load_trained`` rebuilds
the trained model."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_train_data import make_dataset
from test_train_loop import TINY

from flowguide.config import ConfigError
from flowguide.modeling.abn import ABNLossWeights, abn_loss_terms, eq11_entropy_bits
from flowguide.modeling.slowfast import (
    FAST,
    HEAD_PREFIX,
    LAST_STAGE,
    SLOW,
    SlowFastSpec,
    build_slowfast,
    forward_clip,
    pack_pathways,
)
from flowguide.modeling.trained import load_trained
from flowguide.train.checkpoint import load_checkpoint
from flowguide.train.loop import _init_model, train
from flowguide.train.losses import ogl_dice_terms, rrr_gradcam_terms, rrr_ogl_terms
from flowguide.train.methods import METHODS, MethodError, TrainContext, create_method
from flowguide.train.options import train_options

GUIDED = ("ogl_dice", "rrr_ogl", "rrr_gradcam", "abn")
SPEC = SlowFastSpec(num_classes=2, depth=18, stem_width=16, dropout=0.0)
NO_DROPOUT = {**TINY, "model": {**TINY["model"], "dropout": 0.0}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("methodset"))


def _batch(requires_grad: bool = False) -> dict:
    gen = torch.Generator().manual_seed(0)
    clip = torch.randn(4, 3, 8, 32, 32, generator=gen)
    mask = torch.zeros(4, 8, 32, 32, dtype=torch.bool)
    for b in range(3):  # sample 3 has no mask at all (left out of the Dice mean)
        mask[b, :, 4 + 4 * b : 16 + 4 * b, 6:20] = True
    if requires_grad:
        clip.requires_grad_(True)
    return {"clip": clip, "label": torch.tensor([0, 1, 1, 0]), "index": torch.arange(4),
            "mask": mask}  # fmt: skip


def _ctx() -> TrainContext:
    return TrainContext(alpha=4, num_classes=2, class_weights=torch.tensor([0.4, 0.6]),
                        device=torch.device("cpu"))  # fmt: skip


def _setup(name: str, options: dict, num_train: int = 8):
    torch.manual_seed(0)
    method = create_method(name, {name: options})
    method.prepare(SPEC, num_train)
    return method, method.wrap_model(build_slowfast(SPEC)).train()


class _Hooks:
    """Our own record of the last residual stage's outputs, independent of PathwayRecorder."""

    def __init__(self, backbone):
        stages = backbone.blocks[LAST_STAGE].multipathway_blocks
        self.out = {}
        self.handles = [
            stages[i].register_forward_hook(lambda _m, _i, o, i=i: self.out.__setitem__(i, o))
            for i in (SLOW, FAST)
        ]

    def acts(self):
        return [self.out[SLOW], self.out[FAST]]


def _close(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-7), key


def test_ogl_dice_terms_and_weights_named_for_what_they_weigh():
    method, model = _setup("ogl_dice", {"dice_weight": 0.25})
    assert (method.dice_weight, method.ce_weight) == (0.25, 0.75)  # ce_weight null: 1 - dice
    both = create_method("ogl_dice", {"ogl_dice": {"dice_weight": 0.25, "ce_weight": 0.4}})
    assert (both.dice_weight, both.ce_weight) == (0.25, 0.4)
    # Section 5.2's alpha is the CE weight: alpha = 0 leaves only the Dice loss.
    fig52 = create_method("ogl_dice", {"ogl_dice": {"ce_weight": 0.0}})
    assert (fig52.dice_weight, fig52.ce_weight) == (1.0, 0.0)
    assert (create_method("ogl_dice").dice_weight, create_method("ogl_dice").ce_weight) == (
        0.5,
        0.5,
    )
    for bad in ({"dice_weight": 2.0}, {"ce_weight": 1.5}, {"dice_weight": -0.1, "ce_weight": 1}):
        with pytest.raises(MethodError, match="ogl_dice"):
            create_method("ogl_dice", {"ogl_dice": bad})
        with pytest.raises(ConfigError, match="method_options.ogl_dice"):  # the schema too
            train_options({"method_options": {"ogl_dice": bad}})
    train_options({"method_options": {"ogl_dice": {"dice_weight": 2.0, "ce_weight": 1.0}}})
    hooks, batch, ctx = _Hooks(model), _batch(), _ctx()
    logits = method.forward(model, batch["clip"], ctx)
    terms = method.loss_terms(model, batch, logits, ctx)
    expected = ogl_dice_terms(logits, batch["label"], hooks.acts(), batch["mask"], 4, 0.25)
    _close(terms, expected)
    assert set(terms) == {"dice_slow", "dice_fast"} and 0 < terms["dice_fast"].item() <= 0.125
    sum(terms.values()).backward()  # differentiable GradCAM: the Dice reaches the stem
    assert model.blocks[0].multipathway_blocks[FAST].conv.weight.grad.abs().sum() > 0
    with torch.no_grad():  # evaluation takes the activations too and keeps none
        method.forward(model, batch["clip"], ctx)
    assert method._activations is None and method._recorder._outputs == [None, None]


def test_rrr_ogl_terms():
    method, model = _setup("rrr_ogl", {"lambda": 0.1})
    assert method.needs_input_grad and method.needs_masks and method.ce_weight == 1.0
    batch, ctx = _batch(requires_grad=True), _ctx()
    logits = method.forward(model, batch["clip"], ctx)
    terms = method.loss_terms(model, batch, logits, ctx)
    _close(terms, rrr_ogl_terms(logits, batch["clip"], batch["mask"], 0.1))
    assert terms["rrr"].item() > 0


def test_rrr_gradcam_terms_selection_and_tracker_updates():
    opts = {"lambda": 0.5, "percentile": 25, "momentum": 0.8, "threshold": 0.3}
    method, model = _setup("rrr_gradcam", opts)
    tracker = method.tracker
    previous = torch.tensor([0.1, 0.2, 3.0, 0.3, 0.4, 0.5, 2.0, 0.6], dtype=torch.float64)
    tracker.update(torch.arange(8), previous)  # worst 25 % of 8 = samples 2 and 6
    hooks, batch, ctx = _Hooks(model), _batch(requires_grad=True), _ctx()
    logits = method.forward(model, batch["clip"], ctx)
    terms = method.loss_terms(model, batch, logits, ctx)
    selected = torch.tensor([False, False, True, False])
    expected = rrr_gradcam_terms(logits, batch["label"], batch["clip"], hooks.acts(), selected,
                                 0.5, 0.3, "predicted")  # fmt: skip
    _close(terms, expected)
    assert terms["rrr"].item() > 0
    # The step's losses reach the tracker, with another process's updates after this one's.
    other = (torch.tensor([7]), torch.tensor([9.0]))
    ctx.gather = lambda mine: [mine, other]
    method.end_step(ctx)
    ce = F.cross_entropy(logits.detach(), batch["label"], reduction="none").double()
    want = previous.clone()
    want[:4] = 0.8 * previous[:4] + 0.2 * ce
    want[7] = 0.8 * previous[7] + 0.2 * 9.0
    assert torch.allclose(tracker.ema, want)
    assert torch.equal(tracker.worst().nonzero().squeeze(1), torch.tensor([2, 7]))


def test_abn_terms_entropy_and_logits():
    method, model = _setup("abn", {"width": 16})
    batch, ctx = _batch(), _ctx()
    direct = model(pack_pathways(batch["clip"], 4))  # our own forward of the same model
    logits = method.forward(model, batch["clip"], ctx)
    assert torch.allclose(logits, direct.logits, atol=1e-6)
    terms = method.loss_terms(model, batch, logits, ctx)
    expected = abn_loss_terms(direct, batch["label"], batch["mask"], ABNLossWeights(),
                              class_weight=ctx.class_weights)  # fmt: skip
    _close(terms, expected)
    assert set(terms) == {"att_ce", "mask"}
    entropy = float(eq11_entropy_bits(direct.maps["object"]).mean())
    assert method.epoch_metrics() == {"abn_eq11_entropy_bits": pytest.approx(entropy)}
    assert method.epoch_metrics() == {}  # reset by the call
    mha, model2 = _setup("abn", {"width": 16, "mode": "mha", "pc": True, "weights": {"mha": 3}})
    assert mha.loss_weights == ABNLossWeights(mha=3.0)
    out_terms = mha.loss_terms(model2, batch, mha.forward(model2, batch["clip"], ctx), ctx)
    assert set(out_terms) == {"att_ce", "mha", "pc"}


def test_options_are_checked_and_init_is_kinetics():
    with pytest.raises(MethodError, match="rrr_gradcam.cam_target"):
        create_method("rrr_gradcam", {"rrr_gradcam": {"cam_target": "gt"}})
    with pytest.raises(MethodError, match="unknown option"):
        create_method("rrr_ogl", {"rrr_ogl": {"lam": 1}})
    with pytest.raises(MethodError, match="abn.weights"):
        create_method("abn", {"abn": {"weights": {"nope": 1}}})
    defaults = train_options({})["method_options"]
    assert defaults["ogl_dice"] == {"dice_weight": None, "ce_weight": None}
    assert defaults["rrr_gradcam"]["percentile"] == 10 and defaults["abn"]["width"] == 256
    assert all(METHODS[name].init == "kinetics" for name in GUIDED)
    assert [METHODS[n].needs_masks for n in GUIDED] == [True, True, False, True]


def test_abn_kinetics_init_loads_the_backbone(tmp_path):
    torch.manual_seed(3)
    donor = build_slowfast(SPEC).state_dict()
    torch.save({"model_state": donor}, tmp_path / "k400.pyth")
    model_options = {
        "depth": 18,
        "stem_width": 16,
        "kinetics_checkpoint": str(tmp_path / "k400.pyth"),
    }
    options = train_options({"model": model_options})
    method = create_method("abn", {"abn": {"width": 16}})
    method.prepare(SPEC, 4)
    model, init = _init_model(SPEC, method, options)
    assert init == "kinetics"
    for key, value in model.backbone.state_dict().items():
        if not key.startswith(HEAD_PREFIX):
            assert torch.equal(value, donor[key]), key


def _expected_logits(name: str, model, clip):
    model.eval()
    with torch.no_grad():
        if name == "abn":
            return model(pack_pathways(clip, 4)).logits
        return forward_clip(model, clip, 4)


@pytest.mark.parametrize("name", [*GUIDED, "vanilla"])
def test_trains_end_to_end_and_load_trained_rebuilds_it(name, dataset, tmp_path):
    manifest, masks = dataset
    options = {**NO_DROPOUT, "epochs": 1, "method_options": {"abn": {"width": 16}}}
    result = train(manifest, masks, name, 4, tmp_path, options, "cpu")
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    terms = [c for c in metrics if c.startswith("loss_")]
    want = {
        "ogl_dice": {"loss_dice_slow", "loss_dice_fast"},
        "rrr_ogl": {"loss_rrr"},
        "rrr_gradcam": {"loss_rrr"},
        "abn": {"loss_att_ce", "loss_mask"},
        "vanilla": set(),
    }
    assert set(terms) == {"loss_ce"} | want[name]  # fmt: skip
    assert metrics["loss"][0] == pytest.approx(metrics[terms].sum(axis=1)[0], rel=1e-6)
    assert all(math.isfinite(v) for v in metrics[terms].iloc[0])
    if name == "abn":
        assert 0 <= metrics["abn_eq11_entropy_bits"][0] <= math.log2(10)  # 1x1 maps at 32 px: 0
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["init"] == "random"  # train.model.kinetics false: no Kinetics for any method
    assert (ckpt["abn_spec"] is not None) == (name == "abn")
    trained = load_trained(tmp_path / "checkpoint.pt", "cpu")
    assert trained.abn == (name == "abn") and trained.method == name
    assert (trained.T, trained.alpha, trained.num_classes) == (4, 4, 2)
    assert trained.transform == ckpt["transform"] and not trained.model.training
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        got = trained.model_fn(clip)
    assert got.shape == (2, 2)
    assert torch.allclose(got, _expected_logits(name, result.model, clip), atol=1e-5)


def test_rrr_gradcam_tracker_survives_resume(dataset, tmp_path):
    manifest, masks = dataset
    options = {**NO_DROPOUT, "method_options": {"rrr_gradcam": {"percentile": 50}}}
    straight = train(manifest, masks, "rrr_gradcam", 4, tmp_path / "a", options, "cpu")
    train(manifest, masks, "rrr_gradcam", 4, tmp_path / "b", options, "cpu", stop_after_epochs=1)
    torch.manual_seed(99)
    resumed = train(manifest, masks, "rrr_gradcam", 4, tmp_path / "b", options, "cpu")
    assert resumed.resumed_from == 1
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in "ab")
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-6), key
    ta, tb = a["method_state"]["tracker"], b["method_state"]["tracker"]
    assert torch.equal(ta["seen"], tb["seen"]) and bool(ta["seen"].all())
    assert torch.allclose(ta["ema"], tb["ema"], rtol=1e-9)
    # epoch 2 penalised the worst half: the RRR term was active
    assert straight.metrics[1]["loss_rrr"] > 0
    assert b["metrics"][1]["loss_rrr"] == pytest.approx(straight.metrics[1]["loss_rrr"], rel=1e-5)
