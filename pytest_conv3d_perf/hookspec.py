"""Hooks a conftest.py or plugin implements to extend conv3d-perf."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_conv3d_perf_make_timer(config: pytest.Config, l2: str) -> Any:
    """Return the timer to measure with: an object with ``sample(fns, rounds)`` and
    ``clock()`` (see pytest_conv3d_perf.timer). The default times with CUDA events and
    returns None where there is no GPU, which turns timing off."""


@pytest.hookspec(firstresult=True)
def pytest_conv3d_perf_device_info(config: pytest.Config) -> dict[str, Any] | None:
    """Return facts about the timing device; ``gpu`` (the model name) names the baseline
    file. The default reads them from torch, Triton and NVML."""
