"""Cases as data: the built-in suite, users' own cases, and clear errors for bad ones."""

import pytest

from pytest_conv3d_perf.cases import (
    CaseError,
    builtin_cases,
    case_from_mapping,
    scaled_down,
)

KERNELBENCH_FLOP = {"kb54": 3.95e10, "kb59": 3.57e10, "kb60": 1.39e11, "kb66": 6.83e10}


def test_kernelbench_problems_have_their_published_sizes_and_flop():
    suite = {c.name: c for c in builtin_cases()}
    for name, flop in KERNELBENCH_FLOP.items():
        assert suite[name].flop == pytest.approx(flop, rel=0.005)
    assert suite["kb66"].output == (14, 124, 122)
    assert suite["kb59"].output == (254, 254, 10)


def test_suite_covers_the_edge_cases():
    suite = builtin_cases()
    assert any(c.stride != (1, 1, 1) for c in suite)
    assert any(c.dilation != (1, 1, 1) for c in suite)
    assert any(c.bias for c in suite)
    assert any(c.n == 1 for c in suite)
    assert any(c.kernel == (1, 1, 1) for c in suite)
    assert any(c.oc % 16 for c in suite)
    assert any(c.ic >= 64 and c.oc >= 64 and any(c.padding) for c in suite)


@pytest.mark.parametrize("case", builtin_cases(), ids=lambda c: c.name)
def test_scaled_variant_keeps_what_makes_the_case(case):
    small = case.scaled()
    assert small.name == case.name
    assert (small.kernel, small.stride, small.padding, small.dilation, small.bias) == (
        case.kernel,
        case.stride,
        case.padding,
        case.dilation,
        case.bias,
    )
    assert small.oc % 16 == case.oc % 16
    assert max(small.output) <= 5 and small.n <= 2 and small.ic <= 4
    assert all(o >= 1 for o in small.output)


def test_explicit_small_variant_overrides_the_derived_one():
    case = case_from_mapping(
        {
            "name": "x",
            "n": 4,
            "ic": 8,
            "oc": 8,
            "kernel": 3,
            "input": 20,
            "small": {"input": [4, 5, 6]},
        }
    )
    assert case.scaled().input == (4, 5, 6) and case.scaled().n == 4
    assert scaled_down(case).input != (4, 5, 6)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"n": -1}, "field 'n': expected a positive integer, got -1"),
        ({"ic": "3"}, "field 'ic': expected a positive integer, got '3'"),
        ({"kernel": [3, 3]}, "field 'kernel': expected an integer or 3 integers"),
        ({"kernel": 9, "input": 4}, "field 'kernel': the kernel spans 9 along axis 2"),
        ({"padding": -1}, "field 'padding': every value must be >= 0"),
        ({"stride": 0}, "field 'stride': every value must be >= 1"),
        ({"bias": "yes"}, "field 'bias': expected true or false"),
        ({"groups": 2}, "field 'groups': only groups=1 is supported"),
        ({"colour": 1}, "unknown field 'colour'"),
        ({"fail_threshold": 150}, "field 'fail_threshold': expected a percentage"),
    ],
)
def test_bad_case_names_the_case_and_field(fields, message):
    data = {"name": "bad", "n": 1, "ic": 1, "oc": 1, "kernel": 3, "input": 8, **fields}
    with pytest.raises(CaseError, match="case 'bad': " + message.replace("(", r"\(")):
        case_from_mapping(data)


def test_cases_from_pyproject_are_added_and_selectable(pytester):
    pytester.makepyprojecttoml("""
[[tool.conv3d-perf.cases]]
name = "mine"
n = 1
ic = 2
oc = 5
kernel = [1, 2, 3]
input = [4, 5, 6]
""")
    pytester.makepyfile("""
def test_case(conv3d_case):
    assert conv3d_case.name == "mine" and conv3d_case.oc == 5
""")
    result = pytester.runpytest("--conv3d-case=mine", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_case[[]mine[]] PASSED*"])


def test_cases_file_option_and_ini(pytester):
    pytester.makefile(
        ".json",
        extra='{"cases": [{"name": "j", "n": 1, "ic": 1, "oc": 2, '
        '"kernel": 1, "input": [2, 2, 2]}]}',
    )
    pytester.makeini("[pytest]\nconv3d_cases_file = extra.json\n")
    pytester.makepyfile("def test_case(conv3d_case):\n    assert conv3d_case.name == 'j'\n")
    pytester.runpytest("--conv3d-case=j").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "toml, message",
    [
        (
            '[[cases]]\nname = "neg"\nn = -2\nic = 1\noc = 1\nkernel = 1\ninput = 4\n',
            "*case 'neg': field 'n': expected a positive integer, got -2*",
        ),
        (
            '[[cases]]\nname = "big"\nn = 1\nic = 1\noc = 1\nkernel = 7\ninput = 4\n',
            "*case 'big': field 'kernel': the kernel spans 7*",
        ),
        (
            '[[cases]]\nname = "kb54"\nn = 1\nic = 1\noc = 1\nkernel = 1\ninput = 4\n',
            "*case 'kb54' is defined twice*",
        ),
        ("[[cases]\n", "*extra.toml' is not valid TOML*"),
    ],
)
def test_bad_case_file_is_a_usage_error(pytester, toml, message):
    pytester.makefile(".toml", extra=toml)
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--conv3d-cases-file=extra.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--conv3d-fail=abc"],
            "*--conv3d-fail: expected a percentage such as 2 or 1.5%, got 'abc'",
        ),
        (["--conv3d-warn=3", "--conv3d-fail=2"], "*--conv3d-warn (3%) must not be above*"),
        (["--conv3d-device=tpu"], "*--conv3d-device: expected one of auto, cuda, cpu, got 'tpu'"),
        (["--conv3d-trials=0"], "*--conv3d-trials: expected an integer >= 1, got '0'"),
        (["--conv3d-unstable=maybe"], "*--conv3d-unstable: expected one of fail, pass*"),
        (["--conv3d-case=nope"], "*unknown case 'nope'; known cases: c3d_conv3a, dilated2, kb54*"),
    ],
)
def test_bad_options_are_usage_errors(pytester, args, message):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_help_lists_the_options(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*conv3d kernel correctness and performance gate*",
            "*--conv3d-perf*",
            "*--conv3d-fail=VALUE*",
        ]
    )


def test_header_says_where_the_kernel_runs_and_at_what_size(pytester):
    import torch

    pytester.makeini("[pytest]\nconv3d_trials = 5\n")  # the project uses the plugin
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    if torch.cuda.is_available():
        line = "conv3d-perf: CUDA GPU *, full-size cases, 16 cases"
    else:
        line = (
            "conv3d-perf: CPU, Triton interpreter (TRITON_INTERPRET=1), scaled-down cases, 16 cases"
        )
    result.stdout.fnmatch_lines([line])
