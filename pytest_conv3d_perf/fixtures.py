"""Fixtures for users' own tests; the suite's tests use the same ones."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from pytest_conv3d_perf import check, report
from pytest_conv3d_perf.cases import CaseError, Conv3dCase
from pytest_conv3d_perf.session import Conv3dSession
from pytest_conv3d_perf.settings import SettingsError
from pytest_conv3d_perf.verdict import Thresholds

CaseLike = Conv3dCase | str | Mapping[str, Any] | None


class Conv3dChecker:
    """``conv3d_check(fn, case)`` checks ``fn(x, weight, bias, stride, padding, dilation)``
    (poisoning ``out=`` when ``fn`` takes it); ``conv3d_check.model(ModelNew, case)``
    checks a KernelBench-style module class. Both fail the test with the errors."""

    def __init__(self, session: Conv3dSession, default_case: Conv3dCase | None) -> None:
        self._session = session
        self._default = default_case

    def _case(self, case: CaseLike) -> Conv3dCase:
        if case is None:
            if self._default is None:
                raise pytest.UsageError(
                    "conv3d_check needs a case: pass case=..., or use the conv3d_case fixture"
                )
            return self._default
        try:
            return self._session.resolve_case(case)
        except CaseError as exc:
            pytest.fail(str(exc), pytrace=False)

    def _run(
        self, runner: Any, target: Any, case: CaseLike, precision: str | None, trials: int | None
    ) -> list[check.CheckReport]:
        resolved = self._case(case)
        rule = check.rule_for(precision or check.declared_precision(target))
        try:
            reports = runner(
                target,
                resolved,
                self._session.device,
                trials=trials or self._session.settings.trials,
                seed=self._session.settings.seed,
                rule=rule,
                scaled=self._session.scaled,
            )
        except check.ShapeError as exc:
            pytest.fail(str(exc), pytrace=False)
        if not reports[-1].ok:
            pytest.fail(reports[-1].message(), pytrace=False)
        return reports

    def __call__(
        self,
        fn: check.Conv3dFn,
        case: CaseLike = None,
        *,
        precision: str | None = None,
        trials: int | None = None,
    ) -> list[check.CheckReport]:
        return self._run(check.check_function, fn, case, precision, trials)

    def model(
        self,
        model_cls: type[torch.nn.Module],
        case: CaseLike = None,
        *,
        precision: str | None = None,
        trials: int | None = None,
    ) -> list[check.CheckReport]:
        return self._run(check.check_model, model_cls, case, precision, trials)


def _session(request: pytest.FixtureRequest) -> Conv3dSession:
    from pytest_conv3d_perf.plugin import session_key

    return request.config.stash[session_key]


@pytest.fixture
def conv3d_device(request: pytest.FixtureRequest) -> torch.device:
    """The device the kernel runs on: cuda, or cpu under Triton's interpreter."""
    return _session(request).device


@pytest.fixture
def conv3d_check(request: pytest.FixtureRequest) -> Conv3dChecker:
    """Check a conv3d callable against the float64 truth (see Conv3dChecker)."""
    default = None
    if "conv3d_case" in request.fixturenames:
        default = request.getfixturevalue("conv3d_case")
    return Conv3dChecker(_session(request), default)


class Conv3dPerf:
    """``conv3d_perf(fn, *args, reference=..., flop=..., **kwargs)`` times ``fn(*args,
    **kwargs)`` against this test's baseline; ``conv3d_perf.case(fn, case)`` times a conv3d
    callable on a case with PyTorch's conv3d as the interleaved reference. Without
    ``--conv3d-perf`` (or without a GPU) the callable runs once, as a smoke test."""

    def __init__(
        self,
        session: Conv3dSession,
        request: pytest.FixtureRequest,
        default_case: Conv3dCase | None,
    ) -> None:
        self._session = session
        self._request = request
        self._default = default_case
        marker = request.node.get_closest_marker("conv3d_perf")
        self._marker = dict(marker.kwargs) if marker else {}

    def _thresholds(self, case: Conv3dCase | None) -> Thresholds:
        try:
            return self._session.thresholds(case, self._marker)
        except (SettingsError, ValueError) as exc:
            pytest.fail(str(exc), pytrace=False)

    def _finish(self, result: Any) -> Any:
        if result is None:
            return None
        plugins = self._request.config.pluginmanager
        tr = plugins.get_plugin("terminalreporter")
        capture = plugins.get_plugin("capturemanager")
        if tr is not None:
            # Progress while measuring: shown live, so capture is suspended around it.
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                tr.ensure_newline()
                tr.write_line(report.progress_line(result))
        if result.fails:
            pytest.fail(report.progress_line(result), pytrace=False)
        return result

    def __call__(
        self,
        fn: Any,
        *args: Any,
        name: str | None = None,
        reference: Any = None,
        flop: int | None = None,
        **kwargs: Any,
    ) -> Any:
        def call() -> object:
            return fn(*args, **kwargs)

        ref = (lambda: reference(*args, **kwargs)) if reference is not None else None
        node = self._request.node
        return self._finish(
            self._session.gate(
                name or node.name,
                node.nodeid,
                call,
                ref,
                fn,
                self._thresholds(None),
                flop,
            )
        )

    def case(self, fn: check.Conv3dFn, case: CaseLike = None) -> Any:
        if case is None and self._default is None:
            raise pytest.UsageError("conv3d_perf.case needs a case, or the conv3d_case fixture")
        resolved = self._default if case is None else self._session.resolve_case(case)
        assert resolved is not None
        device = self._session.device
        inputs = check.random_inputs(resolved, device, self._session.settings.seed)
        args = (
            inputs.x,
            inputs.weight,
            inputs.bias,
            resolved.stride,
            resolved.padding,
            resolved.dilation,
        )

        def call() -> object:
            return fn(*args)

        def reference() -> object:
            return torch.nn.functional.conv3d(*args)

        return self._finish(
            self._session.gate(
                resolved.name,
                self._request.node.nodeid,
                call,
                reference,
                fn,
                self._thresholds(resolved),
                resolved.flop,
                resolved,
            )
        )


@pytest.fixture
def conv3d_perf(request: pytest.FixtureRequest) -> Conv3dPerf:
    """Time a callable against the stored baseline (see Conv3dPerf)."""
    default = None
    if "conv3d_case" in request.fixturenames:
        default = request.getfixturevalue("conv3d_case")
    return Conv3dPerf(_session(request), request, default)
