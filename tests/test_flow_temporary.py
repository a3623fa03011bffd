"""flow.temporary: the flow files are Snakemake temp() outputs, gone once segment has read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_workflow import TINY, jobs_run, snakemake, write_config


@pytest.mark.slow
def test_temporary_flow_is_deleted_after_segment_and_toggling_reruns_nothing(tmp_path: Path):
    config = {**TINY, "flow": {**TINY["flow"], "temporary": True}}
    write_config(tmp_path, config)
    target = "results/candidates/train0000.h5"
    snakemake(tmp_path, "results/manifest.csv")  # the checkpoint that names the shards
    ran = jobs_run(snakemake(tmp_path, target))
    assert ran["flow"] == ran["segment"] == 1
    assert (tmp_path / target).is_file()
    assert not (tmp_path / "results/flow/train0000.h5").exists()  # deleted by Snakemake
    write_config(tmp_path, TINY)  # temporary: false again: not a parameter, nothing reruns
    assert jobs_run(snakemake(tmp_path, target)) == {}
