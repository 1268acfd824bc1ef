"""The fourth red team: ways a pull request got a slowdown past the gate without touching
its kernel file (kernels/implicit.py of the fake package, tests/fake_gpu.py), staged as the
GPU job runs the gate (`conv3d-perf pull-request` in a checkout of the base, then the base's
speed test with --conv3d-against BASE --conv3d-unstable=fail; the `pull` fixture).

Each attack that gets through today is an xfail(strict=True) test that asserts what the
gate should do: it fails today, and turns into an unexpected pass (a failure of this suite)
once the gate catches it, so the marker must go with the fix. The attacks the gate catches
are plain tests. notes/gate-quality.md, "A fourth red-team review", has the table."""

import os
import sys

import pytest

from tests.test_red_team import SLOW_TUNING
from tests.test_red_team_3 import BASE_TREE, _cases

THROUGH = "red team 4: "


def _report_verdicts(path) -> tuple[str, str]:
    """(the trusted handoff's line, why it fails the job or '') for the report at ``path``,
    as the GPU job's handoff step computes them."""
    from tests.test_trust import comment

    line = comment.handoff(path) if path.is_file() else None
    return line, comment.report_failure(line)


# -- got through ------------------------------------------------------------------------


def test_a_run_ended_before_the_slowed_case_is_not_a_pass(pull, monkeypatch, pytester):
    # The third red team's pytest.exit(returncode=0), one case earlier. The head is 5%
    # slower on one shape (a tuning-table change that touches some shapes only) and ends
    # the run at its first call on that shape, before anything of the case is timed. The
    # report holds the earlier cases' rows only, all `unchanged`; the trusted handoff
    # fails a job whose report is missing, judged no case or holds a failing row, and
    # this one was none of those: exit 0, handoff passed, the comment said "passed". In
    # the job (16 cases) the head can let the first pass and stop at the second. Now the
    # report lists the timed tests the run selected, and the handoff fails one that lacks
    # a selected case's row.
    _cases(monkeypatch, "n1_oc17_bias", "kb54", extra=("--conv3d-json=report.json",))
    code, gate = pull(
        {
            "kernels/tuning.py": "_SLOW_SHAPES = set()\n\n\ndef factor():\n"
            "    return 1.05 if _SLOW_SHAPES else 1.0\n",
            "kernels/__init__.py": "import pytest\n\nfrom kernels import implicit, tuning\n\n"
            "_SHAPES = []\n_CONV3D = implicit.conv3d\n\n\n"
            "def conv3d(x, *args):\n"
            "    shape = tuple(x.shape)\n"
            "    if shape not in _SHAPES:\n"
            "        _SHAPES.append(shape)\n"
            "    if _SHAPES.index(shape) > 0:  # the shape this change slows\n"
            "        tuning._SLOW_SHAPES.add(shape)\n"
            "        pytest.exit('done', returncode=0)\n"
            "    return _CONV3D(x, *args)\n\n\n"
            "implicit.conv3d = conv3d\n",
        }
    )
    assert code == 0
    result = gate()
    line, why = _report_verdicts(pytester.path / "report.json")
    assert result.ret != 0 or why, (result.stdout.str(), line)
    assert "the run ended before 1 selected case(s) had a verdict" in why, why
    assert "kb54" in why


# The base's modules, found in the process's memory: they are loaded once, hidden from
# sys.modules, and held by the gate's Side; gc finds them by their __file__.
BASE_MODULES = (
    "import gc\nimport os\nimport types\n\n_FOUND = {}\n\n\n"
    "def base_module(name):\n"
    # A module of an earlier base (its folder gone, not yet collected) is passed over,
    # so the attack hits the base of this run whatever gc kept from earlier tests.
    "    found = _FOUND.get(name)\n"
    "    if found is None or not os.path.exists(found.__file__):\n"
    "        found = next(\n"
    "            (m for m in gc.get_objects()\n"
    "             if type(m) is types.ModuleType and m.__name__ == name\n"
    "             and 'conv3d-revisions-' in str(getattr(m, '__file__', ''))\n"
    "             and os.path.exists(m.__file__)),\n"
    "            None,\n"
    "        )\n"
    "        _FOUND[name] = found\n"
    "    return found\n"
)


