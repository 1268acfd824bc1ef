"""The pytest hooks, kept thin. Until a project uses the plugin (an ini value of its, one of
its options, or a test that requests one of its fixtures) they do nothing: no torch import,
no environment variable, no header, no CUDA. Once used, the run's state (session.py) is
registered as a plugin and its methods are the hooks."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_conv3d_perf import hookspec
from pytest_conv3d_perf.fixtures import (  # noqa: F401  (registered as this plugin's fixtures)
    conv3d_check,
    conv3d_device,
    conv3d_kernel,
    conv3d_model,
    conv3d_perf,
)
from pytest_conv3d_perf.settings import add_options, requested


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "conv3d_perf(fail=None, warn=None): this test's gate thresholds in percent",
    )
    if config.getoption("help", False) or not requested(config):
        return
    from pytest_conv3d_perf.session import activate

    activate(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    from sys import modules

    session = modules.get("pytest_conv3d_perf.session")
    if session is not None:
        session.deactivate(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conv3d_case" in metafunc.fixturenames:
        from pytest_conv3d_perf.session import activate

        cases = activate(metafunc.config).cases
        metafunc.parametrize("conv3d_case", cases, ids=[c.name for c in cases])


@pytest.hookimpl(trylast=True)
def pytest_conv3d_perf_make_timer(config: pytest.Config, l2: str, runtime: Any) -> Any:
    if runtime.interpreter:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    from pytest_conv3d_perf.timer import CudaTimer

    return CudaTimer(l2)


@pytest.hookimpl(trylast=True)
def pytest_conv3d_perf_device_info(config: pytest.Config) -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from pytest_conv3d_perf.environment import cuda_device_info

    return cuda_device_info()
