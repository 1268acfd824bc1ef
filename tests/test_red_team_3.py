"""The third red team: ways a pull request got a slowdown past the gate without touching its
kernel file, each staged with the fake kernel package (tests/fake_gpu.py) as the GPU job
runs the gate (`conv3d-perf pull-request` in a checkout of the base, then the base's
speed test with --conv3d-against BASE --conv3d-unstable=fail; the `pull` fixture).

Each attack that gets through today is an xfail(strict=True) test that asserts what the
gate should do: it fails today, and turns into an unexpected pass (a failure of this suite)
once the gate catches it, so the marker must go with the fix. The attacks the gate catches
are plain tests. notes/gate-quality.md, "A third red-team review", has the table."""

import io
import json
import zipfile

import pytest

import tests.conftest as shared
from tests.test_red_team import SLOW_TUNING

THROUGH = "red team 3: "


def _cases(monkeypatch, *names: str, extra: tuple[str, ...] = ()) -> None:
    """The gate's run (the `pull` fixture's) on these cases instead of n1_oc17_bias."""
    args = ("-k", "speed", "--conv3d-perf", "--conv3d-unstable=fail")
    args += tuple(f"--conv3d-case={name}" for name in names) + extra
    monkeypatch.setattr(shared, "RED_TEAM_CI_ARGS", args)


# The folder the gate writes the base's tree into: Revisions.tree, at the run's start.
BASE_TREE = (
    "import tempfile\nfrom pathlib import Path\n\n\n"
    "def base_files(name):\n"
    "    return Path(tempfile.gettempdir()).glob(f'conv3d-revisions-*/*/kernels/{name}')\n"
)


# -- got through ------------------------------------------------------------------------


def test_the_heads_import_cannot_rewrite_the_bases_tree(pull):
    # The base's tree is written from git at the run's start (red team 1's fix), but its
    # modules are imported only at the first case's A/B, after the head's package was
    # imported by the conv3d_kernel fixture: the head's __init__ writes its own slower
    # tuning.py over the base's copy in $TMPDIR/conv3d-revisions-*/. Both sides 5% slower:
    # `unchanged`, exit 0.
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "from kernels.implicit import conv3d  # noqa: F401\n"
            "from kernels.tuning import __file__ as _mine\n"
            + BASE_TREE
            + "\n\nfor _p in base_files('tuning.py'):\n"
            "    _p.write_text(Path(_mine).read_text())\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*tree, written from git at the run's start, was changed*kernels/tuning.py changed*"]
    )


def test_the_heads_calls_cannot_rewrite_the_bases_data_files(pull):
    # The same channel at call time: a hash of the base's tree checked after its import
    # would not see it. The base's kernel reads config.json beside its file at every call.
    code, gate = pull(
        {
            "kernels/tuning.py": BASE_TREE + "\n\ndef factor():\n"
            "    for p in base_files('config.json'):\n"
            "        p.write_text('{\"factor\": 1.05}')\n"
            "    return 1.05\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*its modules' globals while the two sides ran*kernels/config.json changed*"]
    )


def test_a_base_whose_file_the_head_deleted_is_not_new(pull):
    # sides._holds looks at the tree on disk: with kernels/implicit.py gone, the base's
    # import fails with "no module" and the case is taken for one the base does not have,
    # `new`, which passes (the job passes no --conv3d-new=fail).
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "from kernels.implicit import conv3d  # noqa: F401\n"
            + BASE_TREE
            + "\n\nfor _p in base_files('implicit.py'):\n    _p.unlink()\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*was changed on disk*kernels/implicit.py deleted*"])
    result.stdout.no_fnmatch_line("*-> new*")


PHASES = (
    "_CALLS = [0]\n\n\ndef factor():\n"
    "    # {slow} slower in one stretch of 20 calls, as fast as before in the next: on\n"
    "    # average {mean} slower (a measurement on the fake GPU: about 17 calls)\n"
    "    _CALLS[0] += 1\n"
    "    return {factor} if (_CALLS[0] - 1) // 20 % 2 == 0 else 1.0\n"
)


