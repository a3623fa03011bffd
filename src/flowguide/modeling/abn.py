"""Object-ABN on SlowFast (paper 001: Nitta et al., Object-ABN; ABN: Fukui et al. 2019).

Split of the SlowFast built by ``build_slowfast``:

* feature extractor E = blocks 0..LAST_STAGE (stem, res2..res5) of both pathways;
* attention branch A on the last residual stage's features. Input (``source``): "fast" = the
  fast pathway's features (B, Cf, T, h, w); "both" (default) = those concatenated with the slow
  pathway's features repeated over time to T frames (nearest). A 1x1x1 conv, a (1,3,3) conv
  (frame-wise: no temporal mixing, so the maps are per frame), a 1x1x1 conv to K class maps whose
  global average is the attention-branch logits, and a 1x1x1 conv + BN + sigmoid to ``heads``
  frame-wise maps (B, heads, T, h, w) in [0, 1];
* the maps gate both pathways' features, residually as in ABN: f * (1 + a). The slow pathway
  uses the map at the frames pack_pathways gave it. With three maps (Object-ABN's multi-head
  variant, paper Eq. 4-6) each pathway's three gated copies are concatenated and a 1x1x1 conv
  (initialised to their mean) brings them back to C channels;
* perception branch P = SlowFast's own pathway pooling and head (blocks 5, 6).

Modes: "free" = original ABN (one unconstrained map, no mask loss), "mask" = Object-ABN (one map
M_o trained against the diver mask), "mha" = three maps M_u (free), M_o (mask), M_b (1 - mask).

Losses (``abn_loss_terms``, weights from the paper, Sec. 4.2): lambda_att * CE(attention logits)
with lambda_att = 1; lambda_mask * MSE(M_o, mask) with lambda_mask = 10; or lambda_mha * (MSE(M_o,
mask) + lambda_b * MSE(M_b, 1 - mask)) with lambda_mha = 10, lambda_b = 1; optional PC loss
(Eq. 8) with lambda_pc = 1e-4, lambda_pc1 = 1, lambda_pc2 = 1e-3, K = number of classes, on the
attention branch's pooled features. The mask is resized to the map's (T, h, w) by area averaging
(the fraction of diver pixels in each map cell). A frame whose mask is empty carries no evidence
(clips.evidence): no mask loss on it (``masked_mse``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from flowguide.clips.evidence import frame_evidence
from flowguide.modeling.slowfast import FAST, LAST_STAGE, SLOW, pack_pathways

MAP_NAMES = {"free": ("free",), "mask": ("object",), "mha": ("free", "object", "background")}
ENTROPY_BINS = 10


@dataclass(frozen=True)
class ABNSpec:
    num_classes: int
    alpha: int = 4  # SlowFast's frame-rate ratio, as in SlowFastSpec
    mode: str = "mask"  # free | mask | mha
    source: str = "both"  # fast | both
    width: int = 256  # attention-branch channels
    pc: bool = False  # learn centroids for the PC loss


@dataclass(frozen=True)
class ABNLossWeights:
    att: float = 1.0  # lambda
    mask: float = 10.0  # lambda_mask
    mha: float = 10.0  # lambda_mha
    background: float = 1.0  # lambda_b
    pc: float = 1e-4  # lambda_PC (used when the model has centroids)
    pc1: float = 1.0
    pc2: float = 1e-3


class ABNOutput(NamedTuple):
    logits: torch.Tensor  # perception branch (B, K)
    attention_logits: torch.Tensor  # attention branch (B, K)
    maps: dict[str, torch.Tensor]  # name -> (B, T, h, w) in [0, 1]
    embedding: torch.Tensor  # attention-branch pooled features (B, width), for the PC loss


def stage_channels(stage: nn.Module) -> int:
    """Output channels of a residual stage: those of its last convolution."""
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv3d)]
    return convs[-1].out_channels


class AttentionBranch(nn.Module):
    def __init__(self, in_channels: int, width: int, num_classes: int, heads: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv3d(in_channels, width, 1, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        self.class_conv = nn.Conv3d(width, num_classes, 1)
        self.map_conv = nn.Sequential(
            nn.ReLU(), nn.Conv3d(num_classes, heads, 1, bias=False), nn.BatchNorm3d(heads)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> attention logits (B, K), maps (B, heads, T, h, w), embedding (B, width)."""
        feat = self.trunk(x)
        class_maps = self.class_conv(feat)
        maps = torch.sigmoid(self.map_conv(class_maps))
        return class_maps.mean(dim=(2, 3, 4)), maps, feat.mean(dim=(2, 3, 4))


