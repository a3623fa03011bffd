"""FlowP-SAM / FlowI-SAM: checkpoint layout, strict loading, missing weights, the stage path."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from test_segment import dis_flow, panning_clip, write_flow_file, write_shard_csv

from flowguide.cli import main
from flowguide.segment.flowp import FlowPSam, build_flowp_decoder
from flowguide.segment.sam import SamParams, SamSegmenter, expected_decoder_calls
from flowguide.segment.stage import run_segment
from flowguide.segment.tiny import build_tiny_flowp, build_tiny_sam, tiny_flowp_decoder
from flowguide.segment.weights import build_segmentation_model, load_strict
from flowguide.utils.checkpoints import MissingWeightsError
from flowguide.utils.failures import FlowguideError
from flowguide.utils.video import write_video

# --- the released layout, written out by hand from the authors' code -------------------------

D = 256  # SAM's prompt/decoder width


def attention_shapes(prefix: str, internal: int) -> dict[str, tuple[int, ...]]:
    out = {}
    for proj in ("q_proj", "k_proj", "v_proj"):
        out[f"{prefix}.{proj}.weight"] = (internal, D)
        out[f"{prefix}.{proj}.bias"] = (internal,)
    out[f"{prefix}.out_proj.weight"] = (D, internal)
    out[f"{prefix}.out_proj.bias"] = (D,)
    return out


def flow_layer_shapes(i: int) -> dict[str, tuple[int, ...]]:
    p = f"transformer.flow_layers.{i}"
    out = attention_shapes(f"{p}.self_attn", D)
    out |= attention_shapes(f"{p}.cross_attn_token_to_image", D // 2)
    out |= attention_shapes(f"{p}.cross_attn_image_to_token", D // 2)
    out |= {f"{p}.mlp.lin1.weight": (512, D), f"{p}.mlp.lin1.bias": (512,)}
    out |= {f"{p}.mlp.lin2.weight": (D, 512), f"{p}.mlp.lin2.bias": (D,)}
    for n in (1, 2, 3, 4):
        out |= {f"{p}.norm{n}.weight": (D,), f"{p}.norm{n}.bias": (D,)}
    return out


def test_flowp_decoder_has_the_released_checkpoint_layout():
    """Key names and shapes of the real-size decoder (on the meta device: nothing allocated):
    segment-anything's MaskDecoder keys plus the 80 FlowP tensors (1.7 M parameters)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in build_flowp_decoder().state_dict().items()}
        sam = {
            k: tuple(v.shape)
            for k, v in sam_model_registry["vit_b"]().mask_decoder.state_dict().items()
        }
    extra = {"obj_token.weight": (1, D), "prompt_tokens.weight": (4, D)}
    extra |= {
        "obj_prediction_head.layers.0.weight": (D, D),
        "obj_prediction_head.layers.0.bias": (D,),
    }
    extra |= {
        "obj_prediction_head.layers.1.weight": (D, D),
        "obj_prediction_head.layers.1.bias": (D,),
    }
    extra |= {
        "obj_prediction_head.layers.2.weight": (1, D),
        "obj_prediction_head.layers.2.bias": (1,),
    }
    extra |= flow_layer_shapes(0) | flow_layer_shapes(1)
    assert ours == sam | extra
    assert len(extra) == 80
    assert sum(math.prod(s) for s in extra.values()) == 1_716_225
    assert ours["iou_prediction_head.layers.2.weight"] == (4, D)  # fIoU for each of 4 masks


def test_flowp_encoders_are_the_released_sizes():
    """FlowP-SAM pairs a ViT-H RGB encoder with a ViT-B flow encoder (checked on meta)."""
    from segment_anything import sam_model_registry

    from flowguide.segment.weights import required_files

    with torch.device("meta"):
        vit_h = sam_model_registry["vit_h"]().image_encoder
        vit_b = sam_model_registry["vit_b"]().image_encoder
    assert vit_h.patch_embed.proj.out_channels == 1280 and len(vit_h.blocks) == 32
    assert vit_b.patch_embed.proj.out_channels == 768 and len(vit_b.blocks) == 12
    roles = [f.role for f in required_files(SamParams())]  # schema defaults
    assert roles == [
        "SAM vit_h (RGB encoder and prompt encoder)",
        "SAM vit_b (flow encoder)",
        "FlowP-SAM decoder",
    ]


# --- strict loading ---------------------------------------------------------------------------


@pytest.fixture
def tiny_registry(monkeypatch):
    """segment-anything's builders and our decoder builder at tiny sizes (same key layout)."""
    import segment_anything

    import flowguide.segment.flowp as flowp

    for name in ("vit_b", "vit_h"):
        monkeypatch.setitem(
            segment_anything.sam_model_registry, name, lambda checkpoint=None: build_tiny_sam()
        )
    monkeypatch.setattr(flowp, "build_flowp_decoder", tiny_flowp_decoder)


