"""Each KernelBench problem's file gets a ModelNew its harness accepts: built from the
problem's own constructor arguments as its Model is, same weights for the same seed, same
output shape, values within the fp32 rule."""

import importlib.util

import pytest
import torch

from kernels.kernelbench import PROBLEMS, Problem, model_source
from pytest_conv3d_perf import check


def problem_model(problem: Problem, in_channels, out_channels, kernel_size, *rest):
    """The problem's Model as its file defines it: one nn.Conv3d, no bias by default."""
    stride, padding, dilation = [*rest, 1, 0, 1][:3]
    if isinstance(kernel_size, int):
        k = kernel_size
        kernel_size = (k, k, 1) if problem.flat_int_kernel else (k, k, k)
    return torch.nn.Conv3d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=False,
    )


def load_as_kernelbench_does(source: str, tmp_path, name: str):
    # KernelBench writes the custom model to a file and imports it (Triton reads the
    # source of a jit function from its file).
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelNew


@pytest.mark.parametrize("number", sorted(PROBLEMS))
def test_model_new_for_each_problem_matches_its_model(number, tmp_path, conv3d_device):
    problem = PROBLEMS[number]
    model_new = load_as_kernelbench_does(model_source(number), tmp_path, f"model_new_{number}")
    torch.manual_seed(42)
    ref = problem_model(problem, *problem.init_inputs).to(conv3d_device)
    torch.manual_seed(42)
    mine = model_new(*problem.init_inputs).to(conv3d_device)
    assert torch.equal(ref.weight, mine.weight)
    c = problem.input_shape[1]
    if conv3d_device.type == "cuda":
        shape = problem.input_shape
    else:
        # The interpreter: the problem's channels and kernel, spatial sizes cut down.
        shape = (2, c, *(k + 2 for k in problem.kernel()))
    x = torch.rand(shape, device=conv3d_device)
    with torch.no_grad():
        expected = ref.double()(x.double())
        got = mine(x)
    assert got.shape == expected.shape
    report = check.CheckReport(f"kb{number}", check.rule_for("fp32"))
    check.compare(got, expected, report.rule, report)
    assert report.ok, report.message()


def test_problem_59_is_a_flat_kernel_and_the_others_are_not():
    assert PROBLEMS[59].kernel() == (3, 3, 1)
    assert PROBLEMS[54].kernel() == (3, 3, 3)
    assert "class ModelNew(_ModelNew)" in model_source(59)
    assert "_ModelNew" not in model_source(54)
