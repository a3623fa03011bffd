"""SynthDive: determinism, exact true masks, the planted confounder, Diving48 layout, camera pan."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from flowguide.config import load_config, validate_config
from flowguide.data.diving48 import DatasetLayout, read_split, read_vocab
from flowguide.data.synthdive import (
    CLIPS_FILE,
    COMPOSITIONS,
    CUE_PALETTE,
    MASKS_FILE,
    class_compositions,
    clip_spec,
    cue_class,
    cue_colour,
    generate_dataset,
    synth_options,
    vid_name,
)
from flowguide.data.synthdive_render import (
    SOMERSAULTS,
    TAKEOFFS,
    TWISTS,
    Dive,
    camera_path,
    panel_boxes,
    render_background,
    render_diver,
    render_frame,
    score_bug_boxes,
    water_rows,
    world_to_pixel,
)
from flowguide.utils.failures import FlowguideError
from flowguide.utils.h5 import video_names
from flowguide.utils.masks import read_video_masks
from flowguide.utils.video import probe_video, read_video, write_video

TINY = {
    "seed": 3,
    "num_classes": 2,
    "clips_per_class_train": 2,
    "clips_per_class_test": 1,
    "frames": 6,
    "width": 64,
    "height": 48,
}


def _generate(tmp_path: Path, name: str, **overrides) -> tuple[Path, object]:
    opts = synth_options({**TINY, **overrides})
    out = tmp_path / name
    generate_dataset(out, opts)
    return out, opts


def _all_files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _names(opts, split: str) -> list[str]:
    count = opts.clips_per_class(split) * opts.num_classes
    return [vid_name(opts.seed, split, i) for i in range(count)]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, object]:
    return _generate(tmp_path_factory.mktemp("synth"), "a")


# --- options ------------------------------------------------------------------------------------


def test_options_defaults_match_schema_and_errors_name_the_key():
    from_schema = validate_config({"dataset": {"kind": "synthdive"}})["synth"]
    assert synth_options(from_schema) == synth_options({})
    assert synth_options({}).confounder.train_p == from_schema["confounder"]["train_p"]
    with pytest.raises(FlowguideError, match="framez"):
        synth_options({"framez": 3})
    with pytest.raises(FlowguideError, match="width"):
        synth_options({"width": 65})
    with pytest.raises(FlowguideError, match="num_classes"):
        synth_options({"num_classes": 49})
    with pytest.raises(FlowguideError, match="train_p"):
        synth_options({"confounder": {"train_p": 1.5}})


def test_compositions_are_diving48_words_and_default_classes_differ_in_flight():
    assert len(COMPOSITIONS) == 48 and len(set(COMPOSITIONS)) == 48
    for takeoff, som, twist, position in COMPOSITIONS:
        assert takeoff in TAKEOFFS and som in SOMERSAULTS and twist in TWISTS
        assert position in ("TUCK", "PIKE", "STR", "FREE")
    dives = [Dive.from_vocab(c) for c in class_compositions(4)]
    # Same takeoff (the clips start alike); what the dive does in flight differs in every class:
    # somersaults and flight position each take four different values.
    assert len({(d.facing, d.spin) for d in dives}) == 1
    assert len({d.somersaults for d in dives}) == 4
    assert len({d.position for d in dives}) == 4
    assert len(set(CUE_PALETTE)) == 48


# --- determinism and appending --------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path, tiny_set):
    first, opts = tiny_set
    again, _ = _generate(tmp_path, "again")
    files_a, files_b = _all_files(first), _all_files(again)
    assert files_a.keys() == files_b.keys()
    assert len([k for k in files_a if k.endswith(".mp4")]) == 6
    for key in files_a:
        assert files_a[key] == files_b[key], key

    other, other_opts = _generate(tmp_path, "other", seed=4)
    for split in ("train", "test"):
        for name_a, name_b in zip(_names(opts, split), _names(other_opts, split), strict=True):
            video_a = (first / "rgb" / f"{name_a}.mp4").read_bytes()
            assert video_a != (other / "rgb" / f"{name_b}.mp4").read_bytes()
            masks_a = read_video_masks(first / MASKS_FILE, name_a)
            assert not np.array_equal(masks_a, read_video_masks(other / MASKS_FILE, name_b))


def test_more_clips_per_class_appends_without_changing_existing_clips(tmp_path, tiny_set):
    small, opts = tiny_set
    big, big_opts = _generate(tmp_path, "big", clips_per_class_train=3, clips_per_class_test=2)
    for split in ("train", "test"):
        json_name = f"Diving48_V2_{split}.json"
        small_records = json.loads((small / json_name).read_text())
        big_records = json.loads((big / json_name).read_text())
        assert len(big_records) == big_opts.clips_per_class(split) * 2 > len(small_records)
        assert big_records[: len(small_records)] == small_records
        for name in _names(opts, split):
            assert (small / "rgb" / f"{name}.mp4").read_bytes() == (
                big / "rgb" / f"{name}.mp4"
            ).read_bytes()
            np.testing.assert_array_equal(
                read_video_masks(small / MASKS_FILE, name), read_video_masks(big / MASKS_FILE, name)
            )


# --- the layout ---------------------------------------------------------------------------------


def test_json_records_parse_like_diving48_and_files_agree(tiny_set):
    root, opts = tiny_set
    layout = DatasetLayout(root=root)
    vocab = read_vocab(layout)
    assert vocab == [list(c) for c in COMPOSITIONS[:2]]
    for split in ("train", "test"):
        records, rejected = read_split(layout, split, len(vocab))
        assert rejected == []
        assert [r.vid_name for r in records] == _names(opts, split)
        assert [r.label for r in records] == [i % 2 for i in range(len(records))]
        for rec in records:
            assert (rec.start_frame, rec.end_frame) == (0, opts.frames - 1)
            info = probe_video(layout.video_path(rec.vid_name))
            assert (info.n_frames, info.width, info.height) == (opts.frames, 64, 48)
            assert info.fps == pytest.approx(25.0)
    import pandas as pd

    clips = pd.read_csv(root / CLIPS_FILE)
    assert len(clips) == 6
    assert set(clips["vid_name"]) == set(_names(opts, "train") + _names(opts, "test"))
    assert (clips["cue_agrees"] == (clips["cue_class"] == clips["label"])).all()
    with h5py.File(root / MASKS_FILE) as fh:
        assert fh.attrs["dataset_seed"] == 3
        assert "mask" in str(fh.attrs["what"])
        assert set(video_names(fh)) == set(clips["vid_name"])


# --- the true masks -------------------------------------------------------------------------------


def test_true_masks_are_exactly_the_rendered_diver(tiny_set):
    root, opts = tiny_set
    for split in ("train", "test"):
        for index, name in enumerate(_names(opts, split)):
            stored = read_video_masks(root / MASKS_FILE, name)
            assert stored.shape == (opts.frames, opts.height, opts.width)
            spec = clip_spec(opts, split, index)
            for t in range(opts.frames):
                _, alone = render_diver(spec, t)
                np.testing.assert_array_equal(stored[t], alone)
                assert stored[t].any(), f"{name} frame {t}: empty mask"


def test_mask_covers_the_pixels_the_diver_changes_and_has_body_size():
    opts = synth_options({"frames": 12})
    for index in range(4):
        spec = clip_spec(opts, "train", index)
        height_px = spec.body_len * opts.height
        for t in range(opts.frames):
            frame, mask = render_frame(spec, t)
            background = render_background(spec, t)
            changed = (frame != background).any(axis=2)
            assert not (changed & ~mask).any()  # nothing outside the mask was drawn
            assert changed[mask].mean() > 0.8  # the diver's colours differ from the scene
            # Plausible size: at most the area of a body-high, half-body-wide box.
            assert 0.03 * height_px**2 < mask.sum() < 0.5 * height_px**2
        # Standing upright on the platform, the mask is one body height tall.
        rows = np.flatnonzero(render_frame(spec, 0)[1].any(axis=1))
        assert 0.85 < (rows[-1] - rows[0] + 1) / height_px < 1.05
        assert 0.4 < height_px / opts.height < 0.52  # a close-up: 40-50% of the frame height


def test_diver_stays_in_the_central_third():
    opts = synth_options({"frames": 16})
    inside, total = 0, 0
    for index in range(8):
        spec = clip_spec(opts, "train", index)
        for t in range(opts.frames):
            _, mask = render_diver(spec, t)
            x_centre = np.nonzero(mask)[1].mean() / opts.width
            inside += 1 / 3 < x_centre < 2 / 3
            total += 1
    assert inside / total > 0.95


def test_video_is_the_lossy_render(tiny_set):
    root, opts = tiny_set
    spec = clip_spec(opts, "train", 1)
    decoded = read_video(root / "rgb" / f"{vid_name(opts.seed, 'train', 1)}.mp4").astype(float)
    rendered = np.stack([render_frame(spec, t)[0] for t in range(opts.frames)]).astype(float)
    error = np.abs(decoded - rendered).mean()
    assert 0.5 < error < 25  # lossy, but the same picture


# --- the confounder -----------------------------------------------------------------------------


def test_train_cue_agreement_rate_follows_train_p():
    n_clips = 4000
    for num_classes, train_p in ((4, 0.9), (6, 0.7)):
        opts = synth_options({"num_classes": num_classes, "confounder": {"train_p": train_p}})
        cues = np.array([cue_class(opts, "train", i) for i in range(n_clips)])
        labels = np.arange(n_clips) % num_classes
        agree = (cues == labels).mean()
        sigma = math.sqrt(train_p * (1 - train_p) / n_clips)
        assert abs(agree - train_p) < 4 * sigma, (agree, train_p)
        assert cues.min() == 0 and cues.max() == num_classes - 1
        # Disagreeing cues are spread over the other classes alike.
        wrong = (cues[cues != labels] - labels[cues != labels]) % num_classes
        counts = np.bincount(wrong, minlength=num_classes)[1:]
        assert counts.min() > 0.6 * counts.mean()
    off = synth_options({"confounder": {"enabled": False}})
    assert {cue_class(off, "train", i) for i in range(50)} == {-1}


@pytest.mark.parametrize("num_classes,per_class", [(4, 8), (4, 12), (3, 6)])
def test_test_split_has_every_label_cue_cell_equally_filled(num_classes, per_class):
    """The test split's cue is independent of the label by design: each (label, cue) cell holds
    per_class / num_classes clips, so each class has that many agreeing clips and the rest
    disagreeing (the counts the report prints)."""
    opts = synth_options({"num_classes": num_classes, "clips_per_class_test": per_class, "seed": 5})
    n = per_class * num_classes
    counts = np.zeros((num_classes, num_classes), int)  # [label, cue]
    for i in range(n):
        counts[i % num_classes, cue_class(opts, "test", i)] += 1
    assert (counts == per_class // num_classes).all()
    agree = np.diag(counts)
    assert agree.tolist() == [per_class // num_classes] * num_classes
    assert (counts.sum(1) - agree).tolist() == [per_class - per_class // num_classes] * num_classes


def test_no_cue_twin_renders_the_same_dives_with_an_independent_cue():
    on = synth_options({"clips_per_class_train": 8})
    twin = synth_options({"clips_per_class_train": 8, "confounder": {"train_p": None}})
    labels = np.arange(32) % 4
    cues = np.array([cue_class(twin, "train", i) for i in range(32)])
    assert (cues == labels).sum() == 8  # 1/4 agree: independent of the label
    assert np.bincount(cues, minlength=4).tolist() == [8, 8, 8, 8]
    for i in range(4):
        a, b = clip_spec(on, "train", i), clip_spec(twin, "train", i)
        # Everything but the cue colour is drawn from the same stream.
        assert a.body_len == b.body_len and a.texture_seed == b.texture_seed
        assert (a.jitter == b.jitter).all() and a.dive == b.dive
    with pytest.raises(FlowguideError, match="splits"):
        synth_options({"splits": ["val"]})


def test_scoreboard_shows_the_cue_colour(tiny_set):
    root, opts = tiny_set
    palette = np.array(CUE_PALETTE[: opts.num_classes], float)
    for split in ("train", "test"):
        for index, name in enumerate(_names(opts, split)):
            spec = clip_spec(opts, split, index)
            colour = np.array(cue_colour(cue_class(opts, split, index)), float)
            decoded = read_video(root / "rgb" / f"{name}.mp4").astype(float)
            for t in range(opts.frames):
                background = render_background(spec, t)
                centres = [((u0 + u1) / 2, (v0 + v1) / 2) for u0, v0, u1, v1 in panel_boxes(spec)]
                pix = np.round(world_to_pixel(spec, t, np.array(centres))).astype(int)
                seen = [
                    (x, y) for x, y in pix if 0 <= x < opts.width and 0 <= y < opts.height
                    and not water_rows(spec, t)[y]
                ]  # fmt: skip
                assert seen, f"{name} frame {t}: no scoreboard panel in view"
                for x, y in seen:
                    assert np.array_equal(background[y, x], colour)
                    # After compression the panel is still nearest to its class's colour.
                    distance = np.abs(palette - decoded[t, y, x]).sum(axis=1)
                    assert np.argmin(distance) == cue_class(opts, split, index)


def _always_seen(size: int, short_min: int, short_max: int, crop: int) -> tuple[float, float]:
    """The interval of an axis of ``size`` px (in frame pixels) that every training crop keeps:
    resize so the short side is s in [short_min, short_max], then any crop offset in [0, n - crop]
    keeps [n - crop, crop) of the resized n = size * s / short_side px; written out by hand."""
    lo, hi = 0.0, float(size)
    for s in range(short_min, short_max + 1):
        n = size * s / 72.0
        lo, hi = max(lo, (n - crop) * 72.0 / s), min(hi, crop * 72.0 / s)
    return lo, hi


def test_score_bug_lies_inside_every_crop_of_the_default_demo():
    """The cue must be visible to the model: the demo's random train crops and centre eval crop
    all contain the whole score bug (a confounder the model cannot see is no confounder)."""
    config = load_config(Path(__file__).parents[1] / "config.yaml")
    synth, tf = config["synth"], config["train"]["transform"]
    width, height = synth["width"], synth["height"]
    assert height == 72  # _always_seen's resize factor is written for the demo's 96x72
    x_lo, x_hi = _always_seen(width, tf["short_side_min"], tf["short_side_max"], tf["crop"])
    y_lo, y_hi = _always_seen(height, tf["short_side_min"], tf["short_side_max"], tf["crop"])
    # The eval crop: short side eval_short_side, centre crop eval_crop.
    f = tf["eval_short_side"] / height
    ex = (width * f - tf["eval_crop"]) / 2 / f
    ey = (height * f - tf["eval_crop"]) / 2 / f
    for x0, y0, x1, y1 in score_bug_boxes(width, height):
        assert x_lo <= x0 and x1 <= x_hi and y_lo <= y0 and y1 <= y_hi
        assert ex <= x0 and x1 <= width - ex and ey <= y0 and y1 <= height - ey
        assert (x1 - x0) * (y1 - y0) >= 30  # big enough to survive a 56 px resize


def test_score_bug_shows_the_cue_and_hides_the_diver(tiny_set):
    root, opts = tiny_set
    palette = np.array(CUE_PALETTE[: opts.num_classes], float)
    for split in ("train", "test"):
        for index, name in enumerate(_names(opts, split)):
            spec = clip_spec(opts, split, index)
            cue = cue_class(opts, split, index)
            decoded = read_video(root / "rgb" / f"{name}.mp4").astype(float)
            for t in range(opts.frames):
                frame, mask = render_frame(spec, t)
                for x0, y0, x1, y1 in score_bug_boxes(opts.width, opts.height):
                    assert not mask[y0:y1, x0:x1].any()
                    assert np.array_equal(frame[y0, x0], cue_colour(cue))
                    y, x = (y0 + y1) // 2, (x0 + x1 - 1) // 2
                    distance = np.abs(palette - decoded[t, y, x]).sum(axis=1)
                    assert np.argmin(distance) == cue


# --- the camera -----------------------------------------------------------------------------------


def test_camera_pans_and_the_background_shift_is_measurable(tmp_path):
    opts = synth_options({"frames": 16, "width": 160, "height": 120})
    spec = clip_spec(opts, "train", 0)
    cam = camera_path(spec)
    # Measure on the compressed video, which is what the flow stage sees.
    path = tmp_path / "clip.mp4"
    write_video(path, np.stack([render_frame(spec, t)[0] for t in range(opts.frames)]), 25, 6)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in read_video(path)]
    measured, expected = [], []
    for t in range(opts.frames - 1):
        if water_rows(spec, t).any() or water_rows(spec, t + 1).any():
            continue
        # The stand left of the diver (the diver stays in the central third).
        (dx, dy), _ = cv2.phaseCorrelate(gray[t][:, :50], gray[t + 1][:, :50])
        measured.append((dx, dy))
        expected.append(-(cam[t + 1] - cam[t]) * opts.height)  # scene moves against the camera
    measured, expected = np.array(measured), np.array(expected)
    assert len(measured) >= 5
    assert np.abs(expected).max() > 2.0  # the camera really moves (pixels per frame)
    assert np.median(np.abs(measured - expected)) < 0.5
    assert np.abs(measured).max() > 2.0


# --- the CLI and the manifest stage -------------------------------------------------------------


def test_cli_output_is_read_by_the_manifest_stage(tmp_path):
    from flowguide.cli import main
    from flowguide.data.manifest import run_manifest

    out = tmp_path / "synthdive"
    options = {**TINY, "num_classes": 3, "clips_per_class_train": 2, "clips_per_class_test": 1}
    assert main(["synth", "--out", str(out), "--options", json.dumps(options)]) == 0
    dataset = {
        "shard_size": 4,
        "subset_per_class": None,
        "videos_dir": "rgb",
        "train_json": "Diving48_V2_train.json",
        "test_json": "Diving48_V2_test.json",
        "vocab_json": "Diving48_vocab.json",
    }
    manifest = run_manifest(
        dataset, out, tmp_path / "manifest.csv", tmp_path / "shards", tmp_path / "failures.csv"
    )
    assert len(manifest) == 9
    assert (manifest["n_frames"] == TINY["frames"]).all()
    assert (manifest["width"] == 64).all() and (manifest["height"] == 48).all()
    assert sorted(manifest["shard"].unique()) == ["test0000", "train0000", "train0001"]
    train = manifest[manifest["split"] == "train"]
    assert list(train["label"]) == [i % 3 for i in range(6)]
    assert not list(out.rglob("*.part"))  # no temporary files left behind


# --- realism knobs --------------------------------------------------------------------------------


def test_realism_knobs_change_the_render_and_keep_the_mask_exact():
    base = {"frames": 8, "width": 96, "height": 72}
    plain = clip_spec(synth_options(base), "train", 2)
    frames, masks = render_clip_pair(plain)
    # Occluder: the pillar's pixels are never in the true mask, and some diver pixel is hidden.
    occ = clip_spec(synth_options({**base, "occluder": True}), "train", 2)
    o_frames, o_masks = render_clip_pair(occ)
    assert o_masks.sum() < masks.sum() and not (o_masks & ~masks).any()
    # Splash: from the frame before entry on, bright spray hides diver pixels; earlier frames
    # are untouched and no true-mask pixel lies outside the plain mask.
    spl = clip_spec(synth_options({**base, "splash": 0.8}), "train", 2)
    s_frames, s_masks = render_clip_pair(spl)
    first = int(np.ceil(spl.entry_frame - 1.5))
    assert (s_frames[:first] == frames[:first]).all() and (s_masks[:first] == masks[:first]).all()
    assert s_masks[first:].sum() < masks[first:].sum() and not (s_masks & ~masks).any()
    hidden = masks & ~s_masks
    assert s_frames[hidden].min() >= 215  # the spray's white, not the diver's colours
    # Camera shake scales the same jitter draws.
    shaky = clip_spec(synth_options({**base, "camera_shake": 3.0}), "train", 2)
    assert np.allclose(shaky.jitter, 3.0 * plain.jitter)
    # Motion blur: frame t is (1 - b) * sharp_t + b * sharp_{t-1}; frame 0 unchanged.
    blurred, b_masks = render_clip_pair(
        clip_spec(synth_options({**base, "motion_blur": 0.5}), "train", 2)
    )
    expected = np.clip(np.round(0.5 * frames[3].astype(float) + 0.5 * frames[2]), 0, 255)
    assert np.abs(blurred[3].astype(float) - expected).max() <= 1
    assert (blurred[0] == frames[0]).all() and (b_masks == masks).all()
    # Photo background and texture / position cues draw other pixels, same diver mask.
    for knobs in ({"background": "photo"}, {"confounder": {"kind": "texture"}},
                  {"confounder": {"kind": "position"}}):  # fmt: skip
        other, other_masks = render_clip_pair(
            clip_spec(synth_options({**base, **knobs}), "train", 2)
        )
        assert (other_masks == masks).all()
        assert (other != frames).any(), knobs
    with pytest.raises(FlowguideError, match="background"):
        synth_options({"background": "beach"})
    with pytest.raises(FlowguideError, match="kind"):
        synth_options({"confounder": {"kind": "smell"}})
    with pytest.raises(FlowguideError, match="motion_blur"):
        synth_options({"motion_blur": 1.5})
    with pytest.raises(FlowguideError, match="splash"):
        synth_options({"splash": 2})


def render_clip_pair(spec):
    from flowguide.data.synthdive_render import render_clip

    return render_clip(spec)
