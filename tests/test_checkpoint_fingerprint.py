"""A resumable state is reused only when it was trained with the same arithmetic: settings that
change the numbers (channels_last, activation_checkpointing, precision) change the fingerprint,
pure execution settings (workers, prefetch, cudnn autotuning) do not."""

from pathlib import Path

import pytest

from flowguide.train.checkpoint import run_fingerprint
from flowguide.train.methods import create_method

BASE = {
    "lr": 0.02,
    "epochs": 3,
    "channels_last": False,
    "activation_checkpointing": False,
    "precision": "fp32",
    "num_workers": 0,
    "prefetch_factor": 2,
    "cudnn_benchmark": False,
}


def _fingerprint(tmp_path: Path, **changed) -> str:
    manifest = tmp_path / "manifest.csv"
    if not manifest.exists():
        manifest.write_text("path,label\na.mp4,0\n")
    return run_fingerprint(manifest, [], create_method("vanilla", {}), 8, {**BASE, **changed})


@pytest.mark.parametrize(
    "key,value",
    [("channels_last", True), ("activation_checkpointing", True), ("precision", "bf16")],
)
def test_a_setting_that_changes_the_numbers_changes_the_fingerprint(tmp_path, key, value):
    assert _fingerprint(tmp_path, **{key: value}) != _fingerprint(tmp_path)


@pytest.mark.parametrize(
    "key,value", [("num_workers", 4), ("prefetch_factor", 8), ("cudnn_benchmark", True)]
)
def test_an_execution_setting_keeps_the_fingerprint(tmp_path, key, value):
    assert _fingerprint(tmp_path, **{key: value}) == _fingerprint(tmp_path)
