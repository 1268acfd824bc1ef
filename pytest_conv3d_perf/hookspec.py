"""Hooks a conftest.py or plugin implements to extend conv3d-perf.

Mark an implementation ``@pytest.hookimpl(optionalhook=True)``: without it, a run with the
plugin switched off (``-p no:conv3d_perf``) or not installed stops with "unknown hook".
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_conv3d_perf_make_timer(config: pytest.Config, l2: str, runtime: Any) -> Any:
    """Return the timer to measure with: an object with ``sample(fns, rounds)`` and
    ``clock()`` (see pytest_conv3d_perf.timer). ``runtime`` says where the kernel runs
    (``runtime.interpreter``: under Triton's interpreter). The default times with CUDA
    events and returns None without a GPU or under the interpreter, which turns timing
    off."""


@pytest.hookspec(firstresult=True)
def pytest_conv3d_perf_device_info(config: pytest.Config) -> dict[str, Any] | None:
    """Return facts about the timing device; ``gpu`` (the model name) names the baseline
    file. The default reads them from torch, Triton and NVML."""
