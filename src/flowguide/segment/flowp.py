"""FlowP-SAM (Xie et al., ACCV 2024) built from segment-anything's modules.

FlowP-SAM segments the RGB frame with SAM's decoder, and prompts it with flow: a *flow prompt
generator* (a two-layer "flow transformer") reads the gap-averaged flow embedding with four
learnt flow prompt tokens, a moving-object-score (MOS) token and the point prompt; its four
prompt outputs join the decoder's tokens. The decoder predicts four masks with a foreground IoU
(fIoU) each, and the flow transformer's MOS token a moving-object score (sigmoid).

The ``state_dict`` layout (names and shapes) is the one of the authors' released FlowP-SAM
checkpoints (``{'model_state_dict': <mask decoder state>}``, github.com/Jyxarthur/flowsam):
segment-anything's MaskDecoder keys plus ``obj_token``, ``prompt_tokens``,
``obj_prediction_head.*`` and ``transformer.flow_layers.{0,1}.*``. Each flow layer has the
parameters of a segment-anything TwoWayAttentionBlock (its MLP 512 wide) of which the authors'
forward runs only the first three steps: ``cross_attn_image_to_token`` and ``norm4`` of the flow
layers are in the checkpoint (and loaded) but never used, exactly as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor, nn

FLOW_PROMPT_TOKENS = 4  # learnt flow prompt tokens fed to the flow transformer
FLOW_MLP_DIM = 512  # the flow transformer's lighter MLP (the decoder's is 2048)
# Token order in the authors' layout: MOS, fIoU, the mask tokens, the flow prompt tokens, then
# the sparse prompt (one point + the padding point segment-anything adds without a box).
SPARSE_TOKENS = 2


class FlowPromptLayer(TwoWayAttentionBlock):
    """One flow-transformer layer: self-attention, tokens-to-flow cross-attention, MLP.

    Subclasses TwoWayAttentionBlock so that the parameter names match the checkpoint; the
    image-to-token step of the parent is not run (see the module docstring)."""

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> Tensor:  # type: ignore[override]
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        q = queries + query_pe
        queries = queries + self.cross_attn_token_to_image(q=q, k=keys + key_pe, v=keys)
        queries = self.norm2(queries)
        queries = queries + self.mlp(queries)
        return self.norm3(queries)


class FlowPTransformer(nn.Module):
    """Flow transformer (``flow_layers``) followed by SAM's two-way transformer (``layers``)."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        flow_mlp_dim: int = FLOW_MLP_DIM,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim

        def block(cls: type[TwoWayAttentionBlock], mlp: int, first: bool) -> nn.Module:
            return cls(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=first,
            )

        self.flow_layers = nn.ModuleList(
            block(FlowPromptLayer, flow_mlp_dim, i == 0) for i in range(depth)
        )
        self.layers = nn.ModuleList(
            block(TwoWayAttentionBlock, mlp_dim, i == 0) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image: Tensor,
        flow: Tensor,
        image_pe: Tensor,
        mos_token: Tensor,
        decoder_tokens: Tensor,
        prompt_tokens: Tensor,
        sparse: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(B,C,h,w) image/flow embeddings, (B,C,h,w) positional encoding and (B,n,C) tokens ->
        (flow-transformer queries, decoder queries, updated image keys)."""
        image = image.flatten(2).permute(0, 2, 1)
        flow = flow.flatten(2).permute(0, 2, 1)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)

        # Flow prompt generator: MOS token, flow prompt tokens and the point attend to the flow.
        flow_tokens = torch.cat([mos_token, prompt_tokens, sparse[:, :1]], dim=1)
        flow_queries = flow_tokens
        for layer in self.flow_layers:
            flow_queries = layer(flow_queries, flow, flow_tokens, image_pe)
        flow_prompts = flow_queries[:, 1 : 1 + prompt_tokens.shape[1]]

        # SAM's decoder on the RGB embedding, the flow prompts among its tokens.
        tokens = torch.cat([decoder_tokens, flow_prompts, sparse], dim=1)
        queries, keys = tokens, image
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=image_pe)
        attn = self.final_attn_token_to_image(q=queries + tokens, k=keys + image_pe, v=keys)
        queries = self.norm_final_attn(queries + attn)
        return flow_queries, queries, keys


class FlowPMaskDecoder(MaskDecoder):
    """segment-anything's MaskDecoder plus the MOS token/head and the flow prompt tokens."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: FlowPTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            activation=activation,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.obj_token = nn.Embedding(1, transformer_dim)
        self.prompt_tokens = nn.Embedding(FLOW_PROMPT_TOKENS, transformer_dim)
        self.obj_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, 1, iou_head_depth, sigmoid_output=True
        )

    def forward(  # type: ignore[override]
        self,
        image_embeddings: Tensor,
        flow_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> (B, 4, h, w) low-resolution mask logits, (B, 4) fIoU, (B, 1) MOS (all channels:
        the authors evaluate with ``multimask_output=True``, which keeps channel 0 too)."""
        batch = sparse_prompt_embeddings.shape[0]
        if sparse_prompt_embeddings.shape[1] != SPARSE_TOKENS:
            raise ValueError(
                "FlowP-SAM takes exactly one point prompt per mask (the authors' token layout); "
                f"got {sparse_prompt_embeddings.shape[1]} sparse tokens"
            )

        def expand(weight: Tensor) -> Tensor:
            return weight.unsqueeze(0).expand(batch, -1, -1)

        decoder_tokens = expand(torch.cat([self.iou_token.weight, self.mask_tokens.weight]))
        # One image per frame, every prompt of the batch decoded against it.
        src = image_embeddings.expand(batch, -1, -1, -1) + dense_prompt_embeddings
        flow = flow_embeddings.expand(batch, -1, -1, -1)
        pos = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape
        flow_out, hs, src = self.transformer(
            src,
            flow,
            pos,
            expand(self.obj_token.weight),
            decoder_tokens,
            expand(self.prompt_tokens.weight),
            sparse_prompt_embeddings,
        )
        mask_tokens = hs[:, 1 : 1 + self.num_mask_tokens]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 0]), self.obj_prediction_head(flow_out[:, 0])


def build_flowp_decoder(
    transformer_dim: int = 256,
    depth: int = 2,
    num_heads: int = 8,
    mlp_dim: int = 2048,
    iou_head_depth: int = 3,
    iou_head_hidden_dim: int = 256,
) -> FlowPMaskDecoder:
    """The decoder of the released FlowP-SAM with the defaults (SAM's decoder sizes)."""
    return FlowPMaskDecoder(
        transformer_dim=transformer_dim,
        transformer=FlowPTransformer(depth, transformer_dim, num_heads, mlp_dim),
        num_multimask_outputs=3,
        iou_head_depth=iou_head_depth,
        iou_head_hidden_dim=iou_head_hidden_dim,
    )


class FlowPSam(nn.Module):
    """RGB encoder + flow encoder + prompt encoder (from the RGB SAM) + FlowP decoder.

    The same parts as the authors' ``FlowPSAM``; pre- and post-processing as segment-anything's
    ``Sam`` (normalise, pad to the encoder's square input; upsample, crop, resize)."""

    mask_threshold: float = 0.0

    def __init__(
        self,
        rgb_encoder: nn.Module,
        flow_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: FlowPMaskDecoder,
        pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
        pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
    ) -> None:
        super().__init__()
        if rgb_encoder.img_size != flow_encoder.img_size:
            raise ValueError(
                f"RGB and flow encoders take different input sizes "
                f"({rgb_encoder.img_size} vs {flow_encoder.img_size})"
            )
        self.rgb_encoder = rgb_encoder
        self.flow_encoder = flow_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def img_size(self) -> int:
        return int(self.rgb_encoder.img_size)

    def preprocess(self, x: Tensor) -> Tensor:
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(
        self, masks: Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> Tensor:
        masks = F.interpolate(masks, (self.img_size,) * 2, mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
