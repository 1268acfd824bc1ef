"""Correctness: a conv3d callable against the float64 truth, by a named tolerance rule."""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pytest_conv3d_perf.cases import Conv3dCase


@dataclass(frozen=True)
class ToleranceRule:
    name: str
    atol: float
    rtol: float

    def describe(self) -> str:
        return f"{self.name}: allclose(atol={self.atol:g}, rtol={self.rtol:g})"

    def bound(self, expected: torch.Tensor) -> torch.Tensor:
        """Each element's allowed |got - expected|: atol + rtol |expected|."""
        return self.atol + self.rtol * expected.abs()

    def share_used(self, got: torch.Tensor, expected: torch.Tensor) -> float:
        """The largest |got - expected| / ``bound``: how much of the rule the worst element
        spends (above 1 it fails), for a margin rather than a pass."""
        return float(((got - expected).abs() / self.bound(expected)).max())


# fp32 is KernelBench's current rule. The tf32 rule is wide enough for a plain TF32 dot
# (measured 5e-4 to 1.2e-3 on KernelBench #66) and still catches indexing bugs.
RULES = {
    "fp32": ToleranceRule("fp32", 1e-4, 1e-4),
    "tf32": ToleranceRule("tf32", 5e-3, 5e-3),
    "bf16": ToleranceRule("bf16", 1e-2, 1e-2),
    "fp16": ToleranceRule("fp16", 1e-2, 1e-2),
}

# A quiet NaN with a payload no arithmetic produces: an element that still holds these
# bits after the call was never written.
POISON_BITS = 0x7FC0FFEE


def rule_for(precision: str | None) -> ToleranceRule:
    """The rule for a kernel's declared precision (None: the fp32 default)."""
    if precision is None:
        return RULES["fp32"]
    try:
        return RULES[precision]
    except KeyError:
        known = ", ".join(RULES)
        raise ValueError(f"unknown precision {precision!r}; known: {known}") from None


def declared_precision(fn: object) -> str | None:
    """A kernel declares the accuracy it promises with a ``precision`` attribute naming
    a rule (fp32, tf32, bf16, fp16); how it gets there is its own business."""
    value = getattr(fn, "precision", None)
    return value if isinstance(value, str) else None


@dataclass
class ErrorAt:
    value: float = 0.0
    index: tuple[int, ...] = ()
    got: float = 0.0
    expected: float = 0.0

    def describe(self) -> str:
        where = ", ".join(f"{k}={i}" for k, i in zip("ncdhw", self.index))
        return f"{self.value:.3e} at ({where}): got {self.got:.7g}, expected {self.expected:.7g}"


@dataclass
class CheckReport:
    case: str
    rule: ToleranceRule
    trial: int = 0
    seed: int = 0
    numel: int = 0
    outside: int = 0
    nan: int = 0
    unwritten: int = 0
    max_abs: ErrorAt = field(default_factory=ErrorAt)
    max_rel: ErrorAt = field(default_factory=ErrorAt)
    first_outside: tuple[int, ...] | None = None
    scaled: bool = False
    # The worst element's share of the rule (ToleranceRule.share_used; NaN aside): a margin
    # to compare kernels that both pass.
    share: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outside == 0 and self.nan == 0 and self.unwritten == 0

    def message(self) -> str:
        size = " (scaled down)" if self.scaled else ""
        head = (
            f"case {self.case!r}{size}, trial {self.trial} (seed {self.seed}): "
            f"{self.outside:,} of {self.numel:,} elements fail {self.rule.describe()}"
        )
        lines = [head]
        if self.unwritten:
            lines.append(f"  never written (poison survived the call): {self.unwritten:,} elements")
        if self.nan:
            lines.append(f"  NaN produced by the kernel: {self.nan:,} elements")
        lines.append(f"  largest absolute error {self.max_abs.describe()}")
        lines.append(
            f"  largest relative error {self.max_rel.describe()} "
            f"(|got - expected| / max(|expected|, atol))"
        )
        if self.first_outside is not None:
            lines.append(
                "  first element outside: ("
                + ", ".join(f"{k}={i}" for k, i in zip("ncdhw", self.first_outside))
                + ")"
            )
        return "\n".join(lines)


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


