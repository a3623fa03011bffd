"""FlowSAM-style candidates with segment-anything: SAM prompted by a grid of points on flow.

Per frame the images are encoded once: ``flowi`` (FlowI-SAM) encodes the flow colour image of
every gap and averages the embeddings over gaps, as the official FlowI-SAM does; ``flowp`` is a
simple FlowP-style fusion: the mean of the RGB frame's embedding and the gap-averaged flow
embedding (the official FlowP-SAM instead feeds the flow through a trained flow prompt
generator, whose weights segment-anything's decoder cannot hold). A grid of gridside^2 positive
point prompts (cell centres) is decoded in ceil(gridside^2 / points_per_batch) batched decoder
calls, every prompt decoded once. The decoder runs with ``multimask_output=False`` (its first,
single-object mask token, the channel the official FlowSAM evaluation uses), scored by the
predicted IoU. Masks then go through box NMS (``nms_iou``), border filtering (mean coverage of
the four image edges above ``border_fraction`` = background, FlowSAM's ``is_bg_mask``), and the
top ``max_objects`` are kept.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flowguide.utils.checkpoints import MissingWeightsError, load_weights
from flowguide.utils.failures import FlowguideError

SAM_HINT = (
    "SAM checkpoints: https://github.com/facebookresearch/segment-anything#model-checkpoints "
    "(e.g. sam_vit_b_01ec64.pth); set segment.sam.checkpoint in config.yaml."
)


@dataclass(frozen=True)
class SamParams:
    checkpoint: str | None = None
    model_type: str = "vit_b"
    flowsam_checkpoint: str | None = None
    mode: str = "flowi"
    gridside: int = 20
    points_per_batch: int = 64
    nms_iou: float = 0.9
    border_fraction: float = 0.5
    max_objects: int = 10

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SamParams:
        return cls(max_objects=int(options.get("max_objects", 10)), **dict(options.get("sam", {})))


def build_sam_model(params: SamParams) -> torch.nn.Module:
    """SAM of ``model_type`` with weights from ``checkpoint`` (never downloaded)."""
    from segment_anything import sam_model_registry

    if not params.checkpoint:
        raise MissingWeightsError(
            "segment.backend is 'sam' but segment.sam.checkpoint is not set. " + SAM_HINT
        )
    state = load_weights(params.checkpoint, f"SAM {params.model_type}", SAM_HINT)
    sam = sam_model_registry[params.model_type](checkpoint=None)
    load_state(sam, state, params.checkpoint)
    if params.flowsam_checkpoint:
        load_flowsam_decoder(sam, params.flowsam_checkpoint, params.mode)
    return sam.eval()


def build_tiny_sam(img_size: int = 64, dim: int = 32, seed: int = 0) -> torch.nn.Module:
    """A tiny random-weight SAM built from segment-anything's own modules (one ViT block, one
    two-way transformer layer): the real backend's code path at CPU speed, for tests and CPU
    benchmarks. Random weights time like trained ones; their masks mean nothing."""
    from functools import partial

    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    patch = 8
    encoder = ImageEncoderViT(
        img_size=img_size,
        patch_size=patch,
        embed_dim=dim,
        depth=1,
        num_heads=2,
        mlp_ratio=2,
        out_chans=dim,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=False,
        window_size=0,
        global_attn_indexes=(),
    )
    prompt = PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(img_size // patch,) * 2,
        input_image_size=(img_size, img_size),
        mask_in_chans=4,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer_dim=dim,
        iou_head_depth=2,
        iou_head_hidden_dim=32,
        transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
    )
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


def load_state(module: torch.nn.Module, state: Any, path: str | os.PathLike) -> None:
    if not isinstance(state, dict):
        raise FlowguideError(f"{path}: expected a state dict, found {type(state).__name__}")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise FlowguideError(f"{path}: weights do not match the model: {exc}") from exc


def load_flowsam_decoder(sam: torch.nn.Module, path: str | os.PathLike, mode: str) -> None:
    """Load an official FlowI-SAM checkpoint (``{'model_state_dict': mask decoder state}``).

    FlowI-SAM's decoder has exactly segment-anything's MaskDecoder parameters (its IoU head
    predicts foreground IoU instead). FlowP-SAM's checkpoint adds a flow prompt generator and a
    moving-object-score head that this decoder has no place for, so it is refused.
    """
    if mode != "flowi":
        raise FlowguideError(
            f"{path}: FlowSAM decoder checkpoints are supported for mode 'flowi' only "
            "(FlowP-SAM's flow prompt generator is not part of segment-anything's decoder)"
        )
    state = load_weights(path, "FlowI-SAM decoder")
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    load_state(sam.mask_decoder, state, path)


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
    """Runs one SAM over frames; counts decoder calls and decoded points for the benchmark."""

    def __init__(self, sam: torch.nn.Module, params: SamParams, device: str | torch.device = "cpu"):
        from segment_anything.utils.transforms import ResizeLongestSide

        self.sam = sam.to(device).eval()
        self.params = params
        self.device = torch.device(device)
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.decoder_calls = 0
        self.points_decoded = 0

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        resized = self.transform.apply_image(np.ascontiguousarray(image, dtype=np.uint8))
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).float()
        return self.sam.preprocess(tensor[None])

    @torch.no_grad()
    def encode(self, images: list[np.ndarray]) -> torch.Tensor:
        """Mean image embedding (1, C, h, w) of ``images``, encoded in one batched call."""
        batch = torch.cat([self._prepare(im) for im in images])
        return self.sam.image_encoder(batch).mean(0, keepdim=True)

    def frame_embedding(
        self, flow_images: list[np.ndarray], rgb: np.ndarray | None
    ) -> torch.Tensor:
        flow_embedding = self.encode(flow_images)
        if self.params.mode == "flowi":
            return flow_embedding
        if rgb is None:
            raise FlowguideError("segment.sam.mode 'flowp' needs the RGB frame")
        return (self.encode([rgb]) + flow_embedding) / 2

    @torch.no_grad()
    def decode(
        self, embedding: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All grid prompts -> ((N, H, W) bool masks at ``size``, (N,) predicted IoU)."""
        points = prompt_grid(*size, self.params.gridside)
        coords = torch.as_tensor(
            self.transform.apply_coords(points, size), dtype=torch.float32, device=self.device
        )
        input_size = self.transform.get_preprocess_shape(*size, self.transform.target_length)
        image_pe = self.sam.prompt_encoder.get_dense_pe()
        batch = self.params.points_per_batch
        masks, scores = [], []
        for start in range(0, len(coords), batch):
            chunk = coords[start : start + batch, None, :]  # (B, 1, 2): one positive point each
            labels = torch.ones(chunk.shape[:2], dtype=torch.int, device=self.device)
            sparse, dense = self.sam.prompt_encoder(points=(chunk, labels), boxes=None, masks=None)
            low_res, iou = self.sam.mask_decoder(
                image_embeddings=embedding,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            self.decoder_calls += 1
            self.points_decoded += len(chunk)
            logits = self.sam.postprocess_masks(low_res, input_size, size)
            masks.append(logits[:, 0] > self.sam.mask_threshold)
            scores.append(iou[:, 0])
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
        masks, scores = self.decode(self.frame_embedding(flow_images, rgb), size)
        return self.filter_masks(masks, scores)


def expected_decoder_calls(gridside: int, points_per_batch: int) -> int:
    return math.ceil(gridside * gridside / points_per_batch)
