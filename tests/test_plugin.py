"""The plugin as a pytest user meets it: invisible until used, then pytest's conventions."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fake_gpu import CONFTEST, TEST_FILE, FakeProcesses

ROOT = Path(__file__).resolve().parents[1]

UNRELATED = """
import os
import sys


def test_nothing_of_the_plugin_is_loaded():
    assert "torch" not in sys.modules
    assert "triton" not in sys.modules
    assert "pytest_conv3d_perf.session" not in sys.modules
    assert "TRITON_INTERPRET" not in os.environ
"""


def test_an_unrelated_project_sees_no_change(pytester, monkeypatch):
    # The outer run enabled the plugin, which set TRITON_INTERPRET on a CPU machine.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pytester.makepyfile(test_unrelated=UNRELATED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "conv3d-perf:" not in result.stdout.str()  # no header line, no summary


@pytest.mark.parametrize(
    "how, args",
    [
        ("ini", ()),
        ("option", ("--conv3d-case=n1_oc17_bias",)),
        ("fixture", ()),
    ],
)
def test_a_project_enables_it_by_ini_option_or_fixture(pytester, how, args):
    if how == "ini":
        pytester.makeini("[pytest]\nconv3d_trials = 1\n")
    body = "def test_x(conv3d_device):\n    assert str(conv3d_device) in ('cpu', 'cuda')\n"
    pytester.makepyfile(test_x=body if how == "fixture" else "def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    if how != "fixture":  # a fixture activates it after the header was written
        result.stdout.fnmatch_lines(["conv3d-perf: *cases*"])


GPU_WITHOUT_A_GPU = """
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_conv3d_perf_device_info(config):
    return {"gpu": "Pretend GPU"}
"""


def test_interpreter_on_a_gpu_host_times_nothing_and_writes_no_baseline(pytester, monkeypatch):
    # TRITON_INTERPRET=1 on a GPU host: interpreter calls of scaled-down cases must not be
    # timed against the GPU's full-size baseline, nor written into it.
    import torch

    # A GPU host as the plugin sees it; no CUDA timer can really be built here.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Pretend GPU")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    pytester.makeconftest(GPU_WITHOUT_A_GPU)
    pytester.makepyfile(test_gate=TEST_FILE)
    for args in (("--conv3d-perf",), ("--conv3d-update-baselines",)):
        result = pytester.runpytest("-p", "no:cacheprovider", "--conv3d-case=n1_oc17_bias", *args)
        assert result.ret == 0, result.stdout.str()
        result.stdout.fnmatch_lines(
            ["conv3d-perf: timing skipped: the kernel runs under Triton's interpreter*"]
        )
    assert not (pytester.path / "baselines").exists()


def test_hooks_marked_optional_work_with_the_plugin_off(pytester):
    pytester.makeconftest(
        """
import pytest

@pytest.hookimpl(optionalhook=True)
def pytest_conv3d_perf_device_info(config):
    return {"gpu": "x"}
"""
    )
    pytester.makepyfile("def test_x():\n    pass\n")
    pytester.runpytest("-p", "no:conv3d_perf").assert_outcomes(passed=1)


def _help_lines(pytester) -> str:
    return pytester.runpytest("--help").stdout.str()


def test_every_project_option_has_an_ini_value_and_the_rest_are_documented(pytester):
    from pytest_conv3d_perf import settings

    text = _help_lines(pytester)
    options = set(re.findall(r"^\s+(--conv3d-[a-z0-9-]+)", text, re.M))
    inis = set(re.findall(r"^\s+(conv3d_[a-z0-9_]+)", text, re.M))
    without = {o for o in options if settings.ini_name(o) not in inis}
    documented = set(re.findall(r"``(--conv3d-[a-z0-9-]+)``", settings.__doc__))
    assert len(options) > 20
    assert without == documented, "options without an ini value must be named in settings.py"
    readme = (ROOT / "README.md").read_text()
    assert all(o in readme for o in options), [o for o in options if o not in readme]


@pytest.fixture
def gate(pytester, monkeypatch, request):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_gate=TEST_FILE)
    processes = FakeProcesses(monkeypatch, request.node.name)

    def run(*args):
        processes.next()
        return pytester.runpytest(
            "-p", "no:cacheprovider", "--conv3d-perf", "--conv3d-budget=0.5", *args
        )

    return run


def test_report_paths_are_relative_to_where_pytest_was_invoked(gate, pytester, monkeypatch):
    pytester.makeini("[pytest]\nconv3d_markdown = from-ini.md\n")
    sub = pytester.mkdir("sub")
    monkeypatch.chdir(sub)
    result = gate("--conv3d-case=n1_oc17_bias", "--conv3d-json=r.json", str(pytester.path))
    assert result.ret == 0, result.stdout.str()
    assert (sub / "r.json").is_file() and not (pytester.path / "r.json").exists()
    assert (pytester.path / "from-ini.md").is_file()  # an ini path: relative to the ini file


def test_each_case_shows_a_line_while_measured_and_after(gate):
    result = gate("-q", "--conv3d-case=n1_oc17_bias", "--conv3d-case=pointwise_bias")
    assert result.ret == 0
    # Each on a line of its own, never after -q's progress marks.
    result.stdout.fnmatch_lines(
        [
            "conv3d-perf n1_oc17_bias: measuring: warming up",
            "conv3d-perf n1_oc17_bias: * ms ±*-> new *",
            "conv3d-perf pointwise_bias: measuring: warming up",
            "conv3d-perf pointwise_bias: * ms ±*-> new *",
        ]
    )


@pytest.mark.filterwarnings("ignore:Benchmarks are automatically disabled")
def test_xdist_controller_shows_each_cases_line(gate):
    result = gate("-n", "2", "--conv3d-case=n1_oc17_bias", "--conv3d-case=pointwise_bias")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["conv3d-perf n1_oc17_bias: * ms ±*-> new *"])
    result.stdout.fnmatch_lines(["conv3d-perf pointwise_bias: * ms ±*-> new *"])


def test_two_kernels_on_one_case_are_two_entries(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
import torch

def conv(x, w, b, stride, padding, dilation):
    return torch.nn.functional.conv3d(x, w, b, stride, padding, dilation)

def test_mine(conv3d_perf):
    conv3d_perf.case(conv, "n1_oc17_bias", name="n1_oc17_bias-mine")

def test_theirs(conv3d_perf):
    conv3d_perf.case(conv, "n1_oc17_bias", name="n1_oc17_bias-theirs")
"""
    )
    result = pytester.runpytest("--conv3d-update-baselines", "--conv3d-budget=0.5")
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "baselines/fake-gpu-9000.json").read_text())
    assert sorted(data["cases"]) == ["n1_oc17_bias-mine", "n1_oc17_bias-theirs"]


