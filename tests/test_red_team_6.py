"""The sixth red team: ways past the fifth session's fixes (`pull_request.merged_tree`,
`kernel_settings`, `refused_files`, the per-call module swap of `sides.pair`), staged as
the GPU job runs the gate with the fifth red team's `job` fixture (an origin repository,
a fresh clone that fetches every branch and checks out the base, `conv3d-perf
pull-request`, then the base's speed test with --conv3d-against BASE
--conv3d-unstable=fail).

None of these monkeypatches a library, looks at the stack, caches calls, patches the
plugin or reaches the base's modules through gc (the conceded kinds).

Each test asserts what the gate should do. The attacks that got through were strict
xfails when the review was written and are plain tests since the fixes of the same session
(each says what stops it now); notes/gate-quality.md, "A sixth red-team review"."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_red_team_5
from tests.fake_gpu import KERNEL_PACKAGE, git
from tests.test_red_team import SLOW_TUNING
from tests.test_red_team_5 import ON_PYPROJECT, SLOW_KERNEL, _stopped

# The fifth red team's staging of the GPU job (its `job` fixture), used as it is.
job = test_red_team_5.job

# -- helpers ------------------------------------------------------------------------------

# Prints the kernel the plugin's settings take in a pytest run (conftest-free: a plugin
# object), so a test can show what a run of the merged commit times.
_PROBE = """
import sys
import pytest
from pytest_conv3d_perf.settings import Settings


class Probe:
    def pytest_configure(self, config):
        print("KERNEL=" + Settings.from_config(config).kernel)


