"""The one SlowFast builder: pytorchvideo's SlowFast with adaptive head pooling.

pytorchvideo's head pools with fixed kernels that assume 224 px and 8/32 frames; adaptive
pooling makes any T and crop size work. Its forward mutates the input list, so ``forward_clip``
always passes a fresh list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from pytorchvideo.models.slowfast import create_slowfast
from torch import nn

from flowguide.utils.checkpoints import hub_checkpoint_path, load_weights

# pytorchvideo's SLOWFAST_8x8_R50 Kinetics-400 checkpoint (alpha 4, beta 1/8).
KINETICS_R50_URL = (
    "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"
)
HEAD_PREFIX = "blocks.6.proj."
SLOW, FAST = 0, 1
LAST_STAGE = 4  # blocks: 0 stem, 1-4 res2-res5, 5 pathway pooling, 6 head


@dataclass(frozen=True)
class SlowFastSpec:
    num_classes: int
    depth: int = 50  # 50 = SlowFast-R50; 18 = one block per stage, the small CPU model
    alpha: int = 4  # fast/slow frame-rate ratio (thesis: 4)
    beta_inv: int = 8  # slow/fast channel ratio
    stem_width: int = 64  # slow stem channels; 64 in R50
    dropout: float = 0.5


def build_slowfast(spec: SlowFastSpec) -> nn.Module:
    return create_slowfast(
        model_depth=spec.depth,
        model_num_class=spec.num_classes,
        slowfast_channel_reduction_ratio=(spec.beta_inv,),
        slowfast_fusion_conv_stride=(spec.alpha, 1, 1),
        stem_dim_outs=(spec.stem_width, spec.stem_width // spec.beta_inv),
        dropout_rate=spec.dropout,
        head_pool=nn.AdaptiveAvgPool3d,
    )


def pack_pathways(clip: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """(B, C, T, H, W) -> [slow (T // alpha frames, evenly spaced), fast (all T)].

    Index selection is differentiable, so an input gradient taken on ``clip`` counts both pathways.
    """
    t = clip.shape[2]
    n_slow = max(1, t // alpha)
    index = torch.linspace(0, t - 1, n_slow, device=clip.device).round().long()
    return [clip.index_select(2, index), clip]


def forward_clip(model: nn.Module, clip: torch.Tensor, alpha: int) -> torch.Tensor:
    """Logits for a (B, C, T, H, W) clip; a fresh pathway list per call."""
    return model(pack_pathways(clip, alpha))


def head_layer(model: nn.Module) -> nn.Module:
    return model.blocks[6].proj


def load_kinetics(model: nn.Module, checkpoint: str | os.PathLike | None) -> list[str]:
    """Load Kinetics-400 weights, all but the classification head; return the keys left new.

    ``checkpoint`` None means the torch hub cache ($TORCH_HOME/hub/checkpoints).
    """
    path = checkpoint or hub_checkpoint_path(KINETICS_R50_URL)
    state = load_weights(
        path,
        "SlowFast-R50 Kinetics-400",
        f"Download {KINETICS_R50_URL} on a machine with internet and copy it there.",
    )
    state = state.get("model_state", state) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith(HEAD_PREFIX)] + list(unexpected)
    if bad:
        raise ValueError(f"{path}: checkpoint does not match the SlowFast spec: {bad[:5]}")
    return list(missing)
