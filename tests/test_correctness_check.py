"""The correctness fixtures catch wrong kernels, and say what is wrong and where."""

import pytest
import torch

from pytest_conv3d_perf.check import rule_for

WRONG_KERNELS = """
import torch
import torch.nn.functional as F


def right(x, w, b, stride, padding, dilation):
    return F.conv3d(x, w, b, stride, padding, dilation)


def padding_off_by_one(x, w, b, stride, padding, dilation):
    pad = tuple(p + 1 for p in padding)
    y = F.conv3d(x, w, b, stride, pad, dilation)
    return y[:, :, 2:, 2:, 2:].contiguous()  # the window starts one element late


def dropped_bias(x, w, b, stride, padding, dilation):
    return F.conv3d(x, w, None, stride, padding, dilation)


def tile_never_written(x, w, b, stride, padding, dilation, out=None):
    y = F.conv3d(x, w, b, stride, padding, dilation)
    y[:, :2, :2, :2, :2] = out[:, :2, :2, :2, :2]  # this tile keeps what the buffer held
    out.copy_(y)
    return out


def nan_out(x, w, b, stride, padding, dilation):
    y = F.conv3d(x, w, b, stride, padding, dilation)
    y[0, 0, 0, 0, 0] = float("nan")
    return y


def low_precision(x, w, b, stride, padding, dilation):
    return F.conv3d(x, w, b, stride, padding, dilation) * (1 + 2e-3)
low_precision.precision = "tf32"


def wrong_shape(x, w, b, stride, padding, dilation):
    return F.conv3d(x, w, b, stride, padding, dilation)[:, :-1]
"""


@pytest.fixture
def run(pytester):
    pytester.makepyfile(kernels_under_test=WRONG_KERNELS)

    def go(kernel, case="odd_sizes_oc24", extra=""):
        pytester.makepyfile(
            test_k=f"""
import kernels_under_test as k

def test_kernel(conv3d_check):
    conv3d_check(k.{kernel}, "{case}"{extra})
"""
        )
        # Scaled-down cases on any machine, so the sizes in the messages are known.
        return pytester.runpytest("-p", "no:cacheprovider", "--conv3d-size=small")

    return go


def test_right_kernel_passes(run):
    run("right").assert_outcomes(passed=1)


def test_padding_off_by_one_is_caught(run):
    result = run("padding_off_by_one", case="video_c64")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*case 'video_c64' (scaled down), trial 0 (seed *): "
            "* elements fail fp32: allclose(atol=0.0001, rtol=0.0001)",
            "*largest absolute error * at (n=*, c=*, d=*, h=*, w=*): got *, expected *",
            "*largest relative error*",
        ]
    )


def test_dropped_bias_is_caught(run):
    result = run("dropped_bias", case="n1_oc17_bias")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*case 'n1_oc17_bias'*elements fail fp32*"])


def test_tile_never_written_is_caught_by_the_poison(run):
    result = run("tile_never_written")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*never written (poison survived the call): 32 elements*"])


def test_nan_never_passes(run):
    result = run("nan_out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NaN produced by the kernel: 1 elements*"])


def test_declared_precision_picks_its_rule_and_says_so(run):
    run("low_precision").assert_outcomes(passed=1)
    result = run("low_precision", extra=', precision="fp32"')
    result.stdout.fnmatch_lines(["*fail fp32: allclose(atol=0.0001, rtol=0.0001)*"])


def test_wrong_shape_is_reported(run):
    result = run("wrong_shape")
    result.stdout.fnmatch_lines(
        [
            "*expected a float32 output of shape (2, 24, 5, 5, 5), "
            "got torch.float32 (2, 23, 5, 5, 5)*"
        ]
    )


def test_user_sizes_as_a_table(pytester):
    pytester.makepyfile("""
import torch.nn.functional as F

def test_mine(conv3d_check):
    reports = conv3d_check(F.conv3d, {"name": "mine", "n": 1, "ic": 2, "oc": 3,
                                      "kernel": [1, 2, 3], "input": [3, 4, 5]}, trials=2)
    assert len(reports) == 2 and all(r.ok for r in reports)
""")
    pytester.runpytest().assert_outcomes(passed=1)


def test_model_class_with_other_weights_fails(pytester):
    pytester.makepyfile("""
import torch

class Shifted(torch.nn.Conv3d):
    def __init__(self, *args):
        super().__init__(*args)
        with torch.no_grad():
            self.weight.add_(1e-3)

def test_model(conv3d_check):
    conv3d_check.model(Shifted, "n1_oc17_bias")
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*case 'n1_oc17_bias'*elements fail*"])


def test_the_share_of_the_rule_is_the_worst_elements_error_over_its_bound():
    rule = rule_for("fp32")  # atol 1e-4, rtol 1e-4
    expected = torch.tensor([0.0, 1.0, -3.0], dtype=torch.float64)
    # Bounds 1e-4, 2e-4 and 4e-4: errors of half, a quarter and 1.5 times them.
    got = expected + torch.tensor([0.5e-4, -0.5e-4, 6e-4], dtype=torch.float64)
    assert rule.share_used(got, expected) == pytest.approx(1.5)
    assert rule.share_used(expected, expected) == 0.0


def test_a_report_keeps_the_worst_share_of_the_rule_over_its_slices():
    from pytest_conv3d_perf.check import CheckReport, compare

    rule = rule_for("fp32")
    report = CheckReport("c", rule)
    expected = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    # Slice one: a quarter of element 0's bound; slice two: 1.5 times element 1's.
    compare((expected + torch.tensor([[0.25e-4, 0.0]])).float(), expected, rule, report)
    assert report.share == pytest.approx(0.25, rel=1e-3) and report.ok
    compare((expected + torch.tensor([[0.0, 3e-4]])).float(), expected, rule, report)
    assert report.share == pytest.approx(1.5, rel=1e-3) and not report.ok
    compare(expected.float(), expected, rule, report)
    assert report.share == pytest.approx(1.5, rel=1e-3)
