"""Several processes (torchrun, gloo on the CPU): two processes train to the same state as one.

Why the tolerance: each optimiser step's loader batches are the single-process ones, split
between the processes, so every BatchNorm batch holds the same clips; the all-reduce adds the
processes' accumulated gradients (here one loader batch each per step: the same two addends one
process adds); BatchNorm running statistics are rebuilt as one process's EMA chain
(``RunningStatsSync``, float64 arithmetic: ~1e-7 rounding). With the same number of CPU threads
(1: the reference runs under ``torch.set_num_threads(1)``, torchrun's processes get
OMP_NUM_THREADS=1) the kernels round identically, so the runs agree to float rounding: atol
1e-5. Not pinning threads changes conv reductions at 1e-7 relative, which this tiny model
(BatchNorm over 2 clips with 1x1 maps in the last stage) amplifies to ~1e-2 in 6 steps: a
property of the test model, not of the method. Dropout is 0 (each process draws its own masks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from test_train_data import make_dataset
from test_train_loop import TINY

from flowguide.train.checkpoint import load_checkpoint
from flowguide.train.loop import train
from flowguide.train.schedule import batch_plan

OPTIONS = {
    **TINY,
    "epochs": 2,
    "model": {**TINY["model"], "dropout": 0.0},
    "method_options": {"rrr_gradcam": {"percentile": 50}},
}


def test_batch_plan_splits_the_single_process_schedule():
    order = [5, 3, 0, 6, 1, 4, 2]  # 7 clips, B_l 2, B 4: batches [5,3] [0,6] | [1,4] [2]
    one = batch_plan(7, 2, 2, 1, 0, order)
    assert one == ([[5, 3], [0, 6], [1, 4], [2]], [2, 2], [4, 3])
    r0, r1 = (batch_plan(7, 2, 2, 2, rank, order) for rank in (0, 1))
    assert r0 == ([[5, 3], [1, 4]], [1, 1], [4, 3]) and r1 == ([[0, 6], [2]], [1, 1], [4, 3])
    r0, r1 = (batch_plan(5, 2, 2, 2, rank, order[:5]) for rank in (0, 1))
    assert r0[1] == [1, 1] and r1 == ([[0, 6]], [1, 0], [4, 1])  # rank 1 idle in the last step
    with pytest.raises(Exception, match="multiple of 2 processes"):
        batch_plan(7, 2, 3, 2, 0, order)


def test_two_gloo_processes_match_one(tmp_path):
    manifest, masks = make_dataset(tmp_path / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(manifest, masks, "rrr_gradcam", 4, tmp_path / "one", OPTIONS, "cpu")
    finally:
        torch.set_num_threads(threads)
    argv = [sys.executable, "-m", "flowguide", "train", "--manifest", str(manifest),
            "--masks-dir", str(masks), "--method", "rrr_gradcam", "--T", "4",
            "--out-dir", str(tmp_path / "two"),
            "--options", json.dumps(OPTIONS), "--device", "cpu", "--nproc", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():  # parameters and BatchNorm buffers
        assert torch.allclose(value.double(), b["model"][key].double(), atol=1e-5), key
    assert any("running_var" in key for key in a["model"])
    for key, value in a["optimizer"]["state"].items():  # SGD momentum buffers
        assert torch.allclose(value["momentum_buffer"], b["optimizer"]["state"][key]
                              ["momentum_buffer"], atol=1e-5)  # fmt: skip
    ta, tb = a["method_state"]["tracker"], b["method_state"]["tracker"]
    assert torch.equal(ta["seen"], tb["seen"])  # gathered: every sample's loss reached rank 0
    assert torch.allclose(ta["ema"], tb["ema"], rtol=1e-4)
    ma, mb = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    for column in ("loss", "loss_ce", "loss_rrr", "accuracy", "lr"):
        assert mb[column].tolist() == pytest.approx(ma[column].tolist(), rel=1e-4), column
    assert ma["loss_rrr"].iloc[1] > 0  # epoch 2 penalised the worst half in both runs