class HeadFusion(nn.Module):
    """Concatenated gated copies (B, heads*C, ...) -> (B, C, ...), initialised to their mean."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels * heads, channels, 1, bias=False)
        eye = torch.eye(channels).repeat(1, heads) / heads
        with torch.no_grad():
            self.conv.weight.copy_(eye.view(channels, channels * heads, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ObjectABN(nn.Module):
    """SlowFast + attention branch; forward(clip or pathway list) -> ABNOutput."""

    def __init__(self, backbone: nn.Module, spec: ABNSpec) -> None:
        super().__init__()
        if spec.mode not in MAP_NAMES:
            raise ValueError(f"ABN mode must be one of {sorted(MAP_NAMES)}, got {spec.mode!r}")
        if spec.source not in ("fast", "both"):
            raise ValueError(f"ABN source must be 'fast' or 'both', got {spec.source!r}")
        self.backbone = backbone
        self.spec = spec
        self.map_names = MAP_NAMES[spec.mode]
        stages = backbone.blocks[LAST_STAGE].multipathway_blocks
        slow_c, fast_c = stage_channels(stages[SLOW]), stage_channels(stages[FAST])
        in_c = fast_c + (slow_c if spec.source == "both" else 0)
        heads = len(self.map_names)
        self.branch = AttentionBranch(in_c, spec.width, spec.num_classes, heads)
        self.fusion = (
            nn.ModuleList([HeadFusion(slow_c, heads), HeadFusion(fast_c, heads)])
            if heads > 1
            else None
        )
        self.centroids = (
            nn.Parameter(torch.randn(spec.num_classes, spec.width) * 0.01) if spec.pc else None
        )

    def extract(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        for block in self.backbone.blocks[: LAST_STAGE + 1]:
            x = block(x)
        return x

    def branch_input(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        if self.spec.source == "fast":
            return fast
        slow_t = F.interpolate(slow, size=fast.shape[2:], mode="nearest")
        return torch.cat([fast, slow_t], dim=1)

    def gate(self, feat: torch.Tensor, maps: torch.Tensor, pathway: int) -> torch.Tensor:
        """f * (1 + a) per map; several maps are concatenated and fused back to C channels."""
        if self.fusion is None:
            return feat * (1 + maps)
        gated = torch.cat([feat * (1 + maps[:, k : k + 1]) for k in range(maps.shape[1])], 1)
        return self.fusion[pathway](gated)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> ABNOutput:
        pathways = pack_pathways(x, self.spec.alpha) if isinstance(x, torch.Tensor) else list(x)
        slow, fast = self.extract(pathways)
        att_logits, maps, embedding = self.branch(self.branch_input(slow, fast))
        slow_maps = pack_pathways(maps, self.spec.alpha)[0]
        if slow_maps.shape[2] != slow.shape[2]:
            raise ValueError(
                f"ABN: slow pathway has {slow.shape[2]} frames, the maps give {slow_maps.shape[2]}"
            )
        gated = [self.gate(slow, slow_maps, SLOW), self.gate(fast, maps, FAST)]
        for block in self.backbone.blocks[LAST_STAGE + 1 :]:
            gated = block(gated)
        named = {name: maps[:, k] for k, name in enumerate(self.map_names)}
        return ABNOutput(gated, att_logits, named, embedding)


def wrap_abn(model: nn.Module, spec: ABNSpec) -> ObjectABN:
    return ObjectABN(model, spec)


def resize_mask(mask: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(B, T, H, W) {0,1} -> (B, *size) float: fraction of mask pixels in each cell (area)."""
    return F.adaptive_avg_pool3d(mask.float().unsqueeze(1), size).squeeze(1)


