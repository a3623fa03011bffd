"""FlowSAM candidates with segment-anything: a grid of point prompts decoded per frame.

Per frame the images are encoded once and every gap's flow colour image is encoded and the
embeddings averaged over gaps (as the authors do). Then a grid of gridside^2 positive point
prompts (cell centres) is decoded in ceil(gridside^2 / points_per_batch) batched decoder calls,
every prompt decoded once. Modes (``segment.sam.mode``, weights: ``segment/weights.py``):

- ``flowp``: FlowP-SAM (``segment/flowp.py``): the RGB frame's embedding is decoded with the
  flow prompt generator reading the flow embedding; score = fIoU + MOS of the mask channel;
- ``flowi``: FlowI-SAM: the flow embedding decoded by the FlowI decoder; score = fIoU;
- ``sam_on_flow``: plain SAM on the flow embedding; score = SAM's predicted IoU.

The mask is output channel 0 (``MASK_CHANNEL``, the authors' ``--sam_channel`` default: the
single-object token), thresholded at logit 0. Masks then go through box NMS (``nms_iou``),
border filtering (mean coverage of the four image edges above ``border_fraction`` =
background, the authors' ``is_bg_mask``) and ranking by score; the stage keeps the top
``max_objects``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flowguide.utils.failures import FlowguideError

MASK_CHANNEL = 0  # the authors' evaluation channel (of 4: the single-object token first)
SCORES = {
    "flowp": "fIoU[channel 0] + MOS (FlowP-SAM)",
    "flowi": "fIoU[channel 0] (FlowI-SAM)",
    "sam_on_flow": "SAM predicted IoU[channel 0]",
}


@dataclass(frozen=True)
class SamParams:
    checkpoint: str | None = None
    model_type: str = "vit_b"
    rgb_checkpoint: str | None = None
    rgb_model_type: str = "vit_h"
    flowsam_checkpoint: str | None = None
    mode: str = "flowp"
    gridside: int = 20
    points_per_batch: int = 64
    nms_iou: float = 0.9
    border_fraction: float = 0.5
    max_objects: int = 10

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SamParams:
        return cls(max_objects=int(options.get("max_objects", 10)), **dict(options.get("sam", {})))

    def prompt_settings(self) -> dict[str, Any]:
        """What decides the prompts and the ranking (for the candidates file)."""
        return {
            "mode": self.mode,
            "gridside": self.gridside,
            "prompts_per_frame": self.gridside * self.gridside,
            "points_per_batch": self.points_per_batch,
            "mask_channel": MASK_CHANNEL,
            "mask_threshold": 0.0,
            "score": SCORES[self.mode],
            "nms_iou": self.nms_iou,
            "border_fraction": self.border_fraction,
            "max_objects": self.max_objects,
            "gaps": "every gap of the flow file; encoder embeddings averaged over gaps",
        }


def build_sam_model(params: SamParams) -> torch.nn.Module:
    """The model of ``params.mode`` with its checkpoints (never downloaded)."""
    from flowguide.segment.weights import build_segmentation_model

    return build_segmentation_model(params)[0]


def prompt_grid(height: int, width: int, gridside: int) -> np.ndarray:
    """(gridside^2, 2) point prompts (x, y) at the cell centres of a gridside x gridside grid."""
    xs = (np.arange(gridside) + 0.5) / gridside * width
    ys = (np.arange(gridside) + 0.5) / gridside * height
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def border_coverage(masks: torch.Tensor) -> torch.Tensor:
    """(N,) mean coverage of the four image edges of (N, H, W) masks (FlowSAM's is_bg_mask)."""
    m = masks.float()
    return (m[:, 0].mean(-1) + m[:, -1].mean(-1) + m[:, :, 0].mean(-1) + m[:, :, -1].mean(-1)) / 4


class SamSegmenter:
    """Runs one SAM-based model over frames; counts decoder calls and decoded points."""

    def __init__(
        self, model: torch.nn.Module, params: SamParams, device: str | torch.device = "cpu"
    ):
        from segment_anything.utils.transforms import ResizeLongestSide

        from flowguide.segment.flowp import FlowPSam

        self.flowp = isinstance(model, FlowPSam)
        if self.flowp != (params.mode == "flowp"):
            raise FlowguideError(
                f"segment.sam.mode {params.mode!r} does not match the model "
                f"({type(model).__name__})"
            )
        self.model = model.to(device).eval()
        self.params = params
        self.device = torch.device(device)
        img_size = model.img_size if self.flowp else model.image_encoder.img_size
        self.transform = ResizeLongestSide(img_size)
        self.decoder_calls = 0
        self.points_decoded = 0

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        resized = self.transform.apply_image(np.ascontiguousarray(image, dtype=np.uint8))
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).float()
        return self.model.preprocess(tensor[None])

    @torch.no_grad()
    def encode(self, images: list[np.ndarray], encoder: torch.nn.Module) -> torch.Tensor:
        """Mean embedding (1, C, h, w) of ``images``, encoded in one batched call."""
        batch = torch.cat([self._prepare(im) for im in images])
        return encoder(batch).mean(0, keepdim=True)

    def frame_embeddings(
        self, flow_images: list[np.ndarray], rgb: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embedding the decoder segments, flow embedding for FlowP's prompt generator)."""
        if not self.flowp:
            return self.encode(flow_images, self.model.image_encoder), None
        if rgb is None:
            raise FlowguideError("segment.sam.mode 'flowp' needs the RGB frame")
        return (
            self.encode([rgb], self.model.rgb_encoder),
            self.encode(flow_images, self.model.flow_encoder),
        )

    @torch.no_grad()
    def decode_logits(
        self, embeddings: tuple[torch.Tensor, torch.Tensor | None], size: tuple[int, int]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per decoder call: ((B, H, W) mask logits of channel 0 at ``size``, (B,) scores)."""
        image, flow = embeddings
        points = prompt_grid(*size, self.params.gridside)
        coords = torch.as_tensor(
            self.transform.apply_coords(points, size), dtype=torch.float32, device=self.device
        )
        input_size = self.transform.get_preprocess_shape(*size, self.transform.target_length)
        prompt_encoder = self.model.prompt_encoder
        image_pe = prompt_encoder.get_dense_pe()
        batch = self.params.points_per_batch
        channel = slice(MASK_CHANNEL, MASK_CHANNEL + 1)
        for start in range(0, len(coords), batch):
            chunk = coords[start : start + batch, None, :]  # (B, 1, 2): one positive point each
            labels = torch.ones(chunk.shape[:2], dtype=torch.int, device=self.device)
            sparse, dense = prompt_encoder(points=(chunk, labels), boxes=None, masks=None)
            if self.flowp:
                low_res, fiou, mos = self.model.mask_decoder(image, flow, image_pe, sparse, dense)
                scores = fiou[:, MASK_CHANNEL] + mos[:, 0]
            else:
                low_res, iou = self.model.mask_decoder(
                    image_embeddings=image,
                    image_pe=image_pe,
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,  # channel 0 (segment-anything's slice(0, 1))
                )
                scores = iou[:, 0]
            self.decoder_calls += 1
            self.points_decoded += len(chunk)
            logits = self.model.postprocess_masks(low_res[:, channel], input_size, size)
            yield logits[:, 0], scores

    def decode(
        self, embeddings: tuple[torch.Tensor, torch.Tensor | None], size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All grid prompts -> ((N, H, W) bool masks at ``size``, (N,) scores)."""
        masks, scores = [], []
        for logits, score in self.decode_logits(embeddings, size):
            masks.append(logits > self.model.mask_threshold)
            scores.append(score)
        return torch.cat(masks), torch.cat(scores)

    def filter_masks(
        self, masks: torch.Tensor, scores: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Empty masks out, box NMS, border (background) masks out; sorted by score."""
        from segment_anything.utils.amg import batched_mask_to_box
        from torchvision.ops import nms

        keep = masks.flatten(1).any(1)
        masks, scores = masks[keep], scores[keep]
        if len(masks):
            boxes = batched_mask_to_box(masks).float()
            keep = nms(boxes, scores.float(), self.params.nms_iou)
            masks, scores = masks[keep], scores[keep]
            keep = border_coverage(masks) <= self.params.border_fraction
            masks, scores = masks[keep], scores[keep]
        return masks.cpu().numpy(), scores.float().cpu().numpy()

    def segment_frame(
        self, flow_images: list[np.ndarray], rgb: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of one frame: ((K, H, W) bool masks, (K,) scores), K before the top-k cut."""
        size = flow_images[0].shape[:2]
        masks, scores = self.decode(self.frame_embeddings(flow_images, rgb), size)
        return self.filter_masks(masks, scores)


def expected_decoder_calls(gridside: int, points_per_batch: int) -> int:
    return math.ceil(gridside * gridside / points_per_batch)