def compare(
    got: torch.Tensor,
    expected: torch.Tensor,
    rule: ToleranceRule,
    report: CheckReport,
    offset: tuple[int, ...] = (0, 0, 0, 0, 0),
) -> None:
    """Fold one slice's comparison into ``report``; ``offset`` places the slice."""
    shape = tuple(got.shape)
    unwritten = got.view(torch.int32) == POISON_BITS
    nan = torch.isnan(got) & ~unwritten
    got64 = got.double()
    diff = (got64 - expected).abs()
    bound = rule.bound(expected)
    bad = (diff > bound) | torch.isnan(got64)
    report.numel += got.numel()
    report.unwritten += int(unwritten.sum())
    report.nan += int(nan.sum())
    n_bad = int(bad.sum())
    if n_bad and report.first_outside is None:
        flat = int(torch.nonzero(bad.reshape(-1))[0])
        report.first_outside = tuple(a + b for a, b in zip(offset, _unravel(flat, shape)))
    report.outside += n_bad
    finite = torch.where(torch.isnan(diff), torch.zeros_like(diff), diff)
    rel = finite / expected.abs().clamp_min(rule.atol)
    if got.numel():
        share = float((finite / bound).max())
        report.share = max(report.share, share)
    for err, slot in ((finite, "max_abs"), (rel, "max_rel")):
        flat = int(torch.argmax(err))
        value = float(err.reshape(-1)[flat])
        if value > getattr(report, slot).value or not getattr(report, slot).index:
            setattr(
                report,
                slot,
                ErrorAt(
                    value,
                    tuple(a + b for a, b in zip(offset, _unravel(flat, shape))),
                    float(got.reshape(-1)[flat]),
                    float(expected.reshape(-1)[flat]),
                ),
            )


def case_seed(case: Conv3dCase, trial: int, base: int) -> int:
    return (base * 1_000_003 + zlib.crc32(case.name.encode()) + trial) % 2**31


@dataclass
class Inputs:
    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None


def weight_bound(weight_shape: tuple[int, ...]) -> float:
    """The bound of nn.Conv3d's uniform weights (and bias) for a weight of this shape: its
    kaiming_uniform_(a=sqrt(5)) reduces to 1/sqrt(fan_in). The scale the fp32 rule is held
    at: its atol is absolute, so weights of a larger scale spend more of it."""
    return 1.0 / math.sqrt(math.prod(weight_shape[1:]))