pytest.main(["--co", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[Probe()])
"""


def _checkout(origin: Path, commit: str, into: Path) -> Path:
    """A plain clone of ``origin`` with ``commit`` checked out: what a user, or the next
    CI run on main, gets."""
    git(into.parent, "clone", "-q", "--no-checkout", str(origin), into.name)
    git(into, "checkout", "-q", "--detach", commit)
    return into


def _kernel_of_a_run(folder: Path, *args: str) -> str:
    """The kernel a pytest run in ``folder`` (with ``args``) takes."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    found = [line for line in done.stdout.splitlines() if line.startswith("KERNEL=")]
    assert found, done.stdout + done.stderr
    return found[0].removeprefix("KERNEL=")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FAKE_"))}


# -- 1. the kernel moved by addopts spellings `kernel_settings` does not read ------------

# pytest reads `addopts` from TOML as a list (in [tool.pytest.ini_options], and it must
# be one in the native [tool.pytest] table and in pytest.toml); `_ini_of` turns every
# value into str(), so the list is "['--conv3d-kernel', 'kernels.rewrite:conv3d']" and
# `_option_values` shlex-splits it into "[--conv3d-kernel," and "kernels.rewrite:conv3d]",
# neither an option it knows.
TOML_ADDOPTS = {
    "pyproject-ini-options-list": {
        "pyproject.toml": '[tool.pytest.ini_options]\nconv3d_kernel = "kernels.implicit:conv3d"\n'
        'addopts = ["--conv3d-kernel=kernels.rewrite:conv3d"]\n',
    },
    "pyproject-native-toml": {
        "pyproject.toml": '[tool.pytest]\nconv3d_kernel = "kernels.implicit:conv3d"\n'
        'addopts = ["--conv3d-kernel", "kernels.rewrite:conv3d"]\n',
    },
    "pytest-toml-override-ini": {
        "pytest.toml": '[pytest]\nconv3d_kernel = "kernels.implicit:conv3d"\n'
        'addopts = ["-o", "conv3d_kernel=kernels.rewrite:conv3d"]\n',
    },
}

# argparse's own spellings of -o that `_option_values` does not parse: a short option
# grouped after a flag (-vo X) and "-o=X" (argparse splits a short option at "=";
# `_option_values` takes token[2:], "=conv3d_kernel=...", whose key is "").
INI_ADDOPTS = {
    "grouped-short-options": "-vo conv3d_kernel=kernels.rewrite:conv3d",
    "short-option-equals": "-o=conv3d_kernel=kernels.rewrite:conv3d",
}


@pytest.mark.parametrize("spelling", sorted(TOML_ADDOPTS))
def test_a_toml_list_addopts_naming_another_kernel_is_refused(job, tmp_path, spelling):
    # The head adds kernels/rewrite.py (5% slower) and names it in addopts, a TOML list
    # (how pyproject.toml's own `testpaths = ["tests"]` is written in this repository).
    # `configured_kernel_moved` sees no move; the gate times the old kernel, `unchanged`;
    # after the merge every run times kernels/rewrite.py.
    # Now a TOML list is read as the words it holds (shlex.join), and an addopts change that names
    # the kernel or model anywhere is refused (`configured_kernel_moved`).
    pr = job({**TOML_ADDOPTS[spelling], **SLOW_KERNEL}, base=ON_PYPROJECT)
    merged = _checkout(pr.origin, pr.head, tmp_path / "merged")
    assert _kernel_of_a_run(merged) == "kernels.rewrite:conv3d"
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


@pytest.mark.parametrize("spelling", sorted(INI_ADDOPTS))
def test_a_short_option_spelling_of_o_naming_another_kernel_is_refused(job, tmp_path, spelling):
    # Now refused whatever the spelling: an addopts change that names the kernel or model anywhere
    # counts.
    ini = f"[pytest]\nconv3d_kernel = kernels.implicit:conv3d\naddopts = {INI_ADDOPTS[spelling]}\n"
    pr = job({"pytest.ini": ini, **SLOW_KERNEL})
    merged = _checkout(pr.origin, pr.head, tmp_path / "merged")
    assert _kernel_of_a_run(merged) == "kernels.rewrite:conv3d"
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


# -- 2. a configuration file below the rootdir, where pytest starts looking ---------------


def test_a_configuration_file_in_the_tests_folder_naming_another_kernel_is_refused(job, tmp_path):
    # gpu-gate.yml runs `python3 -m pytest tests/test_suite.py ...`: pytest looks for a
    # configuration file in tests/ first, then above. `pytest_ini` reads the repository's
    # top only, and `classify` calls tests/pytest.ini a test file ("tests and conftest"),
    # not the configuration. The head adds tests/pytest.ini naming kernels/rewrite.py (5%
    # slower; `pythonpath = ..` keeps it importable from the new rootdir): accepted, the
    # gate times the old kernel, `unchanged`. After the merge, every run of the tests in
    # tests/ times kernels.rewrite.
    # Now `compose` refuses a pytest configuration below the top (`nested_configuration`).
    ini = "[pytest]\npythonpath = ..\nconv3d_kernel = kernels.rewrite:conv3d\n"
    pr = job({"tests/pytest.ini": ini, "tests/test_suite.py": "def test_x():\n    pass\n"})
    merged = _checkout(pr.origin, pr.head, tmp_path / "merged")
    assert _kernel_of_a_run(merged, "tests/test_suite.py") == "kernels.rewrite:conv3d"
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


# -- 3. .gitattributes: a checkout is not the blobs the gate writes -----------------------

# The head's tuning reads the revision git stamps into it on checkout (`ident` expands
# "$Id$" to "$Id: <blob sha> $"): a stamped copy (any checkout) runs the tuned 1.05, an
# unstamped one (the blobs as `sides.extract` writes them) the default 1.0.
IDENT_TUNING = (
    "# The revision this table was tuned at, stamped by git on checkout (.gitattributes).\n"
    'REVISION = "$Id$"\n\n\n'
    "def factor():\n"
    "    return 1.05 if len(REVISION) > 4 else 1.0  # stamped: a deployed copy\n"
)
ATTRIBUTES = {
    "in-the-package": {"kernels/.gitattributes": "tuning.py ident\n"},
    "at-the-top": {".gitattributes": "kernels/tuning.py ident\n"},
}


@pytest.mark.parametrize("where", sorted(ATTRIBUTES))
def test_gitattributes_that_rewrite_the_package_on_checkout_are_refused(job, tmp_path, where):
    # The fifth red team's link and submodule had the same shape (a checkout holds what
    # the gate's tree lacks) and `refused_files` refuses them now; a .gitattributes in the
    # package is text and is taken, and one at the top is listed as "other files" (not
    # even "not measured"). Either way every checkout of the merged commit runs 5% slower.
    # Now refused: a changed line of a `.gitattributes` in or above the package that may
    # apply to its files and change what a checkout writes (`attributes_moved`).
    pr = job({**ATTRIBUTES[where], "kernels/tuning.py": IDENT_TUNING})
    merged = _checkout(pr.origin, pr.head, tmp_path / "merged")
    assert "$Id: " in (merged / "kernels/tuning.py").read_text()
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


# -- 4. a module neither side had at its import, imported at call time ---------------------

# A kernel that imports its tuning when it runs (through importlib, which
# `_imports_lazily` does not read), from its second call on (the first compiles).
LATER_KERNEL = (
    KERNEL_PACKAGE["kernels/implicit.py"]
    .replace("from kernels import tuning\n", "import importlib\nimport itertools\n")
    .replace("MS = 1.0\n", "MS = 1.0\n_CALLS = itertools.count()\n")
    .replace(
        '    return Launch(MS * tuning.factor() * config["factor"] * slow)\n',
        "    # A process's first call compiles; the tuned factor applies from its second.\n"
        "    tuning = importlib.import_module(__package__ + '.tuning') if next(_CALLS) else None\n"
        '    return Launch(MS * (tuning.factor() if tuning else 1.0) * config["factor"] * slow)\n',
    )
)
assert "itertools.count()" in LATER_KERNEL and "from kernels import tuning" not in LATER_KERNEL


# The same kernel importing its tuning from its first call on.
EVERY_CALL_KERNEL = LATER_KERNEL.replace(" if next(_CALLS) else None", "")
assert "next(_CALLS)" not in EVERY_CALL_KERNEL


def test_caught_a_module_the_base_imports_after_its_first_call_is_its_own(job):
    # Two steps. The base (merged, no slower) imports kernels.tuning when it runs, from
    # its second call on. The gate's first call of the base (`Pair.warm`, the full swap)
    # imports nothing, so it is not marked as importing at call time and its later calls
    # get the swap of the names either side held at import: kernels and kernels.implicit,
    # not kernels.tuning. The head changes tuning.py alone (1.05). The base's second call
    # (before the head's, which also imports from its second) imports the base's tuning
    # into sys.modules, where it stays, and the head's `import_module` finds it there:
    # both sides ran the base's tuning (the A/B read +0.07%). Caught all the same: the
    # import bound `tuning` on the base's package, and `bindings.Watch` calls the case
    # unstable ("kernels.tuning rebound in memory").
    pr = job({"kernels/tuning.py": SLOW_TUNING}, base={"kernels/implicit.py": LATER_KERNEL})
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def test_a_module_the_head_imports_at_call_time_is_not_the_bases(job):
    # The same base. The head imports kernels.tuning from its first call on, and slows
    # tuning.py (1.05). Its call comes first in the A/B's warm-up (`measure` calls today's
    # side first) and imports the head's tuning with the head's package in sys.modules;
    # nothing swaps kernels.tuning (neither side held it at import, and `Side.lazy` is
    # looked for on the base's side only), so the base's later calls find the head's
    # module in sys.modules: both run 1.05, `unchanged`, and no global of the base's
    # modules was rebound. Merged, every call is 5% slower.
    # Now a call of either side that imports a module neither side had is seen by the length of
    # sys.modules; the module goes again and both sides take the full swap
    # (`sides._imported_as_it_ran`).
    pr = job(
        {"kernels/implicit.py": EVERY_CALL_KERNEL, "kernels/tuning.py": SLOW_TUNING},
        base={"kernels/implicit.py": LATER_KERNEL},
    )
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()
