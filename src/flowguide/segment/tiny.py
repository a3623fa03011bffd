"""Tiny random-weight models built from segment-anything's modules, for tests and CPU benchmarks.

They run the real backend's code paths at CPU speed; random weights time like trained ones,
their masks mean nothing.
"""

from __future__ import annotations

from functools import partial

import torch


def tiny_encoder(img_size: int, dim: int, patch: int = 8) -> torch.nn.Module:
    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
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


def tiny_prompt_encoder(img_size: int, dim: int, patch: int = 8) -> torch.nn.Module:
    from segment_anything.modeling import PromptEncoder

    return PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(img_size // patch,) * 2,
        input_image_size=(img_size, img_size),
        mask_in_chans=4,
    )


def build_tiny_sam(img_size: int = 64, dim: int = 32, seed: int = 0) -> torch.nn.Module:
    """A SAM with one ViT block and one two-way transformer layer."""
    from segment_anything.modeling import MaskDecoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer_dim=dim,
        iou_head_depth=2,
        iou_head_hidden_dim=32,
        transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
    )
    return Sam(
        image_encoder=tiny_encoder(img_size, dim),
        prompt_encoder=tiny_prompt_encoder(img_size, dim),
        mask_decoder=decoder,
    ).eval()


def tiny_flowp_decoder(dim: int = 32) -> torch.nn.Module:
    """A one-layer FlowP decoder with the authors' parameter names (the flow MLP keeps their
    fixed width 512)."""
    from flowguide.segment.flowp import FlowPMaskDecoder, FlowPTransformer

    return FlowPMaskDecoder(
        transformer_dim=dim,
        transformer=FlowPTransformer(depth=1, embedding_dim=dim, num_heads=2, mlp_dim=64),
        iou_head_depth=2,
        iou_head_hidden_dim=32,
    )


def build_tiny_flowp(img_size: int = 64, dim: int = 32, seed: int = 0) -> torch.nn.Module:
    """A FlowP-SAM with tiny RGB and flow encoders and a one-layer FlowP decoder."""
    from flowguide.segment.flowp import FlowPSam

    torch.manual_seed(seed)
    decoder = tiny_flowp_decoder(dim)
    return FlowPSam(
        tiny_encoder(img_size, dim),
        tiny_encoder(img_size, dim),
        tiny_prompt_encoder(img_size, dim),
        decoder,
    ).eval()
