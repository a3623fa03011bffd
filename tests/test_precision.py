"""GPU-readiness options, checked for correctness on the CPU: mixed precision (RRR's double
backward against fp32), activation checkpointing, channels_last_3d, per-(method, T) loader batch
sizes and the DataLoader kept across epochs.

Mixed-precision tolerances (measured on this CPU, depth-18 SlowFast, T = 16, 32 px, eval mode,
rrr_ogl lambda 1, model seed 0; stated with margin):

* bf16 autocast: penalty 1.1e-2 relative error, parameter gradients 3.2e-2 relative (L2 norm of
  the difference over the norm), cosine 0.9996. bf16 keeps 8 mantissa bits, and the RRR penalty
  is a sum of squares of small input gradients, so errors of a few percent are expected; over
  model seeds 0-2 the worst was 15% (penalty) / 16% (gradients), cosine 0.993. Tolerance here:
  5% / 10%, cosine >= 0.995.
* fp16 autocast with the GradScaler's factor (2^16): penalty 1.9e-3, gradients 1.4e-3, cosine
  1.0000 (worst over seeds 0-2: 2.1e-2 / 2.5e-2). Tolerance: 1% / 2%, cosine >= 0.9999. Without
  the scaler the fp16 gradients were 7-21% off (underflow), which is why fp16 always has one.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.train.loader import EpochBatches, make_loader
from flowguide.train.losses import rrr_ogl_terms
from flowguide.train.memory import enable_activation_checkpointing, to_channels_last
from flowguide.train.methods import TrainContext, create_method
from flowguide.train.options import resolve_loader_batch_size, train_options
from flowguide.train.precision import Precision
from flowguide.train.step import accumulate_batch

CPU = torch.device("cpu")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_slowfast(SlowFastSpec(3, depth=18, stem_width=16, dropout=0.0)).eval()


def _batch(t: int = 16) -> dict:
    gen = torch.Generator().manual_seed(1)
    return {
        "clip": torch.randn(2, 3, t, 32, 32, generator=gen),
        "label": torch.tensor([0, 2]),
        "index": torch.arange(2),
        "mask": torch.rand(2, t, 32, 32, generator=gen) > 0.5,
    }


def _rrr_step(model, precision: Precision) -> tuple[float, torch.Tensor]:
    """The loop's own step (accumulate_batch) for rrr_ogl: penalty and unscaled gradients."""
    method = create_method("rrr_ogl", {"rrr_ogl": {"lambda": 1.0}})
    ctx = TrainContext(alpha=4, num_classes=3, class_weights=torch.ones(3), device=CPU)
    model.zero_grad()
    stats = accumulate_batch(model, method, _batch(), ctx, group_size=2, precision=precision)
    scale = precision.scaler.get_scale() if precision.scaler is not None else 1.0
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return stats.terms["rrr"], grads / scale


@pytest.mark.parametrize(("name", "pen_tol", "grad_tol", "min_cos"),
                         [("bf16", 0.05, 0.10, 0.995), ("fp16", 0.01, 0.02, 0.9999)])  # fmt: skip
def test_rrr_double_backward_under_mixed_precision_matches_fp32(name, pen_tol, grad_tol, min_cos):
    model = _model()
    pen32, grad32 = _rrr_step(model, Precision("fp32", CPU))
    pen, grad = _rrr_step(model, Precision(name, CPU))
    assert pen32 > 0 and torch.isfinite(grad).all()
    assert abs(pen - pen32) / pen32 < pen_tol
    assert ((grad - grad32).norm() / grad32.norm()).item() < grad_tol
    assert F.cosine_similarity(grad, grad32, dim=0).item() > min_cos


def test_fp16_scaler_skips_a_step_with_overflowing_gradients():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    precision = Precision("fp16", CPU)
    before = model.weight.detach().clone()
    precision.backward(model(torch.ones(1, 2)).sum())  # scaled backward, as the loop does
    model.weight.grad = torch.full_like(model.weight, float("inf"))  # an overflow
    scale = precision.scaler.get_scale()
    precision.step(opt)
    assert torch.equal(model.weight.detach(), before)  # skipped
    assert precision.scaler.get_scale() == scale / 2  # and the factor halved
    restored = Precision("fp16", CPU)
    restored.load_state_dict(precision.state_dict())  # saved in every checkpoint
    assert restored.scaler.get_scale() == scale / 2


def test_activation_checkpointing_gives_the_same_rrr_gradients():
    plain, checkpointed = _model(), _model()
    assert enable_activation_checkpointing(checkpointed) == 3  # res2, res3, res4
    keys = plain.state_dict().keys()
    assert checkpointed.state_dict().keys() == keys  # checkpoints stay loadable
    grads = []
    for model in (plain, checkpointed):
        clip = _batch()["clip"].requires_grad_(True)
        logits = forward_clip(model, clip, 4)
        penalty = rrr_ogl_terms(logits, clip, _batch()["mask"], 1.0)["rrr"]
        grads.append(torch.autograd.grad(penalty, list(model.parameters()), allow_unused=True))
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-10)


def test_channels_last_gives_the_same_logits():
    model = _model()
    clip = _batch()["clip"]
    expected = forward_clip(model, clip, 4)
    to_channels_last(model)
    got = forward_clip(model, clip.contiguous(memory_format=torch.channels_last_3d), 4)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_loader_batch_size_overrides_per_method_and_t():
    options = train_options({"batch_size": 16, "loader_batch_size": 8,
                             "loader_batch_size_overrides": [
                                 {"method": "rrr_ogl", "T": 64, "loader_batch_size": 2},
                                 {"T": 64, "loader_batch_size": 4}]})  # fmt: skip
    assert resolve_loader_batch_size(options, "rrr_ogl", 64)["loader_batch_size"] == 2
    assert resolve_loader_batch_size(options, "vanilla", 64)["loader_batch_size"] == 4
    assert resolve_loader_batch_size(options, "rrr_ogl", 16)["loader_batch_size"] == 8
    assert "loader_batch_size_overrides" not in resolve_loader_batch_size(options, "x", 16)


class _Keys(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, key):
        epoch, index = key
        return {"epoch": epoch, "index": index, "pid": torch.utils.data.get_worker_info().id}


def test_loader_keeps_its_workers_and_follows_the_epoch():
    sampler = EpochBatches()
    loader = make_loader(_Keys(), sampler, num_workers=1, device=CPU, prefetch_factor=2)
    assert loader.persistent_workers and loader.prefetch_factor == 2
    seen = []
    for epoch, order in ((0, [[0, 1], [2, 3]]), (1, [[5, 4]])):
        sampler.set(epoch, order)
        seen.append([(b["epoch"].tolist(), b["index"].tolist()) for b in loader])
    assert seen == [[([0, 0], [0, 1]), ([0, 0], [2, 3])], [([1, 1], [5, 4])]]
    assert loader._iterator is not None  # the same worker pool served both epochs
