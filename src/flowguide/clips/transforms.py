"""Training and evaluation transforms of thesis Section 4.6.2, with masks that follow the geometry.

Training, in the thesis' order: scale to [0, 1]; random short-side scale in
[short_side_min, short_side_max]; random crop; RandAugment (when enabled); OGL Transform (when
enabled: the input multiplied by the diver mask with probability p); normalise; horizontal flip
with probability ``hflip_p``. Evaluation: short side ``eval_short_side``, centre crop
``eval_crop``, the same normalisation.

Every geometric step is applied to the video (bilinear, as pytorchvideo does) and to the mask
(nearest, sampling the same pixel centres: ``nearest-exact`` / grid-sample nearest), with the
same parameters, so the mask keeps covering what it covered. RandAugment reuses pytorchvideo's
ops and magnitude mapping: ``JointRandAugment`` draws the op and magnitude once, in the same
order of random draws as ``pytorchvideo.transforms.RandAugment``, and applies the geometric ops
(rotate, shear, translate) to the mask as well; photometric ops touch the video only.

Tensors: video (T, C, H, W) float, mask (T, 1, H, W) in {0, 1} (uint8 or float); the output video is
(C, T, H, W) (the model's layout), the output mask (T, H, W) bool. Randomness comes from the
global torch generator, which the dataset seeds per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms._functional_tensor as F_t
from torchvision.transforms.functional import InterpolationMode, rotate

import flowguide.utils.compat  # noqa: F401  (must precede any pytorchvideo.transforms import)
from flowguide.clips.evidence import frame_evidence

MASK_FILL = [0.0]  # area brought in by a geometric op is background in the mask


@dataclass(frozen=True)
class TransformSpec:
    short_side_min: int = 256
    short_side_max: int = 320
    crop: int = 224
    eval_short_side: int = 320
    eval_crop: int = 256
    mean: tuple[float, float, float] = (0.31, 0.47, 0.5)
    std: tuple[float, float, float] = (0.2, 0.2, 0.23)
    hflip_p: float = 0.5
    randaugment: bool = False
    randaug_magnitude: int = 9
    randaug_num_layers: int = 2
    randaug_prob: float = 0.5
    ogl_p: float = 0.0  # OGL Transform probability; 0 = off

    def __post_init__(self) -> None:
        if not self.crop <= self.short_side_min <= self.short_side_max:
            raise ValueError(
                f"need crop <= short_side_min <= short_side_max, got {self.crop}, "
                f"{self.short_side_min}, {self.short_side_max}"
            )
        if self.eval_crop > self.eval_short_side:
            raise ValueError(f"eval_crop {self.eval_crop} > eval_short_side {self.eval_short_side}")


# --- conversions -----------------------------------------------------------------------------


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [0, 1] (step 1)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def masks_to_tensor(masks: np.ndarray, frame_size: tuple[int, int] | None = None) -> torch.Tensor:
    """(T, h, w) bool at the flow processing size -> (T, 1, H, W) uint8 {0, 1} at ``frame_size``
    (None: kept at its size; the first short-side scale resamples it, once).
    uint8: a quarter of float's memory; nearest resampling and the affine ops keep the dtype."""
    mask = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.uint8)).unsqueeze(1)
    if frame_size is not None and tuple(mask.shape[-2:]) != tuple(frame_size):
        mask = F.interpolate(mask, size=frame_size, mode="nearest-exact")
    return mask


