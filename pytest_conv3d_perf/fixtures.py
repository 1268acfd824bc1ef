"""Fixtures for users' own tests; the suite's tests use the same ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch

from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import CaseError, Conv3dCase
from pytest_conv3d_perf.session import Conv3dSession

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

    def _run(self, runner: Any, target: Any, case: CaseLike, precision: str | None,
             trials: int | None) -> list[check.CheckReport]:
        resolved = self._case(case)
        rule = check.rule_for(precision or check.declared_precision(target))
        try:
            reports = runner(
                target, resolved, self._session.device,
                trials=trials or self._session.settings.trials,
                seed=self._session.settings.seed, rule=rule, scaled=self._session.scaled,
            )
        except check.ShapeError as exc:
            pytest.fail(str(exc), pytrace=False)
        if not reports[-1].ok:
            pytest.fail(reports[-1].message(), pytrace=False)
        return reports

    def __call__(self, fn: check.Conv3dFn, case: CaseLike = None, *, precision: str | None = None,
                 trials: int | None = None) -> list[check.CheckReport]:
        return self._run(check.check_function, fn, case, precision, trials)

    def model(self, model_cls: type[torch.nn.Module], case: CaseLike = None, *,
              precision: str | None = None, trials: int | None = None) -> list[check.CheckReport]:
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