def test_the_heads_calls_cannot_rewrite_the_bases_modules_in_memory(pull):
    # The third red team's fix checks the base's tree on disk before its import and after
    # each A/B; the base's modules, once imported, are objects in this process that
    # nothing checked. At each call until it finds them, the head's tuning looks through
    # gc for a module whose __file__ lies in $TMPDIR/conv3d-revisions-*/ and sets the
    # base's implicit.MS to 1.05: no file, variable or entry of sys.modules changes. Both
    # sides 5% slower (the first base call, before the patch, is the untimed warm-up):
    # `unchanged`. Now the base's module globals are watched (pytest_conv3d_perf.bindings):
    # one rebound by code other than the base's own calls makes the A/B `unstable`.
    code, gate = pull(
        {
            "kernels/tuning.py": BASE_MODULES + "\n\ndef factor():\n"
            "    base = base_module('kernels.implicit')\n"
            "    if base is not None:\n"
            "        base.MS = 1.05\n"
            "    return 1.05\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*kernels.implicit.MS rebound in memory*", "*FAILED*"])


@pytest.fixture
def counting_base(monkeypatch):
    """A base (and head) whose tuning rebinds two of its globals at every call."""
    import tests.fake_gpu as fake

    package = dict(fake.KERNEL_PACKAGE)
    package["kernels/tuning.py"] = (
        "CALLS = 0\nLAST = None\n\n\ndef factor():\n"
        "    global CALLS, LAST\n"
        "    CALLS += 1\n"
        "    LAST = object()\n"
        "    return 1.0\n"
    )
    monkeypatch.setattr(fake, "KERNEL_PACKAGE", package)


def test_a_base_that_rebinds_its_own_globals_is_not_taken_for_tampering(counting_base, pull):
    # The watch must not fail honest code: globals the base's own calls rebind (a counter,
    # a lazy value) are told apart by one more call of the base and an idle wait.
    code, gate = pull({"kernels/__init__.py": "from kernels.implicit import conv3d  # head\n"})
    assert code == 0
    result = gate()
    assert result.ret == 0, result.stdout.str()
    assert "rebound in memory" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*n1_oc17_bias*-> unchanged*"])


def test_a_thread_that_rebinds_the_bases_globals_is_caught(pull):
    # The same patch from a thread the head's import starts, so that no code of the
    # head's runs in the base's calls' path; it rebinds a fresh 1.05 every millisecond,
    # as a global the base's own calls rebind would change. The idle wait sees it move
    # while no call runs. The thread ends once the base's tree is removed (the run's end).
    code, gate = pull(
        {
            # The head's calls only look the base up (so the thread finds it at once);
            # the thread alone rebinds.
            "kernels/tuning.py": BASE_MODULES + "\n\ndef factor():\n"
            "    base_module('kernels.implicit')\n"
            "    return 1.05\n",
            "kernels/__init__.py": "import os\nimport threading\nimport time\n\n"
            "from kernels import tuning\nfrom kernels.implicit import conv3d  # noqa: F401\n\n\n"
            "def _patch():\n"
            "    end, found = time.monotonic() + 20, False\n"
            "    while time.monotonic() < end:\n"
            "        base = tuning._FOUND.get('kernels.implicit')\n"
            "        if base is not None and os.path.exists(base.__file__):\n"
            "            found = True\n"
            "            base.MS = float('1.05')\n"
            "        elif found:  # the base's tree is gone: the run ended\n"
            "            return\n"
            "        time.sleep(0.001)\n\n\n"
            "threading.Thread(target=_patch, daemon=True).start()\n",
        }
    )
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*kernels.implicit.MS rebound in memory*"])


# An import hook the head's __init__ puts first on sys.meta_path: every later import of
# kernels.tuning (the head's own is already loaded, so that is the base's) gets the head's
# slower source, with __file__ and __spec__.origin in the base's tree.
META_PATH_HOOK = (
    "import importlib.abc\nimport importlib.util\nimport sys\n\n"
    "from kernels.implicit import conv3d  # noqa: F401\n\n"
    "_SOURCE = 'def factor():\\n    return 1.05\\n'\n\n\n"
    "class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name != 'kernels.tuning' or not path or 'conv3d-revisions-' not in path[0]:\n"
    "            return None\n"
    "        origin = path[0] + '/tuning.py'\n"
    "        return importlib.util.spec_from_loader(name, self, origin=origin)\n\n"
    "    def create_module(self, spec):\n"
    "        return None\n\n"
    "    def exec_module(self, module):\n"
    "        module.__file__ = module.__spec__.origin\n"
    "        exec(compile(_SOURCE, module.__file__, 'exec'), module.__dict__)\n\n\n"
    "sys.meta_path.insert(0, _Finder())\n"
)