# --- geometric steps (video and mask together) -----------------------------------------------


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """pytorchvideo's ``short_side_scale`` rounding (floor of the long side)."""
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def short_side_scale(
    video: torch.Tensor, mask: torch.Tensor | None, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    new_size = short_side_size(video.shape[-2], video.shape[-1], size)
    if new_size != tuple(video.shape[-2:]):
        video = F.interpolate(video, size=new_size, mode="bilinear", align_corners=False)
    # The mask may still be at the flow processing size: one nearest resampling to the target.
    if mask is not None and tuple(mask.shape[-2:]) != new_size:
        mask = F.interpolate(mask, size=new_size, mode="nearest-exact")
    return video, mask


def crop(
    video: torch.Tensor, mask: torch.Tensor | None, top: int, left: int, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    video = video[..., top : top + size, left : left + size]
    if mask is not None:
        mask = mask[..., top : top + size, left : left + size]
    return video, mask


def random_crop(
    video: torch.Tensor, mask: torch.Tensor | None, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    height, width = video.shape[-2:]
    top = int(torch.randint(0, height - size + 1, (1,)).item())
    left = int(torch.randint(0, width - size + 1, (1,)).item())
    return crop(video, mask, top, left, size)


def center_crop(
    video: torch.Tensor, mask: torch.Tensor | None, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    height, width = video.shape[-2:]
    return crop(video, mask, (height - size) // 2, (width - size) // 2, size)


def hflip(
    video: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return video.flip(-1), (mask.flip(-1) if mask is not None else None)


# --- RandAugment on video + mask -------------------------------------------------------------


def _mask_rotate(mask: torch.Tensor, factor: float) -> torch.Tensor:
    return rotate(mask, factor, fill=MASK_FILL, interpolation=InterpolationMode.NEAREST)


def _mask_affine(mask: torch.Tensor, matrix: list[float]) -> torch.Tensor:
    return F_t.affine(mask, matrix, fill=MASK_FILL, interpolation="nearest")


# The same matrices as pytorchvideo.transforms.augmentations._shear_x etc.
MASK_OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "Rotate": _mask_rotate,
    "ShearX": lambda m, f: _mask_affine(m, [1, f, m.size(-2) * f / 2, 0, 1, 0]),
    "ShearY": lambda m, f: _mask_affine(m, [1, 0, 0, f, 1, m.size(-1) * f / 2]),
    "TranslateX": lambda m, f: _mask_affine(m, [1, 0, f * m.size(-1), 0, 1, 0]),
    "TranslateY": lambda m, f: _mask_affine(m, [1, 0, 0, 0, 1, f * m.size(-2)]),
}


class JointRandAugment:
    """pytorchvideo's RandAugment, applied to a video and (for geometric ops) its mask.

    The ops, their magnitude mapping, the op sampler and the random draws are pytorchvideo's:
    with the same torch seed the video comes out identical to ``RandAugment(...)(video)``.
    """

    def __init__(self, magnitude: int = 9, num_layers: int = 2, prob: float = 0.5) -> None:
        from pytorchvideo.transforms.rand_augment import RandAugment

        sampler = RandAugment(magnitude=magnitude, num_layers=num_layers, prob=prob).randaug_fn
        self.ops = sampler.transforms_list
        self.op_weights = sampler.transforms_prob
        self.num_layers = sampler.num_sample_op

    def __call__(
        self, video: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        chosen = torch.multinomial(self.op_weights, self.num_layers, replacement=False)
        for index in chosen.tolist():
            video, mask = self._apply(self.ops[index], video, mask)
        return video, mask

    @staticmethod
    def _apply(op, video: torch.Tensor, mask: torch.Tensor | None):
        # Mirrors pytorchvideo AugmentTransform.__call__: skip draw, magnitude draw, level args.
        if torch.rand(1).item() > op.prob:
            return video, mask
        magnitude = op._get_magnitude()
        args = op.level_fn(magnitude, op.level_paras) if op.level_fn is not None else ()
        video = op.transform_fn(video, *args, **op.transform_hparas)
        if mask is not None and op.transform_name in MASK_OPS:
            mask = MASK_OPS[op.transform_name](mask, *args)
        return video, mask


# --- photometric steps -----------------------------------------------------------------------


def ogl_transform(video: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """Keep only the diver (video * mask) with probability ``p`` (thesis Section 4.3.3).

    A frame whose mask is empty (no diver found) carries no evidence and is left as it is
    (clips.evidence), rather than blacked out.
    """
    if p <= 0:
        return video
    if mask is None:
        raise ValueError("OGL Transform needs the diver masks")
    if torch.rand(1).item() < p:
        keep = frame_evidence(mask[:, 0]).view(-1, 1, 1, 1)  # mask (T, 1, H, W) -> (T,1,1,1)
        return torch.where(keep, video * mask.to(video.dtype), video)
    return video


def normalize(video: torch.Tensor, mean, std) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=video.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=video.dtype).view(1, -1, 1, 1)
    return (video - mean_t) / std_t


# --- the pipelines ---------------------------------------------------------------------------


class ClipTransform:
    """(video (T,3,H,W) in [0,1], mask (T,1,H,W) | None) -> (clip (3,T,h,w), mask (T,h,w) | None)"""

    def __init__(self, spec: TransformSpec, training: bool) -> None:
        self.spec = spec
        self.training = training
        self.randaug = (
            JointRandAugment(spec.randaug_magnitude, spec.randaug_num_layers, spec.randaug_prob)
            if training and spec.randaugment
            else None
        )

    def geometric_and_augment(
        self, video: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Steps 2-5 of training (scale, crop, RandAugment, OGL) or 2-3 of evaluation."""
        s = self.spec
        if not self.training:
            video, mask = short_side_scale(video, mask, s.eval_short_side)
            return center_crop(video, mask, s.eval_crop)
        size = int(torch.randint(s.short_side_min, s.short_side_max + 1, (1,)).item())
        video, mask = short_side_scale(video, mask, size)
        video, mask = random_crop(video, mask, s.crop)
        if self.randaug is not None:
            video, mask = self.randaug(video, mask)
        video = ogl_transform(video, mask, s.ogl_p)
        return video, mask

    def __call__(
        self, video: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        video, mask = self.geometric_and_augment(video, mask)
        video = normalize(video, self.spec.mean, self.spec.std)
        if self.training and torch.rand(1).item() < self.spec.hflip_p:
            video, mask = hflip(video, mask)
        clip = video.permute(1, 0, 2, 3).contiguous()
        return clip, (mask[:, 0] > 0.5 if mask is not None else None)