@pytest.mark.parametrize(
    "case, factor",
    [("n1_oc17_bias", 1.10), ("kb54", 1.05)],
    ids=["5pct-on-a-3pct-case", "2.5pct-on-a-2pct-case"],
)
def test_a_head_slow_in_every_other_measurement_is_a_regression(pull, monkeypatch, case, factor):
    # A head +10% in one stretch of calls and +0% in the next (+5% on average; think of a
    # kernel that re-tunes or drops a cache every other second) read +10.0% [+9.7, +10.3]
    # (regression), then +0.0% [-0.2, +0.2] (unchanged): verdict.confirm keeps the milder
    # of the two, so two measurements whose intervals do not even overlap are `unchanged`.
    # 4 runs of 4. At +5%/+0% (2.5% on average) the same on kb54, a 2%-threshold case.
    _cases(monkeypatch, case)
    slow = f"{100 * (factor - 1):.0f}%"
    mean = f"{50 * (factor - 1):g}%"
    code, gate = pull({"kernels/tuning.py": PHASES.format(slow=slow, mean=mean, factor=factor)})
    assert code == 0
    assert [gate().ret for _ in range(4)] == [1, 1, 1, 1]


def test_a_conftest_in_the_kernel_package_is_not_the_heads_to_bring(pull, capsys):
    # `conv3d-perf pull-request` puts the head's whole package in place, conftest.py
    # included, and leaves it out of the rules it lists (files under the package are
    # skipped). A run that collects the rootdir (no test path: the `pull` fixture's, and
    # any project without testpaths) loads it: a trylast pytest_sessionfinish sets the
    # exit status to 0 after a `regression`. (The job names tests/test_suite.py, so there
    # it is not loaded: the next test.)
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/conftest.py": "import pytest\n\n\n@pytest.hookimpl(trylast=True)\n"
            "def pytest_sessionfinish(session):\n    session.exitstatus = 0\n",
        }
    )
    rules = capsys.readouterr().out
    result = gate() if code == 0 else None
    assert code != 0 or "conftest" in rules or result.ret == 1


def test_a_head_that_ends_the_run_after_a_regression_does_not_pass(pull, monkeypatch, pytester):
    # The kernel's code calls pytest.exit(returncode=0) at its first call on a second case,
    # after the first case's `regression` was recorded: pytest ends with exit 0, the
    # reports are written (the regression row in them), the job succeeds, and the comment
    # says "conv3d GPU gate passed" above a row that says regression. (atexit.register(
    # lambda: os._exit(0)) does the same in a process of its own.)
    from tests.test_trust import comment

    _cases(monkeypatch, "n1_oc17_bias", "kb54", extra=("--conv3d-json=report.json",))
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "import pytest\n\nfrom kernels import implicit\n\n"
            "_SHAPES = set()\n_CONV3D = implicit.conv3d\n\n\n"
            "def conv3d(x, *args):\n"
            "    _SHAPES.add(tuple(x.shape))\n"
            "    if len(_SHAPES) > 1:\n"
            "        pytest.exit('done', returncode=0)\n"
            "    return _CONV3D(x, *args)\n\n\n"
            "implicit.conv3d = conv3d\n",
        }
    )
    assert code == 0
    result = gate()
    rows = comment.handoff(pytester.path / "report.json")
    assert '"regression"' in rows  # the report holds the regression
    job = "success" if result.ret == 0 else "failure"
    body = comment.build_body(
        {"gpu": "true", "sha": "a" * 40, "pr": "1"}, job, rows.encode(), False, ""
    )
    assert "gate passed" not in body.splitlines()[1], body


