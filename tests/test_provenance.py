"""Outputs honour the user's umask; mask files record where they came from."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from flowguide.utils.atomic import atomic_write_text
from flowguide.utils.h5 import create_video_group, write_shard


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_are_readable_by_group_and_others_under_umask_022(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.txt", "x")
    with write_shard(tmp_path / "b.h5", {"stage": "test"}) as fh:
        fh.create_dataset("d", data=np.zeros(3))
    for name in ("a.txt", "b.h5"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {oct(mode)}"


def test_a_stricter_umask_is_kept(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o600


def test_mask_file_records_upstream_parameters_and_hash(tmp_path):
    import hashlib

    import h5py

    from flowguide.select.stage import run_select
    from flowguide.utils.h5 import set_attrs, write_frames_dataset

    with write_shard(tmp_path / "c.h5", {"stage": "segment", "parameters": '{"k": 1}'}) as fh:
        g = create_video_group(fh, "v")
        set_attrs(g, {"start_frame": 0, "n_frames": 2, "frame_shape": np.array([4, 6]),
                      "source_size": np.array([40, 60]), "short_side": 4,
                      "video_path": "rgb/v.mp4", "dataset_root": "/data",
                      "dataset_root_rel": "../data"})  # fmt: skip
        write_frames_dataset(g, "labels", np.ones((2, 4, 6), np.uint8), {})
    run_select(
        tmp_path / "c.h5", tmp_path / "m.h5", tmp_path / "f.csv", {"appearance": {"enabled": False}}
    )
    with h5py.File(tmp_path / "m.h5") as fh:
        text = fh.attrs["candidates_attrs"]
        assert json.loads(text)["parameters"] == {"k": 1}
        assert fh.attrs["candidates_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        g = fh["videos/v"]
        assert g.attrs["source_size"].tolist() == [40, 60] and g.attrs["short_side"] == 4
        assert g.attrs["video_path"] == "rgb/v.mp4" and g.attrs["dataset_root_rel"] == "../data"