def pc_loss(
    embedding: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    lam1: float = 1.0,
    lam2: float = 1e-3,
) -> torch.Tensor:
    """Prototype Conformity loss (paper Eq. 8), mean over samples.

    lam1 ||f - w_y|| - lam2 / (K-1) sum_{j != y} (||f - w_j|| + ||w_y - w_j||).
    """
    k = centroids.shape[0]
    to_all = torch.cdist(embedding, centroids)  # (B, K)
    w_y = centroids[labels]
    between = torch.cdist(w_y, centroids)  # (B, K); zero at j == y
    own = to_all.gather(1, labels.view(-1, 1)).squeeze(1)
    others = (to_all.sum(1) - own) + between.sum(1)
    return (lam1 * own - lam2 / (k - 1) * others).mean()


def abn_loss_terms(
    out: ABNOutput,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    weights: ABNLossWeights,
    centroids: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Terms added to the perception branch's CE: att_ce, and mask / mha, and pc."""
    # Mean over the batch of w_y * CE (not / sum of the batch's w_y as nn.CrossEntropyLoss(weight)
    # does), as the loop's CE: accumulating loader batches then gives the full batch's gradient.
    att_ce = F.cross_entropy(out.attention_logits, labels, reduction="none")
    if class_weight is not None:
        att_ce = att_ce * class_weight[labels]
    terms = {"att_ce": weights.att * att_ce.mean()}
    if "object" in out.maps:
        if mask is None:
            raise ValueError("ABN with an object map needs the diver mask in the batch")
        m_o = out.maps["object"]
        target = resize_mask(mask, tuple(m_o.shape[1:]))
        evidence = frame_evidence(target)  # (B, T): frames with a mask (clips.evidence)
        if "background" in out.maps:
            mha = masked_mse(m_o, target, evidence) + weights.background * masked_mse(
                out.maps["background"], 1 - target, evidence
            )
            terms["mha"] = weights.mha * mha
        else:
            terms["mask"] = weights.mask * masked_mse(m_o, target, evidence)
    if centroids is not None:
        terms["pc"] = weights.pc * pc_loss(
            out.embedding, labels, centroids, weights.pc1, weights.pc2
        )
    return terms


def masked_mse(pred: torch.Tensor, target: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """MSE over the frames with evidence: per sample the mean over its evidence frames' cells,
    then the sum over samples / B (a sample without any evidence adds 0). Equal to
    ``F.mse_loss`` when every frame has a mask; a loader batch's share does not depend on the
    other samples, so accumulation gives the full batch's term."""
    b, t = evidence.shape
    keep = evidence.to(pred.dtype).view(b, t, *([1] * (pred.dim() - 2)))
    cells = pred[0, 0].numel()
    per_sample = ((pred - target) ** 2 * keep).flatten(1).sum(1)
    counts = keep.flatten(1).sum(1) * cells
    return (per_sample / counts.clamp_min(1)).sum() / b


def eq11_entropy_bits(maps: torch.Tensor, bins: int = ENTROPY_BINS) -> torch.Tensor:
    """Sharpness of attention maps (paper Eq. 11): (..., T, H, W) -> (...,) in bits.

    Each frame is min-max normalised to [0, 1] (a constant frame becomes all zeros), its values
    counted in ``bins`` equal bins over [0, 1] (1.0 in the last), and -sum p log2 p (0 log 0 = 0)
    is averaged over the frames.
    """
    frames = maps.detach().flatten(-2).double()  # (..., T, HW)
    lo = frames.amin(-1, keepdim=True)
    span = frames.amax(-1, keepdim=True) - lo
    norm = torch.where(span > 0, (frames - lo) / span.clamp_min(1e-300), torch.zeros_like(frames))
    index = (norm * bins).floor().long().clamp(0, bins - 1)
    counts = F.one_hot(index, bins).sum(-2).double()  # (..., T, bins)
    p = counts / counts.sum(-1, keepdim=True)
    ent = -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)
    return ent.mean(-1)