def write_flowp_files(tmp_path, decoder_state):
    torch.save(build_tiny_sam(seed=1).state_dict(), tmp_path / "sam_vit_h_4b8939.pth")
    torch.save(build_tiny_sam(seed=2).state_dict(), tmp_path / "sam_vit_b_01ec64.pth")
    # The authors' training script saves {'model_state_dict': decoder, 'optimizer_state_dict'}.
    torch.save(
        {"model_state_dict": decoder_state, "optimizer_state_dict": {"state": {}}},
        tmp_path / "flowpsam.pth",
    )
    return SamParams(
        mode="flowp",
        rgb_checkpoint=str(tmp_path / "sam_vit_h_4b8939.pth"),
        checkpoint=str(tmp_path / "sam_vit_b_01ec64.pth"),
        flowsam_checkpoint=str(tmp_path / "flowpsam.pth"),
    )


def test_flowp_checkpoint_loads_strictly_every_key_used_wrong_key_named(tmp_path, tiny_registry):
    source = build_tiny_flowp(seed=5).mask_decoder.state_dict()
    params = write_flowp_files(tmp_path, source)
    model, provenance = build_segmentation_model(params)
    assert isinstance(model, FlowPSam)
    loaded = model.mask_decoder.state_dict()
    assert loaded.keys() == source.keys()
    for key, value in source.items():  # every tensor of the file landed in the model
        assert torch.equal(loaded[key], value), key
    # RGB encoder and prompt encoder from the ViT-H file, flow encoder from the ViT-B file
    rgb_sam = torch.load(tmp_path / "sam_vit_h_4b8939.pth", weights_only=True)
    flow_sam = torch.load(tmp_path / "sam_vit_b_01ec64.pth", weights_only=True)
    key = "patch_embed.proj.weight"
    assert torch.equal(model.rgb_encoder.state_dict()[key], rgb_sam[f"image_encoder.{key}"])
    assert torch.equal(model.flow_encoder.state_dict()[key], flow_sam[f"image_encoder.{key}"])
    pe = "pe_layer.positional_encoding_gaussian_matrix"
    assert torch.equal(model.prompt_encoder.state_dict()[pe], rgb_sam[f"prompt_encoder.{pe}"])
    import hashlib

    digest = hashlib.sha256((tmp_path / "flowpsam.pth").read_bytes()).hexdigest()
    assert provenance[2] == {
        "role": "FlowP-SAM decoder",
        "key": "segment.sam.flowsam_checkpoint",
        "file": "flowpsam.pth",
        "sha256": digest,
    }

    renamed = dict(source)
    renamed["obj_tokn.weight"] = renamed.pop("obj_token.weight")
    write_flowp_files(tmp_path, renamed)
    with pytest.raises(
        FlowguideError,
        match=r"missing key\(s\): obj_token.weight.*unexpected key\(s\): obj_tokn.weight",
    ):
        build_segmentation_model(params)
    reshaped = dict(source, **{"prompt_tokens.weight": torch.zeros(3, 32)})
    write_flowp_files(tmp_path, reshaped)
    with pytest.raises(
        FlowguideError, match=r"prompt_tokens.weight \(3, 32\) \(expected \(4, 32\)\)"
    ):
        build_segmentation_model(params)
    # a FlowI-SAM (plain MaskDecoder) file given for FlowP: the FlowP keys are named missing
    write_flowp_files(tmp_path, build_tiny_sam().mask_decoder.state_dict())
    # (one tiny flow layer: 36 tensors, + obj_token, prompt_tokens, a 2-layer MOS head: 42)
    with pytest.raises(
        FlowguideError, match=r"missing key\(s\): transformer.flow_layers.0.*42 in all"
    ):
        build_segmentation_model(params)


def test_every_flowp_decoder_tensor_drives_the_outputs_but_the_unused_reference_ones():
    """Gradients of all outputs reach every decoder tensor except the flow layers'
    image-to-token attention and norm4, which the authors' forward never runs either."""
    model = build_tiny_flowp(seed=3)
    seg = SamSegmenter(model, SamParams(mode="flowp", gridside=2))
    rng = np.random.default_rng(0)
    image, flow = seg.frame_embeddings(
        [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)],
        rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
    )
    coords = torch.tensor([[[10.0, 12.0]], [[40.0, 30.0]]])
    sparse, dense = model.prompt_encoder(points=(coords, torch.ones(2, 1)), boxes=None, masks=None)
    masks, fiou, mos = model.mask_decoder(
        image, flow, model.prompt_encoder.get_dense_pe(), sparse, dense
    )
    assert masks.shape[:2] == (2, 4) and fiou.shape == (2, 4) and mos.shape == (2, 1)
    assert ((mos > 0) & (mos < 1)).all()  # sigmoid
    (masks.sum() + fiou.sum() + mos.sum()).backward()
    unused = {
        n for n, _ in model.mask_decoder.named_parameters()
        if ".flow_layers." in n and (".cross_attn_image_to_token." in n or ".norm4." in n)
    }  # fmt: skip
    assert len(unused) == 10  # 8 attention + 2 norm tensors in the single tiny flow layer
    for name, p in model.mask_decoder.named_parameters():
        if name in unused:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- no silent fallback -----------------------------------------------------------------------


