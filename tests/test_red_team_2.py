"""The second red team: ways a pull request got a 5% slowdown past the gate without touching
its kernel file, as the GPU job runs it (`conv3d-perf pull-request` in a checkout of the
base, then the base's speed test with --conv3d-against BASE --conv3d-unstable=fail). Each
passed before its fix; each test asserts that the gate fails (or refuses the tree) now.

The fake package (tests/fake_gpu.py): kernels/implicit.py is the kernel's file and is never
edited; its unchanged code reads KERNEL_SLOW at every call, as the real kernel reads
CONV3D_TUNE_DIR, TRITON_CACHE_DIR and Triton's knobs."""

import py_compile
import sys

from tests.test_red_team import SLOW_TUNING


def test_a_head_that_skips_on_the_ci_gpu_is_not_a_pass(pull):
    # The package raises unittest.SkipTest at import where it "does not support" the GPU
    # (here: no CUDA; in CI: e.g. capability (8, 9), the RTX 4090). pytest reported every
    # speed case `skipped`, exit 0, and the comment said "gate passed" over an empty table.
    # Now a timed test that skips fails under --conv3d-unstable=fail.
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "import unittest\n\nimport torch\n\n"
            "from kernels.implicit import conv3d  # noqa: F401\n\n"
            "if not torch.cuda.is_available():  # in CI: the runner's GPU\n"
            "    raise unittest.SkipTest('this GPU is not supported yet')\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret != 0, result.stdout.str()


def test_git_replace_cannot_give_the_base_side_the_heads_code(pull):
    # The fixed .git/info/attributes attack's twin: the head's import (before the base is
    # read from git) registers refs/replace/<base blob> -> <its own slower blob>. git
    # ls-tree and cat-file --batch (sides.extract) honoured replace refs: the base side was
    # written with the head's tuning.py. Now git runs without replace refs or GIT_*
    # variables, each blob is checked against its id, and the tree is written at the start.
    code, gate = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            "kernels/__init__.py": "import subprocess\nfrom pathlib import Path\n\n"
            "from kernels.implicit import conv3d  # noqa: F401\n\n"
            "_root = Path(__file__).resolve().parents[1]\n\n\n"
            "def _git(*args):\n"
            "    done = subprocess.run(['git', *args], cwd=_root, capture_output=True, text=True)\n"
            "    return done.stdout.strip()\n\n\n"
            "_old = _git('rev-parse', 'HEAD:kernels/tuning.py')\n"
            "_new = _git('hash-object', '-w', str(_root / 'kernels' / 'tuning.py'))\n"
            "if _old and _old != _new:\n"
            "    _git('replace', '-f', _old, _new)\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> regression*"])


CALL_TIME_ENV = (
    "import os\n\n\ndef factor():\n"
    "    os.environ['KERNEL_SLOW'] = '1'  # set at call time, not at import\n"
    "    return 1.0\n"
)


def test_a_variable_set_at_call_time_is_still_the_heads_own(pull):
    # sides.pair decides which variables differ when the A/B is paired; a variable the head
    # set in a call was in neither snapshot, so the base's calls ran with it: both 5%
    # slower, `unchanged`. Now a change of the environment during the A/B makes it
    # `unstable`. (The same variable set at import: tests/test_ab.py.)
    code, gate = pull({"kernels/tuning.py": CALL_TIME_ENV})
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    # The A/B sees the variable change under it: it cannot be trusted, and CI fails.
    result.stdout.fnmatch_lines(["*-> unstable*a call changed the environment*(KERNEL_SLOW)*"])


def _unchecked_pyc(tmp_path, source: str) -> bytes:
    src = tmp_path / "tuning_src.py"
    src.write_text(source)
    out = tmp_path / "tuning.pyc"
    py_compile.compile(
        str(src), cfile=str(out), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    return out.read_bytes()


def test_bytecode_in_the_heads_package_is_not_its_code(pull, pytester, tmp_path):
    # Every .py file of the head byte-identical to the base's, and
    # kernels/__pycache__/tuning.<tag>.pyc, an unchecked-hash pyc, which Python runs in place
    # of the unchanged source: a reviewer's diff showed no source change. Now
    # `conv3d-perf pull-request` refuses compiled code in the kernel package.
    pyc = f"kernels/__pycache__/tuning.{sys.implementation.cache_tag}.pyc"
    code, _ = pull({}, {pyc: _unchecked_pyc(tmp_path, SLOW_TUNING)})
    assert code != 0  # conv3d-perf pull-request refuses compiled code in the package
    assert not (pytester.path / pyc).exists()


def test_an_extension_module_in_the_heads_package_is_refused(pull, pytester, capsys):
    code, _ = pull({}, {"kernels/tuning.cpython-312-x86_64-linux-gnu.so": b"\x7fELF"})
    assert code != 0
    assert "compiled code" in capsys.readouterr().err


def test_a_base_the_head_hides_is_not_new(pull):
    # The head's __init__ leaves sys.modules['kernels'] = None; the base's import raised
    # ModuleNotFoundError(name='kernels'), taken for "the base has no kernels.implicit":
    # the case was `new`, a pass. Now None entries are hidden like modules, and a module is
    # missing only where the base's tree has no file for it.
    code, gate = pull(
        {
            "kernels/tuning.py": "import sys\n\nPACKAGE = None\n\n\ndef factor():\n"
            "    if sys.modules.get('kernels') is None:\n"
            "        sys.modules['kernels'] = PACKAGE\n"
            "    return 1.05\n",
            "kernels/__init__.py": "import sys\n\nfrom kernels import tuning\n"
            "from kernels.implicit import conv3d  # noqa: F401\n\n"
            "tuning.PACKAGE = sys.modules[__name__]\n"
            "sys.modules[__name__] = None\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()


# -- tried, and caught -----------------------------------------------------------------


def test_caught_a_symlink_in_the_heads_package_is_not_followed(pull, pytester, capsys):
    # kernels/tuning.py a link to a slower top-level file: sides.extract writes no link, so
    # the head's package lacked tuning.py and its import failed the case. Since the fifth
    # red team (a link whose absence made the kernel faster) `pull-request` refuses a link
    # in the package outright, and nothing of the head's is put in place.
    code, _ = pull(
        {"slow_tuning.py": SLOW_TUNING}, links={"kernels/tuning.py": "../slow_tuning.py"}
    )
    assert code == 2
    assert "`kernels/tuning.py` (a symbolic link)" in capsys.readouterr().err
    assert not (pytester.path / "kernels" / "tuning.py").is_symlink()


def test_caught_a_pth_file_in_the_package_is_not_processed(pull):
    # .pth files are read from site directories only; the slowdown in it never runs, and a
    # slowdown placed in the package is measured as usual.
    code, gate = pull(
        {
            "kernels/zz.pth": "import os; os.environ['KERNEL_SLOW'] = '1'\n",
            "kernels/tuning.py": SLOW_TUNING,
        }
    )
    assert code == 0
    assert gate().ret == 1
