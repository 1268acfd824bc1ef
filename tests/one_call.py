"""One call of a conv3d function on fresh inputs of a case, held to the fp32 rule: the check
of tests that run a single config outside the plugin's correctness fixture."""

from __future__ import annotations

from pytest_conv3d_perf import check


def assert_one_call_computes_the_truth(fn, case, device) -> None:
    """``fn(x, weight, bias, stride, padding, dilation, out=...)``, called once on
    ``case``'s inputs into a poisoned output, must meet the fp32 rule."""
    seed = check.case_seed(case, 0, 1)
    inputs = check.random_inputs(case, device, seed)
    got = fn(
        inputs.x,
        inputs.weight,
        inputs.bias,
        case.stride,
        case.padding,
        case.dilation,
        out=check.poisoned_output(case, device),
    )
    report = check.CheckReport(case.name, check.rule_for("fp32"), 0, seed)
    check.compare_with_truth(got, inputs, case, report)
    assert report.ok, report.message()
