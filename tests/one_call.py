"""One call of a conv3d function on fresh inputs of a case, held to the fp32 rule: the check
of tests that run a single config outside the plugin's correctness fixture."""

from __future__ import annotations

import torch

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


def assert_one_call_keeps_infinities(
    fn, device, kernel=(3, 3, 3), input=(6, 7, 9), channels=3, padding=0
) -> None:
    """``fn(x, weight, None, 1, padding)`` on ``channels`` input and 64 output channels (at
    least 3), with one infinity of each sign in two images' inputs, must give an infinity
    of the truth's sign wherever the truth has one, NaN where it has NaN, and the fp32 rule
    elsewhere. The weights are drawn at nn.Conv3d's scale (``check.weight_bound``), the one
    the rule is held at (BF16 products missed it with ``randn`` weights, 18 times that
    scale at K 315). A quarter of the output channels have weights that are multiples of
    1/256: exact in BF16 and TF32, so a kernel's split leaves them no rest (inf * 0),
    beside random weights whose rest may have either sign (inf - inf)."""
    x = torch.rand(2, channels, *input, device=device)
    x[0, 0, 2, 3, 4] = float("inf")
    x[1, 2, 3, 3, 5] = float("-inf")
    shape = (64, channels, *kernel)
    w = (torch.rand(shape, device=device) * 2 - 1) * check.weight_bound(shape)
    w[:16] = torch.round(w[:16] * 256) / 256
    got = fn(x, w, None, 1, padding).double()
    want = torch.nn.functional.conv3d(x.double(), w.double(), padding=padding)
    assert torch.isinf(want).any()
    assert_the_truths_infinities(got, want)


def assert_the_truths_infinities(got, want) -> None:
    """``got`` has an infinity of the truth's sign wherever ``want`` has one, NaN where it
    has NaN, and meets the fp32 rule everywhere else."""
    for sign in (1, -1):
        assert torch.equal(
            torch.isinf(got) & (sign * got > 0), torch.isinf(want) & (sign * want > 0)
        )
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    finite = torch.isfinite(want)
    assert check.rule_for("fp32").share_used(got[finite], want[finite]) <= 1
