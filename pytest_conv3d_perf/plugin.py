"""The pytest hooks, kept thin: each one hands over to the run's Conv3dSession."""

from __future__ import annotations

import pytest

from pytest_conv3d_perf.cases import CaseError
from pytest_conv3d_perf.fixtures import conv3d_check, conv3d_device  # noqa: F401
from pytest_conv3d_perf.runtime import DeviceError
from pytest_conv3d_perf.session import Conv3dSession
from pytest_conv3d_perf.settings import Settings, SettingsError, add_options

session_key = pytest.StashKey[Conv3dSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "conv3d_perf(fail=None, warn=None): this test's gate thresholds in percent",
    )
    if config.getoption("help", False):
        return
    try:
        settings = Settings.from_config(config)
        config.stash[session_key] = Conv3dSession.start(settings, config.rootpath)
    except (SettingsError, CaseError, DeviceError) as exc:
        raise pytest.UsageError(f"conv3d-perf: {exc}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    if session_key in config.stash:
        del config.stash[session_key]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return config.stash[session_key].header() if session_key in config.stash else []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conv3d_case" in metafunc.fixturenames:
        cases = metafunc.config.stash[session_key].cases
        metafunc.parametrize("conv3d_case", cases, ids=[c.name for c in cases])