@pytest.mark.xfail(
    strict=True, reason=THROUGH + "the head patches json.loads, which both sides share"
)
def test_a_library_function_patched_for_the_base_caller_is_seen(pull, monkeypatch):
    # State both sides share: the head's __init__ replaces json.loads, and where the caller
    # is not the head's package (the base's kernel reading its config.json) raises the
    # factor by 5%. Both sides 5% slower: `unchanged`. No variable, module of the
    # repository or file of the base's tree changes, so no check of the gate's sees it.
    monkeypatch.setattr(json, "loads", json.loads)  # put back after the in-process run
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "import json\nimport sys\n\n"
            "from kernels.implicit import conv3d  # noqa: F401\n\n"
            "_LOADS = json.loads\n_MINE = __file__.rsplit('/', 1)[0]\n\n\n"
            "def loads(text, *args, **kwargs):\n"
            "    out = _LOADS(text, *args, **kwargs)\n"
            "    caller = sys._getframe(1).f_code.co_filename\n"
            "    if isinstance(out, dict) and 'factor' in out and not caller.startswith(_MINE):\n"
            "        out['factor'] *= 1.05\n"
            "    return out\n\n\n"
            "json.loads = loads\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()


@pytest.mark.xfail(
    strict=True, reason=THROUGH + "the head is fast only under pytest_conv3d_perf.measure"
)
def test_a_head_that_looks_for_the_timer_on_its_stack_is_caught(pull):
    # "Behaves differently while it is being judged" (README): 5% slower unless a frame
    # of pytest_conv3d_perf.measure is on the stack. Nothing in the process changes.
    code, gate = pull(
        {
            "kernels/tuning.py": "import sys\n\n\ndef factor():\n"
            "    frame = sys._getframe(1)\n"
            "    while frame is not None:\n"
            "        if frame.f_globals.get('__name__') == 'pytest_conv3d_perf.measure':\n"
            "            return 1.0\n"
            "        frame = frame.f_back\n"
            "    return 1.05\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()


# A head whose kernel computes a real output (the simulated GPU reads `simulated_ms` off
# it) on the fresh path, 5% slower than the base (SLOW_TUNING), and keeps it: when the
# same x comes back ({key}) it returns the kept tensor, as fast as the base.
CACHING_HEAD = (
    "import torch\n\nfrom kernels import implicit\n\n"
    "_CONV3D = implicit.conv3d\n_KEPT = {{}}\n\n\n"
    "def conv3d(x, weight, *args):\n"
    "    ms = _CONV3D(x, weight, *args).simulated_ms  # the fresh path's time\n"
    "    key = {key}\n"
    "    if _KEPT.get('key') == key:  # the same input again: the kept result\n"
    "        out = _KEPT['out']\n"
    "        out.simulated_ms = ms / 1.05\n"
    "        return out\n"
    "    out = torch.nn.functional.conv3d(x, weight, *args)\n"
    "    out.simulated_ms = ms\n"
    "    _KEPT.update(key=key, out=out)\n"
    "    return out\n\n\n"
    "implicit.conv3d = conv3d\n"
)


def test_a_head_that_caches_repeated_calls_is_timed_on_fresh_ones(pull):
    # The gate timed one call (the same tensors) thousands of times; a head that kept what
    # it computed for the last input (by identity, as a cache keyed by data_ptr would on
    # the GPU) was timed on that path only, `unchanged`, while a caller with new tensors
    # each step runs the 5% slower one. Reads as kernel code to a reviewer. Now x gets new
    # values before each timed call, in place: the identity repeats, so the kept (stale)
    # tensor still comes back fast, and the output check on a fresh call after the timing
    # fails the case.
    code, gate = pull(
        {"kernels/tuning.py": SLOW_TUNING, "kernels/__init__.py": CACHING_HEAD.format(key="id(x)")}
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*the output of a timed call on fresh inputs differs from the float64 truth*"
            "a kernel that returns results kept from earlier calls?*"
        ]
    )


def test_a_head_that_caches_by_version_gains_nothing_on_fresh_inputs(pull):
    # The same cache keyed correctly, by the tensor's version too (an in-place write bumps
    # it): every timed call sees new values, so it is timed on the 5% slower fresh path.
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": CACHING_HEAD.format(key="(id(x), x._version)"),
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*n1_oc17_bias*-> regression*"])
    result.stdout.no_fnmatch_line("*fresh inputs differs*")


@pytest.mark.xfail(strict=True, reason=THROUGH + "the head's import patches the plugin")
def test_a_head_that_patches_the_plugin_is_refused(pull, monkeypatch):
    # README concedes it ("patch the plugin's functions"); here to show how little it
    # takes: gate.decide replaced from the package's __init__, every case `unchanged`.
    from pytest_conv3d_perf import gate as gate_module

    monkeypatch.setattr(gate_module, "decide", gate_module.decide)  # put back afterwards
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "from pytest_conv3d_perf import gate\n"
            "from pytest_conv3d_perf.verdict import Verdict\n\n"
            "from kernels.implicit import conv3d  # noqa: F401\n\n"
            "gate.decide = lambda *args, **kwargs: Verdict.UNCHANGED\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()


def _zipped(name: str, source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, source)
    return buffer.getvalue()


def test_code_in_an_archive_in_the_package_is_refused(pull):
    # Red team 2's .pyc, in another wrapper: `conv3d-perf pull-request` refuses .pyc, .so
    # and __pycache__ by name, not a zip archive (here named like data) that the package
    # puts on sys.path. Its module holds the timer check of the test above, which no
    # reviewer's diff shows.
    hidden = (
        "import sys\n\n\ndef factor():\n"
        "    frame = sys._getframe(1)\n"
        "    while frame is not None:\n"
        "        if frame.f_globals.get('__name__') == 'pytest_conv3d_perf.measure':\n"
        "            return 1.0\n"
        "        frame = frame.f_back\n"
        "    return 1.05\n"
    )
    code, gate = pull(
        {
            "kernels/tuning.py": "import sys\nfrom pathlib import Path\n\n"
            "sys.path.append(str(Path(__file__).with_name('tables.dat')))\n\n"
            "from _tables import factor  # noqa: E402,F401\n",
        },
        {"kernels/tables.dat": _zipped("_tables.py", hidden)},
    )
    assert code != 0 or gate().ret == 1


# -- tried, and caught ------------------------------------------------------------------


def test_caught_a_base_whose_first_call_the_head_breaks_is_unstable(pull):
    # The head corrupts the base's config.json, so the base's first call raises: "an
    # interface change? the stored number decides", and with no stored number for this
    # GPU the case is `unstable`, which fails in CI. (With a baseline file the stored
    # number decides, a weaker judge: not tried here.)
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "from kernels.implicit import conv3d  # noqa: F401\n"
            + BASE_TREE
            + "\n\nfor _p in base_files('config.json'):\n    _p.write_text('{')\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> unstable*"])