def test_missing_checkpoints_are_all_listed_in_one_error(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        build_segmentation_model(SamParams(mode="flowp"))
    text = str(err.value)
    for key in ("segment.sam.rgb_checkpoint", "segment.sam.checkpoint",
                "segment.sam.flowsam_checkpoint"):  # fmt: skip
        assert f"set {key};" in text
    assert "sam_vit_h_4b8939.pth" in text and "sam_vit_b_01ec64.pth" in text
    assert "drive.google.com" in text and "3 missing" in text
    present = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({}, present)
    with pytest.raises(MissingWeightsError) as err:
        build_segmentation_model(SamParams(mode="flowi", checkpoint=str(present)))
    assert "1 missing" in str(err.value) and "FlowI-SAM decoder" in str(err.value)
    with pytest.raises(FlowguideError, match="sam_on_flow"):
        build_segmentation_model(
            SamParams(mode="sam_on_flow", checkpoint=str(present), flowsam_checkpoint="x.pth")
        )


def test_sam_backend_without_flowsam_checkpoint_stops_and_lists_the_files(tmp_path, capsys):
    write_flow_file(tmp_path / "flow.h5", {"v": dis_flow(panning_clip(n_frames=2)[0])})
    write_shard_csv(tmp_path / "shard.csv", ["v"], 2)
    args = ["segment", "--shard", str(tmp_path / "shard.csv"), "--flow", str(tmp_path / "flow.h5"),
            "--out", str(tmp_path / "c.h5"), "--failures", str(tmp_path / "f.csv"), "--device",
            "cpu", "--options"]  # fmt: skip
    sam_b = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(build_tiny_sam().state_dict(), sam_b)
    # A SAM checkpoint alone does not run plain SAM behind the user's back (mode flowi).
    options = {"backend": "sam", "sam": {"mode": "flowi", "checkpoint": str(sam_b)}}
    assert main([*args, json.dumps(options)]) == 2
    err = capsys.readouterr().err
    assert "FlowI-SAM decoder: (not set) -> set segment.sam.flowsam_checkpoint" in err
    assert not (tmp_path / "c.h5").exists()


# --- the stage with FlowP-SAM ---------------------------------------------------------------------


def test_flowp_stage_ranks_label_maps_decodes_every_prompt_and_records_mode(tmp_path, monkeypatch):
    frames, _ = panning_clip(n_frames=3, height=40, width=56)
    write_video(tmp_path / "v.mp4", frames, fps=25)
    write_flow_file(tmp_path / "flow.h5", {"v": dis_flow(frames)})
    write_shard_csv(tmp_path / "shard.csv", ["v"], 3)
    text = (tmp_path / "shard.csv").read_text().replace("none.mp4", str(tmp_path / "v.mp4"))
    (tmp_path / "shard.csv").write_text(text)
    captured = []
    original = SamSegmenter.filter_masks

    def spy(self, masks, scores):
        out = original(self, masks, scores)
        captured.append((masks.clone(), scores.clone(), out, self.points_decoded))
        return out

    monkeypatch.setattr(SamSegmenter, "filter_masks", spy)
    options = {
        "backend": "sam", "max_objects": 4,
        "sam": {"mode": "flowp", "gridside": 5, "points_per_batch": 7, "nms_iou": 0.7,
                "border_fraction": 0.5},
    }  # fmt: skip
    paths = [tmp_path / n for n in ("shard.csv", "flow.h5", "c.h5", "f.csv")]
    assert run_segment(*paths, options, "cpu", True, build_tiny_flowp()) == 1
    assert [c[3] for c in captured] == [25, 50, 75]
    with h5py.File(tmp_path / "c.h5") as fh:
        labels, scores = fh["videos/v/labels"][()], fh["videos/v/scores"][()]
        assert fh.attrs["sam_mode"] == "flowp"
        prompts = json.loads(fh.attrs["sam_prompts"])
        assert prompts["score"].startswith("fIoU") and "MOS" in prompts["score"]
        assert prompts["gridside"] == 5 and prompts["mask_channel"] == 0
    for t, (raw_masks, raw_scores, (_, kept_scores), _) in enumerate(captured):
        # independent filter: non-empty, greedy box NMS by score, border coverage <= 0.5
        m = raw_masks.numpy()
        s = raw_scores.numpy()
        boxes = []
        for k in range(len(m)):
            ys, xs = np.nonzero(m[k])
            boxes.append((xs.min(), ys.min(), xs.max(), ys.max()) if len(xs) else None)
        chosen = []
        for k in np.argsort(-s, kind="stable"):
            if boxes[k] is None:
                continue
            if all(box_iou(boxes[k], boxes[j]) <= 0.7 for j in chosen):
                chosen.append(k)
        edge = [(m[k][0].mean() + m[k][-1].mean() + m[k][:, 0].mean() + m[k][:, -1].mean()) / 4
                for k in range(len(m))]  # fmt: skip
        chosen = [k for k in chosen if edge[k] <= 0.5]
        np.testing.assert_allclose(np.sort(kept_scores)[::-1], s[chosen], rtol=1e-6)
        order = chosen[:4]
        np.testing.assert_allclose(scores[t, : len(order)], s[order], rtol=1e-6)
        assert np.isnan(scores[t, len(order) :]).all()
        expected = np.zeros(labels.shape[1:], np.uint8)
        for rank, k in enumerate(order, start=1):
            expected[(expected == 0) & m[k]] = rank
        np.testing.assert_array_equal(labels[t], expected)


def box_iou(a, b) -> float:
    """IoU of inclusive pixel boxes (x0, y0, x1, y1) as torchvision's nms sees them (x1 - x0)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


@pytest.mark.parametrize("mode", ["flowp", "flowi"])
def test_no_prompt_dropped_for_any_gridside(mode):
    model = build_tiny_flowp() if mode == "flowp" else build_tiny_sam()
    rng = np.random.default_rng(1)
    flow_images = [rng.integers(0, 255, (20, 28, 3), dtype=np.uint8) for _ in range(2)]
    rgb = rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)
    for gridside in range(1, 12):
        seg = SamSegmenter(model, SamParams(mode=mode, gridside=gridside, points_per_batch=10))
        masks, scores = seg.decode(seg.frame_embeddings(flow_images, rgb), (20, 28))
        assert len(masks) == len(scores) == gridside * gridside  # authors drop n^2 mod 10
        assert seg.points_decoded == gridside * gridside
        assert seg.decoder_calls == expected_decoder_calls(gridside, 10) == -(-(gridside**2) // 10)


def test_mode_and_model_must_agree():
    with pytest.raises(FlowguideError, match="does not match"):
        SamSegmenter(build_tiny_sam(), SamParams(mode="flowp"))
    with pytest.raises(FlowguideError, match="does not match"):
        SamSegmenter(build_tiny_flowp(), SamParams(mode="flowi"))
    with pytest.raises(FlowguideError, match="needs the RGB frame"):
        SamSegmenter(build_tiny_flowp(), SamParams(mode="flowp")).frame_embeddings(
            [np.zeros((8, 8, 3), np.uint8)], None
        )


def test_load_strict_names_the_keys():
    decoder = build_tiny_sam().mask_decoder
    state = decoder.state_dict()
    state.pop("iou_token.weight")
    with pytest.raises(
        FlowguideError, match=r"x.pth: not a D checkpoint: missing key\(s\): iou_token.weight"
    ):
        load_strict(decoder, state, "x.pth", "D")


def test_the_workflow_stops_at_load_listing_every_missing_weight_file(tmp_path, monkeypatch):
    """The Diving48 recipe without weights: RAFT, both SAMs and FlowP-SAM, one error."""
    from flowguide.config import validate_config
    from flowguide.segment.weights import check_workflow_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = validate_config(
        {
            "dataset": {"kind": "diving48", "root": str(tmp_path)},
            "flow": {"backend": "raft_large"},
            "segment": {"backend": "sam", "sam": {"checkpoint": str(tmp_path / "b.pth")}},
        }
    )
    with pytest.raises(MissingWeightsError) as err:
        check_workflow_weights(config)
    text = str(err.value)
    assert "needs 4 missing weight file(s)" in text
    for key in ("flow.weights", "segment.sam.rgb_checkpoint", "segment.sam.checkpoint",
                "segment.sam.flowsam_checkpoint"):  # fmt: skip
        assert f"-> set {key};" in text
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "raft_large_C_T_SKHT_V2") in text
    weight_free = {"backend": "dis"}, {"backend": "motion"}
    check_workflow_weights(validate_config({"dataset": {"kind": "synthdive"},
                           "flow": weight_free[0], "segment": weight_free[1]}))  # fmt: skip
