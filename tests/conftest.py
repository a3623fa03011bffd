"""Markers: ``slow`` tests run only with --runslow; ``gpu`` tests only where CUDA is available."""

from __future__ import annotations

import os

import pytest
import torch

# Tests share 2 cores with everything else; keep intra-op threads modest and results repeatable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="gpu: no CUDA device here")
    has_cuda = torch.cuda.is_available()
    for item in items:
        # Markers, not keywords: a parametrize id such as "gpu" must not count.
        if item.get_closest_marker("slow") and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if item.get_closest_marker("gpu") and not has_cuda:
            item.add_marker(skip_gpu)
