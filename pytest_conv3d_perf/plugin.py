"""The pytest hooks, kept thin: each one hands over to the run's Conv3dSession."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_conv3d_perf import hookspec
from pytest_conv3d_perf.baseline import BaselineError
from pytest_conv3d_perf.cases import CaseError
from pytest_conv3d_perf.fixtures import conv3d_check, conv3d_device, conv3d_perf  # noqa: F401
from pytest_conv3d_perf.runtime import DeviceError
from pytest_conv3d_perf.session import Conv3dSession
from pytest_conv3d_perf.settings import Settings, SettingsError, add_options

session_key = pytest.StashKey[Conv3dSession]()


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
    if config.getoption("help", False):
        return
    try:
        settings = Settings.from_config(config)
        session = Conv3dSession.start(settings, config.rootpath)
        if settings.perf and _is_xdist_controller(config):
            # The controller runs no test: it must not hold a GPU the workers time on.
            session.merging = True
        elif settings.perf:
            _pin_xdist_worker(config)
            session.enable_timing(
                config.hook.pytest_conv3d_perf_make_timer(config=config, l2=settings.l2),
                config.hook.pytest_conv3d_perf_device_info(config=config),
            )
    except (SettingsError, CaseError, DeviceError, BaselineError) as exc:
        raise pytest.UsageError(f"conv3d-perf: {exc}") from None
    config.stash[session_key] = session


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"


def _pin_xdist_worker(config: pytest.Config) -> None:
    """One xdist worker per GPU: two timings on one GPU would disturb each other."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        return
    import torch

    count = torch.cuda.device_count()
    index = int(str(worker["workerid"]).lstrip("gw"))
    if count and int(worker.get("workercount", 1)) > count:
        raise DeviceError(
            f"--conv3d-perf with {worker['workercount']} xdist workers but {count} GPU(s): "
            f"use at most one worker per GPU (-n {count})"
        )
    if count:
        torch.cuda.set_device(index)


@pytest.hookimpl(trylast=True)
def pytest_conv3d_perf_make_timer(config: pytest.Config, l2: str) -> Any:
    session = config.stash.get(session_key, None)
    import torch

    if not torch.cuda.is_available() or (session and session.runtime.interpreter):
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


def pytest_unconfigure(config: pytest.Config) -> None:
    if session_key in config.stash:
        del config.stash[session_key]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return config.stash[session_key].header() if session_key in config.stash else []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conv3d_case" in metafunc.fixturenames:
        cases = metafunc.config.stash[session_key].cases
        metafunc.parametrize("conv3d_case", cases, ids=[c.name for c in cases])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A baseline update measures; it does not re-run the correctness tests."""
    session = config.stash.get(session_key, None)
    if session is None or not session.settings.perf_only:
        return
    keep = [i for i in items if "conv3d_perf" in getattr(i, "fixturenames", ())]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if session_key in config.stash:
        state = config.stash[session_key]
        worker = hasattr(config, "workerinput")
        try:
            # A worker updates its own GPU's baseline file (under the file lock) and hands
            # its results to the controller, which writes one report for the whole run.
            state.finish(reports=not worker)
        except BaselineError as exc:
            raise pytest.UsageError(f"conv3d-perf: {exc}") from None
        if worker:
            config.workeroutput["conv3d_perf"] = state.worker_output()  # type: ignore[attr-defined]
        elif state.refused and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker finished; its timed results join the controller's report."""
    state = node.config.stash.get(session_key, None)
    data = getattr(node, "workeroutput", {}).get("conv3d_perf")
    if state is not None and data:
        state.merge_worker(data)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if session_key not in config.stash:
        return
    state = config.stash[session_key]
    lines = state.summary_lines()
    if lines:
        terminalreporter.section("conv3d-perf")
        for line in lines:
            terminalreporter.write_line(line)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        # An annotation names the failing cases on the check itself.
        for line in state.annotations():
            terminalreporter.write_line(line)
