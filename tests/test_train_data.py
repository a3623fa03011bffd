"""Training data: dynamic temporal stride, transforms with masks that follow the geometry,
RandAugment reuse, and the dataset reading clips and bit-packed masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import flowguide.utils.compat  # noqa: F401
from flowguide.clips.dataset import ClipDataset, split_by_mask_availability
from flowguide.clips.sampling import (
    draw_offset,
    frame_indices,
    repeated_slots,
    sample_indices,
)
from flowguide.clips.transforms import (
    MASK_OPS,
    ClipTransform,
    JointRandAugment,
    TransformSpec,
    frames_to_tensor,
    masks_to_tensor,
    normalize,
)
from flowguide.utils.h5 import create_video_group, write_masks, write_shard
from flowguide.utils.manifest import read_manifest
from flowguide.utils.video import read_frames, write_video

# --- a tiny dataset the loop tests reuse -----------------------------------------------------

FRAME_H, FRAME_W, MASK_SCALE = 32, 48, 2  # masks stored at half size, like flow-size masks


def square_masks(n_frames: int, label: int, vid: int) -> np.ndarray:
    """(T, H, W) bool: an 8x8 square moving one way per class, on even coordinates (so the
    half-size stored mask upsamples back exactly)."""
    masks = np.zeros((n_frames, FRAME_H, FRAME_W), dtype=bool)
    for t in range(n_frames):
        step = 2 * t if label % 2 == 0 else -2 * t
        x = (8 + 2 * vid + step) % (FRAME_W - 8) // 2 * 2
        y = 8 + 4 * (label // 2)
        masks[t, y : y + 8, x : x + 8] = True
    return masks


def make_dataset(root: Path, n_per_class: int = 3, n_classes: int = 2, n_frames: int = 10,
                 n_test: int = 1) -> tuple[Path, Path]:  # fmt: skip
    """Videos (white square on a dark background), manifest.csv, masks/<shard>.h5."""
    rows, true_masks = [], {}
    videos = root / "rgb"
    for split, per_class in (("train", n_per_class), ("test", n_test)):
        for label in range(n_classes):
            for vid in range(per_class):
                name = f"{split}_{label}_{vid}"
                masks = square_masks(n_frames, label, vid)
                frames = np.full((n_frames, FRAME_H, FRAME_W, 3), 30 + 40 * label, np.uint8)
                frames[masks] = 255
                path = videos / f"{name}.mp4"
                write_video(path, frames, fps=25, qscale=2)
                true_masks[name] = masks
                rows.append({
                    "vid_name": name, "split": split, "label": label, "path": str(path),
                    "start_frame": 0, "end_frame": n_frames - 1, "n_frames": n_frames,
                    "video_frames": n_frames, "fps": 25.0, "width": FRAME_W, "height": FRAME_H,
                    "shard": f"{split}0000",
                })  # fmt: skip
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    masks_dir = root / "masks"
    for shard in ("train0000", "test0000"):
        with write_shard(masks_dir / f"{shard}.h5", {"stage": "test"}) as fh:
            fh.create_dataset("index", data=np.zeros(3))  # select writes a root table like this
            for row in rows:
                if row["shard"] == shard:
                    small = true_masks[row["vid_name"]][:, ::MASK_SCALE, ::MASK_SCALE]
                    write_masks(create_video_group(fh, row["vid_name"]), "mask", small)
    return manifest, masks_dir


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> tuple[Path, Path]:
    return make_dataset(tmp_path_factory.mktemp("trainset"))


# --- sampling --------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "t"), [(24, 8), (25, 8), (7, 8), (3, 8), (8, 8), (100, 16), (1, 4)])
def test_frame_indices_follow_the_formula(n, t):
    stride = math.ceil(n / t)
    for offset in range(stride + 1):
        expected = [min(i * stride + offset, n - 1) for i in range(t)]
        assert frame_indices(n, t, offset).tolist() == expected
    if n < t:  # short clip: every frame once, then the last one repeated
        assert frame_indices(n, t).tolist() == list(range(n)) + [n - 1] * (t - n)


def test_training_offsets_cover_zero_to_stride_and_eval_uses_zero():
    rng = np.random.default_rng(0)
    n, t = 30, 8  # stride 4
    offsets = {draw_offset(n, t, rng) for _ in range(400)}
    assert offsets == set(range(math.ceil(n / t) + 1))
    assert sample_indices(n, t, training=False).tolist() == [4 * i for i in range(t)]
    with pytest.raises(ValueError):
        frame_indices(n, t, offset=5)


def _independent_repeats(n: int, t: int, offset: int) -> int:
    """Repeats counted slot by slot from the thesis' formula (not the code under test)."""
    stride, seen, repeats = -(-n // t), set(), 0
    for i in range(t):
        frame = min(i * stride + offset, n - 1)
        repeats += frame in seen
        seen.add(frame)
    return repeats


def test_repeated_slots_match_an_independent_count():
    # The example: N = 130, T = 128, offset 0: slots 65..127 (63) show the last frame,
    # 62 of them as repeats of its first showing.
    assert repeated_slots(frame_indices(130, 128, 0)) == 62
    assert sum(1 for f in frame_indices(130, 128, 0) if f == 129) == 63
    for n, t in [(130, 128), (130, 64), (200, 64), (90, 32), (40, 16), (7, 8), (64, 64)]:
        for offset in range(-(-n // t) + 1):
            got = repeated_slots(frame_indices(n, t, offset))
            assert got == _independent_repeats(n, t, offset), (n, t, offset)


@pytest.mark.parametrize(("n", "t"), [(130, 128), (130, 64), (64, 64), (200, 16), (7, 8), (3, 8)])
def test_spread_sampling_covers_the_clip_without_repeats(n, t):
    rng = np.random.default_rng(0)
    for training in (False, True):
        for _ in range(20 if training else 1):
            idx = sample_indices(n, t, training, rng, sampling="spread").tolist()
            assert len(idx) == t and idx == sorted(idx) and 0 <= idx[0] and idx[-1] <= n - 1
            assert len(idx) - len(set(idx)) == max(0, t - n)  # no repeat unless N < T
            for i, frame in enumerate(idx):  # one frame in each of the T equal segments
                if n >= t:
                    assert i * n // t <= frame < (i + 1) * n // t
    with pytest.raises(ValueError, match="sampling"):
        sample_indices(n, t, False, None, sampling="uniform")


# --- RandAugment reuse -----------------------------------------------------------------------


def test_joint_randaugment_draws_exactly_like_pytorchvideo():
    from pytorchvideo.transforms import RandAugment

    video = torch.rand(3, 3, 24, 24)
    mask = torch.ones(3, 1, 24, 24)
    ours, theirs = JointRandAugment(9, 2, 0.5), RandAugment(magnitude=9, num_layers=2, prob=0.5)
    for seed in range(30):
        torch.manual_seed(seed)
        expected = theirs(video)
        torch.manual_seed(seed)
        got, _ = ours(video, mask)
        assert torch.equal(got, expected), seed


# --- masks follow the geometry ---------------------------------------------------------------


def disk_video(t: int = 2, h: int = 40, w: int = 56) -> tuple[torch.Tensor, torch.Tensor]:
    """White disk on black, as (T,3,H,W) video and (T,1,H,W) mask."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disk = (((yy - h / 2 + 3) ** 2 + (xx - w / 2 - 5) ** 2) < 10**2).float()
    return disk.expand(t, 3, h, w).clone(), disk.expand(t, 1, h, w).clone()


def test_each_geometric_op_keeps_the_mask_on_the_shape():
    """Bilinear on the video, nearest on the mask, same parameters: the nearest source pixel has
    bilinear weight >= 1/4, so a video value > 3/4 implies mask 1 and < 1/4 implies mask 0
    (exactly, wherever the sample lies inside the frame: checked with an all-ones video)."""
    from pytorchvideo.transforms.augmentations import _NAME_TO_TRANSFORM_FUNC

    video, mask = disk_video()
    ones = torch.ones_like(video)
    gen = torch.Generator().manual_seed(0)
    for name, mask_op in MASK_OPS.items():
        video_op = _NAME_TO_TRANSFORM_FUNC[name]
        for _ in range(10):
            scale = 30.0 if name == "Rotate" else 0.4
            factor = float((torch.rand(1, generator=gen) * 2 - 1) * scale)
            v = video_op(video, factor, fill=(0.0, 0.0, 0.0))[:, :1]
            inside = video_op(ones, factor, fill=(0.0, 0.0, 0.0))[:, :1] > 1 - 1e-5
            m = mask_op(mask, factor)
            assert v[inside & (v > 0.75)].numel() > 50, (name, factor)
            assert (m[inside & (v > 0.75)] == 1).all(), (name, factor)
            assert (m[inside & (v < 0.25)] == 0).all(), (name, factor)
    # short-side scale: bilinear (align_corners False) vs nearest-exact, same rule
    for size in (23, 31, 47, 64):
        v = F.interpolate(video, size=(size, size * 7 // 5), mode="bilinear", align_corners=False)
        m = F.interpolate(mask, size=(size, size * 7 // 5), mode="nearest-exact")
        assert (m[:, 0][v[:, 0] > 0.75] == 1).all() and (m[:, 0][v[:, 0] < 0.25] == 0).all()


def geometric_only_transform(spec: TransformSpec) -> ClipTransform:
    """The training pipeline, with RandAugment restricted to its geometric ops and black fill
    (photometric ops such as Invert change what 'white shape' means)."""
    transform = ClipTransform(spec, training=True)
    ra = transform.randaug
    keep = [i for i, op in enumerate(ra.ops) if op.transform_name in MASK_OPS]
    ra.ops = [ra.ops[i] for i in keep]
    for op in ra.ops:
        op.transform_hparas = {"fill": (0.0, 0.0, 0.0)}
    ra.op_weights = ra.op_weights[keep]
    return transform


def test_mask_covers_the_shape_after_scale_crop_randaugment_flip(monkeypatch):
    import flowguide.clips.transforms as tr

    flips, original = [], tr.hflip
    monkeypatch.setattr(tr, "hflip", lambda v, m: (flips.append(1), original(v, m))[1])
    spec = TransformSpec(short_side_min=40, short_side_max=64, crop=36, randaugment=True,
                         randaug_prob=1.0, hflip_p=0.5)  # fmt: skip
    transform = geometric_only_transform(spec)
    video, mask = disk_video()
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    for seed in range(60):
        torch.manual_seed(seed)
        clip, out_mask = transform(video, mask)
        assert clip.shape == (3, 2, 36, 36) and out_mask.shape == (2, 36, 36)
        shape = (clip * std + mean)[0] > 0.5  # thresholded transformed video, (T, H, W)
        disagree = shape ^ out_mask
        # Composed bilinear resamplings blur the edge: disagreements only on the boundary band.
        # band = dilation - erosion of the mask, with background (the fill) outside the crop
        padded = F.pad(out_mask.float()[:, None], (1, 1, 1, 1))
        band = F.max_pool2d(padded, 3, 1) + F.max_pool2d(-padded, 3, 1)
        assert not (disagree & (band[:, 0] == 0)).any(), seed
        union = (shape | out_mask).sum()
        if union >= 100:  # a shape mostly moved out of the crop has no meaningful IoU
            assert (shape & out_mask).sum() / union > 0.8, seed
    assert 10 < len(flips) < 50  # the flip was drawn, about half of the time


def test_ogl_transform_keeps_only_the_diver_and_eval_is_deterministic():
    video, mask = disk_video()
    video = video * 0.5 + 0.25  # background 0.25, shape 0.75
    spec = TransformSpec(short_side_min=40, short_side_max=48, crop=32, ogl_p=1.0)
    torch.manual_seed(1)
    out, out_mask = ClipTransform(spec, training=True).geometric_and_augment(video, mask)
    assert (out * (1 - out_mask) == 0).all()
    inside = out[out_mask.expand_as(out) > 0]  # kept pixels: nearest mask 1 => bilinear >= 3/8
    assert inside.numel() > 0 and (inside >= 0.375 - 1e-6).all() and (inside <= 0.75 + 1e-6).all()
    ev = ClipTransform(TransformSpec(short_side_min=40, short_side_max=48, crop=32,
                                     eval_short_side=40, eval_crop=40), training=False)  # fmt: skip
    a, ma = ev(video, mask)
    b, mb = ev(video, mask)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    expected = normalize(video, spec.mean, spec.std).permute(1, 0, 2, 3)[..., 0:40, 8:48]
    assert torch.allclose(a, expected, atol=1e-6)  # scale to 40 = identity, centre crop 40


# --- the dataset -----------------------------------------------------------------------------


def test_dataset_reads_sampled_frames_and_upsampled_masks(tiny_dataset):
    manifest, masks_dir = tiny_dataset
    rows = read_manifest(manifest)
    rows = rows[rows["split"] == "train"].reset_index(drop=True)
    spec = TransformSpec(short_side_min=32, short_side_max=32, crop=32, eval_short_side=32,
                         eval_crop=32)  # fmt: skip
    data = ClipDataset(rows, 4, ClipTransform(spec, training=False), masks_dir, seed=0)
    item = data[1]
    row = rows.iloc[1]
    indices = frame_indices(int(row["n_frames"]), 4)  # stride 3: 0, 3, 6, 9
    frames = read_frames(row["path"], indices)
    expected_clip, _ = ClipTransform(spec, training=False)(frames_to_tensor(frames))
    assert torch.allclose(item["clip"], expected_clip)
    true = square_masks(10, int(row["label"]), 1)[indices]
    expected_mask = true[:, :, 8:40]  # centre crop 32 of 48
    assert np.array_equal(item["mask"].numpy(), expected_mask)
    assert item["label"] == int(row["label"]) and item["vid_name"] == row["vid_name"]
    # the white square in the decoded video is where the mask says
    pixels = item["clip"][0] * spec.std[0] + spec.mean[0]
    assert pixels[item["mask"]].mean() > 0.9 and pixels[~item["mask"]].mean() < 0.5


def test_training_samples_repeat_per_epoch_and_differ_across_epochs(tiny_dataset):
    manifest, masks_dir = tiny_dataset
    rows = read_manifest(manifest).query("split == 'train'").reset_index(drop=True)
    spec = TransformSpec(short_side_min=32, short_side_max=40, crop=24, ogl_p=0.5)
    data = ClipDataset(rows, 4, ClipTransform(spec, training=True), masks_dir, seed=3)
    first = data[2]
    assert torch.equal(first["clip"], data[2]["clip"])
    assert torch.equal(first["mask"], data[2]["mask"])
    data.set_epoch(1)
    assert not torch.equal(first["clip"], data[2]["clip"])


def test_videos_without_masks_are_split_off(tiny_dataset, tmp_path):
    manifest, masks_dir = tiny_dataset
    rows = read_manifest(manifest)
    extra = rows.iloc[[0]].assign(vid_name="not_in_shard")
    kept, missing = split_by_mask_availability(pd.concat([rows, extra]), masks_dir)
    assert len(kept) == len(rows) and missing["vid_name"].tolist() == ["not_in_shard"]
    assert masks_to_tensor(np.ones((1, 2, 3), bool), (4, 6)).sum() == 24