def test_caught_rule_files_in_the_kernel_package_are_refused(pull, capsys):
    # A conftest.py (it set the exit status to 0 after a regression, above), an ini file
    # or a pyproject.toml with fail above 90%, or a test file in the package: pytest would
    # read each as part of the rules, so `conv3d-perf pull-request` refuses the package.
    hook = (
        "import pytest\n\n\n@pytest.hookimpl(trylast=True)\n"
        "def pytest_sessionfinish(session):\n    session.exitstatus = 0\n"
    )
    ini = "[pytest]\nconv3d_fail = 90\nconv3d_warn = 80\n"
    for name, text in [
        ("kernels/conftest.py", hook),
        ("kernels/pytest.ini", ini),
        ("kernels/pyproject.toml", "[tool.pytest.ini_options]\nconv3d_fail = '90'\n"),
        ("kernels/test_fast.py", "def test_nothing():\n    pass\n"),
    ]:
        code, _ = pull({"kernels/tuning.py": SLOW_TUNING, name: text})
        assert code != 0, name
        assert f"`{name}` (a file pytest reads as part of the rules)" in capsys.readouterr().err


def test_caught_a_case_file_inside_the_kernel_package_is_not_read(pull):
    # The package is the one place the head's files reach the gate's tree: cases put there
    # (fail above 90%) are never read, the base's suite is.
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/suite.toml": '[[cases]]\nname = "n1_oc17_bias"\nfail_threshold = 90.0\n',
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*fail above 3%, warn above 2%*", "*-> regression*"])


def test_caught_an_honest_2_5_percent_slowdown_on_a_2_percent_case(pull, monkeypatch):
    # The control of the parametrized phase test: the same mean slowdown, steady.
    _cases(monkeypatch, "kb54")
    code, gate = pull({"kernels/tuning.py": "def factor():\n    return 1.025\n"})
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*kb54*-> regression*"])