def test_the_bases_import_does_not_go_through_the_heads_import_hooks(pull, monkeypatch):
    # load_side hides the repository's modules, puts the base's tree first on sys.path and
    # checks that every module it loaded says it lies in the tree (__file__), but leaves
    # sys.meta_path, sys.path_hooks and sys.path_importer_cache as the head's import left
    # them. A finder first on sys.meta_path answers the base's `from kernels import
    # tuning` with the head's slower source under a __file__ in the base's tree: the base's
    # files on disk are untouched, so the tree check sees nothing, and the A/B is the
    # head's tuning against itself: `unchanged`. (A FileFinder put in
    # sys.path_importer_cache under the base's kernels/ folder does the same.)
    # Now the base imports (at load and at call time) through the finders and path hooks
    # of the run's start, with an empty finder cache (`sides.Machinery`).
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # put back afterwards
    code, gate = pull({"kernels/tuning.py": SLOW_TUNING, "kernels/__init__.py": META_PATH_HOOK})
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*n1_oc17_bias*-> regression*"])


# An audit hook (it cannot be removed) that rewrites the base's config.json just before
# each open of it: the file as git wrote it when the open follows an os.scandir of the
# base's tree (the gate's tree check walks the tree, then reads each file), factor 1.05
# otherwise (the base's kernel, at each call). Inert once that folder is gone (it is
# named by mkdtemp, never again).
AUDIT_HOOK = (
    "import os\nimport sys\n\n"
    "from kernels.implicit import conv3d  # noqa: F401\n"
    + BASE_TREE
    + "\n\n_TARGETS = {str(p): p.read_bytes() for p in base_files('config.json')}\n"
    "_ROOTS = tuple(p.rsplit('/kernels/', 1)[0] for p in _TARGETS)\n"
    "_WALKING = []\n_BUSY = []\n\n\n"
    "def _hook(event, args):\n"
    "    if _BUSY or not _TARGETS or event not in ('open', 'os.scandir') or not args:\n"
    "        return\n"
    "    path = args[0]\n"
    "    if not isinstance(path, (str, bytes, os.PathLike)):\n"
    "        return\n"
    "    path = os.fsdecode(path)\n"
    "    if event == 'os.scandir':\n"
    "        if path.startswith(_ROOTS):\n"
    "            _WALKING.append(1)\n"
    "        return\n"
    "    if path not in _TARGETS:\n"
    "        return\n"
    "    _BUSY.append(1)\n"
    "    try:\n"
    "        body = _TARGETS[path] if _WALKING else b'{\"factor\": 1.05}'\n"
    "        _WALKING.clear()\n"
    "        with open(path, 'wb') as fh:\n"
    "            fh.write(body)\n"
    "    finally:\n"
    "        _BUSY.clear()\n\n\n"
    "sys.addaudithook(_hook)\n"
)


def test_the_bases_files_cannot_change_between_the_trees_checks(pull):
    # The tree check reads each file of the base's tree before its import and after each
    # A/B, and compares its content with git's blob: a time-of-check/time-of-use gap. The
    # head's __init__ adds an audit hook (sys.addaudithook: no way to remove it) that,
    # on each open of the base's config.json, writes factor 1.05 for a text read (the
    # base's kernel) and the original bytes for a binary one (the check): every check
    # finds git's content, every base call reads 1.05. Both sides 5% slower: `unchanged`.
    # Now the check also compares each file's inode and status-change time with those at
    # the tree's writing: a write moves the time, which no code can set back.
    code, gate = pull({"kernels/tuning.py": SLOW_TUNING, "kernels/__init__.py": AUDIT_HOOK})
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*kernels/config.json written again (its content put back)*"])