def test_gab_file_is_written_even_when_nothing_was_timed(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--conv3d-perf", "--conv3d-gab-json=gab.json")
    assert result.ret == 0
    assert json.loads((pytester.path / "gab.json").read_text()) == []


def test_pytest_benchmark_json_is_pytest_benchmarks_own(gate, pytester):
    import platform

    import pytest_benchmark
    from pytest_benchmark.stats import Stats

    gate("--conv3d-case=n1_oc17_bias", "--conv3d-benchmark-json=pb.json", "--conv3d-json=r.json")
    pb = json.loads((pytester.path / "pb.json").read_text())
    assert pb["version"] == pytest_benchmark.__version__
    assert pb["machine_info"]["node"] == platform.node()
    assert pb["machine_info"]["gpu"]["gpu"] == "Fake GPU 9000"
    [bench] = pb["benchmarks"]
    stats = Stats()
    for seconds in bench["stats"]["data"]:
        stats.update(seconds)
    for key, value in stats.as_dict().items():
        assert bench["stats"][key] == pytest.approx(value), key
    ours = json.loads((pytester.path / "r.json").read_text())["results"][0]
    assert bench["stats"]["rounds"] == ours["samples"]


def test_saved_runs_are_listed_and_compared_by_number(gate, pytester):
    for name in ("first", "second"):
        result = gate("--conv3d-case=n1_oc17_bias", f"--conv3d-benchmark-save={name}")
        assert result.ret == 0
    cli = [sys.executable, "-c", "from pytest_benchmark.cli import main; main()"]
    listed = subprocess.run([*cli, "list"], cwd=pytester.path, capture_output=True, text=True)
    assert "0001_first.json" in listed.stdout and "0002_second.json" in listed.stdout
    compared = subprocess.run(
        [*cli, "compare", "0001", "0002"], cwd=pytester.path, capture_output=True, text=True
    )
    assert compared.returncode == 0, compared.stderr
    assert "n1_oc17_bias" in compared.stdout


def test_a_bad_benchmark_save_name_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--conv3d-benchmark-save=../x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--conv3d-benchmark-save: expected a plain name*"])


def test_an_unconfigured_kernel_fixture_says_what_to_set(pytester):
    pytester.makepyfile("def test_x(conv3d_kernel):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*conv3d_kernel fixture needs conv3d_kernel = module:attribute*"])


def test_a_configured_kernel_is_imported_from_the_project(pytester):
    pytester.mkpydir("mykernels")
    (pytester.path / "mykernels" / "conv.py").write_text(
        "import torch\n\ndef conv3d(*args):\n    return torch.nn.functional.conv3d(*args)\n"
    )
    pytester.makeini("[pytest]\nconv3d_kernel = mykernels.conv:conv3d\n")
    pytester.makepyfile(
        "def test_x(conv3d_kernel, conv3d_check):\n    conv3d_check(conv3d_kernel, 'kb66')\n"
    )
    pytester.runpytest_subprocess("--conv3d-size=small").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nconv3d_kernel = mykernels.conv:nothing\n")
    result = pytester.runpytest_subprocess()
    result.stdout.fnmatch_lines(["*conv3d_kernel = mykernels.conv:nothing*has no 'nothing'*"])


def test_wheel_ships_the_plugin_only(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pytest_conv3d_perf"}
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text
    assert any(n.endswith("licenses/LICENSE") for n in names)
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if "<" in r], requires
    assert not [r for r in requires if "numpy" in r and "extra ==" not in r], requires
