"""Fixtures for users' own tests; the suite's tests use the same ones.

The fixture objects receive what they need (a case resolver, the device, a function that
times, a function that shows a line) as plain values and callbacks, as pytest-benchmark's
BenchmarkFixture does; only the fixture functions below know the run's state. Importing
this module imports neither torch nor the kernel: the plugin stays invisible until used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pytest_conv3d_perf.cases import Conv3dCase

    CaseLike = Conv3dCase | str | Mapping[str, Any] | None


@dataclass(frozen=True)
class CheckContext:
    resolve: Callable[[Any], Conv3dCase]
    device: Any
    trials: int
    seed: int
    scaled: bool


class Conv3dChecker:
    """``conv3d_check(fn, case)`` checks ``fn(x, weight, bias, stride, padding, dilation)``
    (poisoning ``out=`` when ``fn`` takes it); ``conv3d_check.model(ModelNew, case)``
    checks a KernelBench-style module class. Both fail the test with the errors."""

    def __init__(self, context: CheckContext, default_case: Conv3dCase | None) -> None:
        self._context = context
        self._default = default_case

    def _case(self, case: CaseLike) -> Conv3dCase:
        if case is None:
            if self._default is None:
                raise pytest.UsageError(
                    "conv3d_check needs a case: pass case=..., or use the conv3d_case fixture"
                )
            return self._default
        from pytest_conv3d_perf.cases import CaseError

        try:
            return self._context.resolve(case)
        except CaseError as exc:
            pytest.fail(str(exc), pytrace=False)

    def _run(
        self, runner: Any, target: Any, case: CaseLike, precision: str | None, trials: int | None
    ) -> list[Any]:
        from pytest_conv3d_perf import check

        resolved = self._case(case)
        try:
            rule = check.rule_for(precision or check.declared_precision(target))
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        ctx = self._context
        try:
            reports = runner(
                target,
                resolved,
                ctx.device,
                trials=trials or ctx.trials,
                seed=ctx.seed,
                rule=rule,
                scaled=ctx.scaled,
            )
        except check.ShapeError as exc:
            pytest.fail(str(exc), pytrace=False)
        if not reports[-1].ok:
            pytest.fail(reports[-1].message(), pytrace=False)
        return reports

    def __call__(
        self,
        fn: Callable[..., Any],
        case: CaseLike = None,
        *,
        precision: str | None = None,
        trials: int | None = None,
    ) -> list[Any]:
        from pytest_conv3d_perf import check

        return self._run(check.check_function, fn, case, precision, trials)

    def model(
        self,
        model_cls: type,
        case: CaseLike = None,
        *,
        precision: str | None = None,
        trials: int | None = None,
    ) -> list[Any]:
        from pytest_conv3d_perf import check

        return self._run(check.check_model, model_cls, case, precision, trials)


class Conv3dPerf:
    """``conv3d_perf(fn, *args, reference=..., flop=..., name=..., **kwargs)`` times
    ``fn(*args, **kwargs)`` against this test's baseline; ``conv3d_perf.case(fn, case,
    name=...)`` times a conv3d callable on a case with PyTorch's conv3d as the
    interleaved reference (``name``: the entry's name when two kernels share a case).
    Without ``--conv3d-perf`` (or without a GPU) the callable runs once, as a smoke test."""

    def __init__(
        self,
        *,
        time_case: Callable[..., Any],
        thresholds: Callable[[Conv3dCase | None], Any],
        context: CheckContext,
        nodeid: str,
        test_name: str,
        default_case: Conv3dCase | None,
        show: Callable[[str], None],
        record: Callable[[str], None],
    ) -> None:
        self._time_case = time_case
        self._thresholds_for = thresholds
        self._context = context
        self._nodeid = nodeid
        self._test_name = test_name
        self._default = default_case
        self._show = show
        self._record = record

    def _thresholds(self, case: Conv3dCase | None) -> Any:
        try:
            return self._thresholds_for(case)
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)

    def _finish(self, result: Any) -> Any:
        if result is None:
            return None
        from pytest_conv3d_perf.report import progress_line

        line = progress_line(result)
        self._show(line)
        self._record(line)
        if result.fails:
            pytest.fail(line, pytrace=False)
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
        return self._finish(
            self._time_case(
                name or self._test_name,
                self._nodeid,
                call,
                ref,
                fn,
                self._thresholds(None),
                flop,
                replay=lambda other: lambda: other(*args, **kwargs),
            )
        )

    def case(
        self, fn: Callable[..., Any], case: CaseLike = None, *, name: str | None = None
    ) -> Any:
        import torch

        from pytest_conv3d_perf import check
        from pytest_conv3d_perf.cases import CaseError

        if case is None and self._default is None:
            raise pytest.UsageError("conv3d_perf.case needs a case, or the conv3d_case fixture")
        try:
            resolved = self._default if case is None else self._context.resolve(case)
        except CaseError as exc:
            pytest.fail(str(exc), pytrace=False)
        assert resolved is not None
        try:
            rule = check.rule_for(check.declared_precision(fn))
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        seed = self._context.seed
        inputs = check.random_inputs(resolved, self._context.device, seed)
        args = (
            inputs.x,
            inputs.weight,
            inputs.bias,
            resolved.stride,
            resolved.padding,
            resolved.dilation,
        )
        # New values in x before each timed call (the timers call it outside the timed
        # window): a kernel that keeps results for repeated tensors is then timed on the
        # path a caller with new inputs takes. Weights stay: a kernel may keep them
        # prepared. A seed of its own: its first draw must not be the x the warm-up saw.
        fresh = check.refill(inputs.x, check.case_seed(resolved, 1, seed))

        def call() -> object:
            return fn(*args)

        def reference() -> object:
            return torch.nn.functional.conv3d(*args)

        def replay(other: Any) -> Callable[[], object]:
            def again() -> object:
                return other(*args)

            again.conv3d_prepare = fresh  # type: ignore[attr-defined]
            return again

        def verify() -> str:
            # One more call as a timed one is made, on new values: a kept result shows.
            fresh()
            return check.fresh_output_error(call(), inputs, resolved, rule)

        call.conv3d_prepare = fresh  # type: ignore[attr-defined]
        reference.conv3d_prepare = fresh  # type: ignore[attr-defined]
        return self._finish(
            self._time_case(
                name or resolved.name,
                self._nodeid,
                call,
                reference,
                fn,
                self._thresholds(resolved),
                resolved.flop,
                resolved,
                replay=replay,
                verify=verify,
            )
        )


def _run(request: pytest.FixtureRequest) -> Any:
    from pytest_conv3d_perf.session import activate

    return activate(request.config)


def _context(run: Any) -> CheckContext:
    return CheckContext(
        resolve=run.resolve_case,
        device=run.device,
        trials=run.settings.trials,
        seed=run.settings.seed,
        scaled=run.scaled,
    )


def _default_case(request: pytest.FixtureRequest) -> Conv3dCase | None:
    if "conv3d_case" in request.fixturenames:
        return request.getfixturevalue("conv3d_case")
    return None


@pytest.fixture
def conv3d_device(request: pytest.FixtureRequest) -> Any:
    """The device the kernel runs on: cuda, or cpu under Triton's interpreter."""
    return _run(request).device


def _configured(request: pytest.FixtureRequest, setting: str) -> Any:
    from pytest_conv3d_perf.target import TargetError

    run = _run(request)
    try:
        return run.load(run.kernel if setting == "conv3d_kernel" else run.model, setting)
    except TargetError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def conv3d_kernel(request: pytest.FixtureRequest) -> Any:
    """The kernel under test, named by the conv3d_kernel ini value (module:function)."""
    return _configured(request, "conv3d_kernel")


@pytest.fixture
def conv3d_model(request: pytest.FixtureRequest) -> Any:
    """The kernel's module class, named by the conv3d_model ini value (module:Class)."""
    return _configured(request, "conv3d_model")


@pytest.fixture
def conv3d_check(request: pytest.FixtureRequest) -> Conv3dChecker:
    """Check a conv3d callable against the float64 truth (see Conv3dChecker)."""
    run = _run(request)
    return Conv3dChecker(_context(run), _default_case(request))


@pytest.fixture
def conv3d_perf(request: pytest.FixtureRequest) -> Conv3dPerf:
    """Time a callable against the stored baseline (see Conv3dPerf)."""
    from pytest_conv3d_perf.session import PROPERTY

    run = _run(request)
    marker = request.node.get_closest_marker("conv3d_perf")
    marks = dict(marker.kwargs) if marker else {}
    node = request.node
    return Conv3dPerf(
        time_case=run.time_case,
        thresholds=lambda case: run.thresholds(case, marks),
        context=_context(run),
        nodeid=node.nodeid,
        test_name=node.name,
        default_case=_default_case(request),
        show=run.finish_line,
        record=lambda line: node.user_properties.append((PROPERTY, line)),
    )