def random_inputs(case: Conv3dCase, device: torch.device, seed: int) -> Inputs:
    """KernelBench's inputs (torch.rand) and weights drawn as nn.Conv3d draws them."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    x = torch.rand(case.input_shape, generator=gen, device=device)
    bound = weight_bound(case.weight_shape)
    weight = (torch.rand(case.weight_shape, generator=gen, device=device) * 2 - 1) * bound
    bias = None
    if case.bias:
        bias = (torch.rand((case.oc,), generator=gen, device=device) * 2 - 1) * bound
    return Inputs(x, weight, bias)


def refill(x: torch.Tensor, seed: int) -> Callable[[], None]:
    """A function that refills ``x`` in place with new values drawn as ``random_inputs``
    draws it (uniform in [0, 1)): the same tensor, new contents at each call. Its own
    generator, on ``x``'s device: the caller's random stream does not move."""
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)

    def again() -> None:
        x.uniform_(0.0, 1.0, generator=gen)

    return again


def poisoned_output(case: Conv3dCase, device: torch.device) -> torch.Tensor:
    return torch.full(case.output_shape, POISON_BITS, dtype=torch.int32, device=device).view(
        torch.float32
    )


# The float64 truth is computed a few samples at a time: at full size (KernelBench #59) it
# is 5.3 GB, more than a 24 GB card holds beside everything else.
_CHUNK_ELEMENTS = 1 << 26


def compare_with_truth(
    got: torch.Tensor, inputs: Inputs, case: Conv3dCase, report: CheckReport
) -> None:
    per_sample = math.prod(case.output_shape[1:])
    step = max(1, _CHUNK_ELEMENTS // per_sample)
    bias = inputs.bias.double() if inputs.bias is not None else None
    weight = inputs.weight.double()
    for start in range(0, case.n, step):
        stop = min(case.n, start + step)
        expected = torch.nn.functional.conv3d(
            inputs.x[start:stop].double(),
            weight,
            bias,
            case.stride,
            case.padding,
            case.dilation,
        )
        compare(got[start:stop], expected, report.rule, report, offset=(start, 0, 0, 0, 0))


Conv3dFn = Callable[..., torch.Tensor]


def accepts_out(fn: Conv3dFn) -> bool:
    try:
        return "out" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def check_function(
    fn: Conv3dFn,
    case: Conv3dCase,
    device: torch.device,
    *,
    trials: int,
    seed: int,
    rule: ToleranceRule,
    scaled: bool = False,
) -> list[CheckReport]:
    """``fn(x, weight, bias, stride, padding, dilation[, out=])`` over fresh inputs."""
    poison = accepts_out(fn)

    def trial(s: int) -> tuple[torch.Tensor, Inputs]:
        inputs = random_inputs(case, device, s)
        args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        if poison:
            return fn(*args, out=poisoned_output(case, device)), inputs
        return fn(*args), inputs

    return _run_trials(case, trials, seed, rule, scaled, trial)


def check_model(
    model_cls: type[torch.nn.Module],
    case: Conv3dCase,
    device: torch.device,
    *,
    trials: int,
    seed: int,
    rule: ToleranceRule,
    scaled: bool = False,
) -> list[CheckReport]:
    """KernelBench's way: seed, build the model, then fresh ``torch.rand`` inputs per trial.

    The truth uses the weights ``nn.Conv3d`` draws after the same seed, so a model that
    draws its weights differently fails here.
    """
    s0 = case_seed(case, 0, seed)
    torch.manual_seed(s0)
    model = model_cls(*case.model_args()).to(device)
    torch.manual_seed(s0)
    truth = torch.nn.Conv3d(*case.model_args()).to(device)
    weight = truth.weight.detach()
    bias = None if truth.bias is None else truth.bias.detach()

    def trial(s: int) -> tuple[torch.Tensor, Inputs]:
        gen = torch.Generator(device=device)
        gen.manual_seed(s)
        x = torch.rand(case.input_shape, generator=gen, device=device)
        with torch.no_grad():
            return model(x), Inputs(x, weight, bias)

    return _run_trials(case, trials, seed, rule, scaled, trial)


def _run_trials(
    case: Conv3dCase,
    trials: int,
    seed: int,
    rule: ToleranceRule,
    scaled: bool,
    trial: Callable[[int], tuple[torch.Tensor, Inputs]],
) -> list[CheckReport]:
    """Run ``trial(seed)`` per trial and compare with the truth; stop at the first failure."""
    reports = []
    for index in range(trials):
        s = case_seed(case, index, seed)
        got, inputs = trial(s)
        _check_shape(got, case)
        report = CheckReport(case.name, rule, index, s, scaled=scaled)
        compare_with_truth(got, inputs, case, report)
        reports.append(report)
        if not report.ok:
            break
    return reports


class ShapeError(AssertionError):
    pass


def _check_shape(got: object, case: Conv3dCase) -> None:
    if not isinstance(got, torch.Tensor):
        raise ShapeError(
            f"case {case.name!r}: the kernel returned {type(got).__name__}, not a tensor"
        )
    if tuple(got.shape) != case.output_shape or got.dtype != torch.float32:
        raise ShapeError(
            f"case {case.name!r}: expected a float32 output of shape {case.output_shape}, "
            f"got {got.dtype} {tuple(got.shape)}"
        )


def truth_report(got: object, inputs: Inputs, case: Conv3dCase, rule: ToleranceRule) -> CheckReport:
    """``got`` against the float64 truth by ``rule``; ShapeError where it is no float32
    tensor of the case's output shape."""
    _check_shape(got, case)
    report = CheckReport(case.name, rule)
    compare_with_truth(got, inputs, case, report)
    return report


def fresh_output_error(got: object, inputs: Inputs, case: Conv3dCase, rule: ToleranceRule) -> str:
    """Why the output of a timed call on fresh inputs is wrong, or '' where it matches the
    float64 truth. A kernel that keeps its results for repeated tensors (by identity, say)
    returns the kept one here: timed on that path, it would pass while callers with new
    values pay the slow one. Output that is no tensor is not checked: the fake kernel
    package of the plugin's tests returns objects that declare a simulated time."""
    if not isinstance(got, torch.Tensor):
        return ""
    try:
        report = truth_report(got, inputs, case, rule)
    except ShapeError as exc:
        return f"a timed call on fresh inputs: {exc}"
    if report.ok:
        return ""
    return (
        "the output of a timed call on fresh inputs differs from the float64 truth "
        f"({report.outside:,} of {report.numel:,} elements outside {rule.describe()}; "
        f"largest absolute error {report.max_abs.describe()}): a kernel that returns "
        "results kept from earlier calls?"
    )