# os.environ given a class of the head's whose iteration leaves out one variable: the
# gate's snapshots (dict(os.environ)) and its clear() (popitem from iteration) never see it,
# os.environ.get does.
HIDDEN_VARIABLE = (
    "import os\n\n"
    "from kernels.implicit import conv3d  # noqa: F401\n\n\n"
    "class _Environ(type(os.environ)):\n"
    "    def __iter__(self):\n"
    "        return (k for k in super().__iter__() if k != 'KERNEL_SLOW')\n\n"
    "    def __len__(self):\n"
    "        return sum(1 for _ in self)\n\n\n"
    "os.environ.__class__ = _Environ\n"
    "os.environ['KERNEL_SLOW'] = '1'\n"
)


def test_a_variable_the_head_hides_from_iteration_is_still_its_own(pull, monkeypatch):
    # The "environment variable its package sets" slowdown, which the gate catches (the
    # base imports and runs in the environment the run started with), hidden from what
    # the gate reads of the environment: its snapshots are dict(os.environ) and its
    # os.environ.clear() pops what iteration yields, so a variable that iteration leaves
    # out is in no snapshot, survives every clear and reaches the base's import and calls.
    # Both sides read KERNEL_SLOW: `unchanged`. Now the base's side is refused when
    # os.environ is no longer the interpreter's own mapping of the run's start.
    monkeypatch.setattr(os.environ, "__class__", type(os.environ))  # put back afterwards
    code, gate = pull({"kernels/__init__.py": HIDDEN_VARIABLE})
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*environment mapping was changed*os.environ replaced by*"])


# -- tried, and caught ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pytest.toml", ".pytest.toml", ".pytest.ini"])
def test_caught_pytest_toml_in_the_kernel_package_is_refused(pull, name):
    # `pull-request` refused the package's pytest.ini, tox.ini, setup.cfg and
    # pyproject.toml but accepted pytest.toml, .pytest.toml and .pytest.ini, which pytest 9
    # reads too. pytest reads them at the rootdir only, so the 3% threshold stood
    # (`regression`); refused now with the others, the rule is one list.
    code, _ = pull(
        {
            "kernels/tuning.py": SLOW_TUNING,
            f"kernels/{name}": "[pytest]\nconv3d_fail = '90'\nconv3d_warn = '80'\n",
        }
    )
    assert code != 0


# Bytecode of the head's slower tuning, stamped with the base's tuning.py's mtime and size
# (so that it validates), written where sys.pycache_prefix (set by the head) points for the
# base's file: nothing is added to the base's tree.
PYCACHE_PREFIX = (
    "import importlib._bootstrap_external as _external\n"
    "import importlib.util\nimport sys\n\n"
    "from kernels.implicit import conv3d  # noqa: F401\n"
    + BASE_TREE
    + "\n\nsys.pycache_prefix = tempfile.mkdtemp()\n"
    "sys.dont_write_bytecode = False\n"
    "for _src in base_files('tuning.py'):\n"
    "    _code = compile('def factor():\\n    return 1.05\\n', str(_src), 'exec')\n"
    "    _stat = _src.stat()\n"
    "    _pyc = Path(importlib.util.cache_from_source(str(_src)))\n"
    "    _pyc.parent.mkdir(parents=True, exist_ok=True)\n"
    "    _pyc.write_bytes(\n"
    "        _external._code_to_timestamp_pyc(_code, _stat.st_mtime, _stat.st_size)\n"
    "    )\n"
)


def test_caught_bytecode_under_the_heads_pycache_prefix_is_not_the_bases(pull, monkeypatch):
    # The head sets sys.pycache_prefix and writes there a valid .pyc of its slower tuning
    # for the base's tuning.py (same mtime and size): the base's tree on disk is
    # untouched, so the tree check has nothing to see. The base's import runs with no
    # prefix and no bytecode (sides._no_bytecode): it compiles its own source. The A/B
    # reads +5%, `regression`.
    monkeypatch.setattr(sys, "pycache_prefix", sys.pycache_prefix)  # put back afterwards
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    code, gate = pull({"kernels/tuning.py": SLOW_TUNING, "kernels/__init__.py": PYCACHE_PREFIX})
    assert code == 0
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> regression*"])
