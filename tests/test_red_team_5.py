"""The fifth red team: ways a pull request got a slowdown past the gate without patching
anything in the gate's process, staged as the GPU job runs the gate, on the fake kernel
package (tests/fake_gpu.py): a commit history in an "origin" repository, then the job's
own sequence in a fresh one (`git init`, fetch every branch, check out the head, then the
base), `conv3d-perf pull-request`, and the base's speed test with --conv3d-against BASE
--conv3d-unstable=fail (the `job` fixture below; the `pull` fixture of tests/conftest.py
composes the head in the origin's own work tree, which the job never does).

None of these monkeypatches a library, looks at the stack, caches calls, patches the
plugin or finds the base's modules through gc (the conceded kinds): each slows the kernel
through files, git or the configuration, and most of them with no code the gate runs.

Each test asserts what the gate should do. The seven that got through were strict xfails
when the review was written and are plain tests since the fixes of the same session
(each says what stops it now); the attacks the gate caught already are plain tests too.
notes/gate-quality.md, "A fifth red-team review", has the table."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.conftest as shared
from tests.fake_gpu import KERNEL_PACKAGE, FakeProcesses, git, write_files
from tests.test_ab import forget_kernels
from tests.test_red_team import SLOW_TUNING

# The fake package's kernel with its data file read through the package's name (the
# idiom importlib.resources documents): at call time, that name is whatever sys.modules
# holds.
RESOURCE_KERNEL = (
    KERNEL_PACKAGE["kernels/implicit.py"]
    .replace(
        "import json\nimport os\n", "import json\nimport os\nfrom importlib import resources\n"
    )
    .replace(
        'json.loads((Path(__file__).parent / "config.json").read_text())',
        'json.loads(resources.files(__package__).joinpath("config.json").read_text())',
    )
)

# The fake package's kernel with its helper imported when first called (a shorter import),
# through importlib rather than an import statement.
LAZY_KERNEL = (
    KERNEL_PACKAGE["kernels/implicit.py"]
    .replace("from kernels import tuning\n", "import importlib\n")
    .replace(
        '    config = json.loads((Path(__file__).parent / "config.json").read_text())\n',
        '    config = json.loads((Path(__file__).parent / "config.json").read_text())\n'
        '    tuning = importlib.import_module(__package__ + ".tuning")\n',
    )
)

# The fake package's kernel with optional per-site overrides of its config.
OVERRIDES_KERNEL = KERNEL_PACKAGE["kernels/implicit.py"].replace(
    '    config = json.loads((Path(__file__).parent / "config.json").read_text())\n',
    '    config = json.loads((Path(__file__).parent / "config.json").read_text())\n'
    '    overrides = Path(__file__).parent / "overrides.json"\n'
    "    if overrides.is_file():  # a site's own tuning, where it has one\n"
    "        config.update(json.loads(overrides.read_text()))\n",
)

# Each an edit of the fake kernel (a change there would leave it as it was).
assert "resources.files" in RESOURCE_KERNEL and "from importlib" in RESOURCE_KERNEL
assert "import_module" in LAZY_KERNEL and "from kernels import tuning" not in LAZY_KERNEL
assert "overrides.json" in OVERRIDES_KERNEL

# The fake package configured where this repository configures its own: pyproject.toml.
PYPROJECT = '[tool.pytest.ini_options]\nconv3d_kernel = "kernels.implicit:conv3d"\n'
ON_PYPROJECT = {"pytest.ini": None, "pyproject.toml": PYPROJECT}

# A second kernel in the package, 5% slower than kernels.implicit (its own copy, say a
# rewrite that is not finished).
SLOW_KERNEL = {
    "kernels/rewrite.py": KERNEL_PACKAGE["kernels/implicit.py"].replace("MS = 1.0", "MS = 1.05")
}


class Job:
    """One pull request as the GPU job sees it."""

    def __init__(self, origin: Path, src: Path, base: str, head: str, code: int) -> None:
        self.origin, self.src, self.base, self.head, self.code = origin, src, base, head, code


def _commit(folder: Path, message: str) -> str:
    git(folder, "commit", "-q", "--allow-empty", "-m", message)
    return git(folder, "rev-parse", "HEAD")


def _apply(folder: Path, files: dict) -> None:
    write_files(folder, {k: v for k, v in files.items() if v is not None})
    for name in [k for k, v in files.items() if v is None]:
        (folder / name).unlink()


@pytest.fixture
def job(pytester, monkeypatch, request, tmp_path_factory):
    """``job(head, base=..., merged=..., links=..., gitlinks=..., index_only=...)``:

    - ``base``: edits to the fake package that make the base commit (path -> text, None
      deletes), ``merged``: edits landed on main after the head branched off (the base is
      then that commit, and the head's parent the one before);
    - ``head``: the pull request's edits, ``links``: path -> symbolic link target,
      ``gitlinks``: paths the head holds as submodules, ``index_only``: path -> text
      committed without touching the origin's work tree (a .gitattributes that the
      origin's own checkout should not apply), ``checkout_head``: check the head out
      before the base, as the job did until the fifth red team.

    Runs the job's steps up to `conv3d-perf pull-request` in a fresh repository
    (pytester's folder) and returns a Job; ``gate()`` then runs the base's speed test."""
    from pytest_conv3d_perf import cli

    monkeypatch.delenv("GITHUB_SHA", raising=False)
    monkeypatch.delenv("KERNEL_SLOW", raising=False)
    forget_kernels(monkeypatch)
    processes = FakeProcesses(monkeypatch, request.node.name)
    origin = tmp_path_factory.mktemp("origin")
    src = pytester.path
    state = {}

    def make(
        head, base=None, merged=None, links=None, gitlinks=(), index_only=None, checkout_head=False
    ):
        git(origin, "init", "-q", "-b", "main")
        write_files(origin, KERNEL_PACKAGE)
        _apply(origin, base or {})
        git(origin, "add", "-A")
        fork = _commit(origin, "base")
        base_sha = fork
        if merged:
            _apply(origin, merged)
            git(origin, "add", "-A")
            base_sha = _commit(origin, "merged after the head branched")
        git(origin, "checkout", "-q", "-b", "pull", fork)
        _apply(origin, head)
        for name, target in (links or {}).items():
            (origin / name).unlink(missing_ok=True)
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            (origin / name).symlink_to(target)
        git(origin, "add", "-A", "-f")
        for name in gitlinks:
            git(origin, "update-index", "--add", "--cacheinfo", f"160000,{fork},{name}")
        for name, text in (index_only or {}).items():
            blob = subprocess.run(
                ["git", "hash-object", "-w", "--stdin"],
                cwd=origin,
                input=text,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            git(origin, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
        head_sha = _commit(origin, "head")
        # The GPU job: a fresh repository, every branch fetched, the head's commit checked
        # for (never checked out: the head's .gitattributes would apply, the row below),
        # then the base checked out (gpu-gate.yml, "A fresh clone" and "The base commit's
        # rules").
        git(src, "init", "-q")
        git(src, "fetch", "-q", "--no-tags", str(origin), "+refs/heads/*:refs/remotes/origin/*")
        git(src, "rev-parse", "-q", "--verify", f"{head_sha}^{{commit}}")
        if checkout_head:  # as the job did until the fifth red team
            git(src, "checkout", "-q", "--detach", head_sha)
            time.sleep(1.1)  # the job's steps apart (racy git re-reads files of this second)
        git(src, "checkout", "-q", "--detach", base_sha)
        monkeypatch.chdir(src)
        code = cli.main(
            ["pull-request", "--base", base_sha, "--head", head_sha, "--markdown", "rules.md"]
        )
        state["base"] = base_sha
        done = Job(origin, src, base_sha, head_sha, code)
        done.gate = gate
        return done

    def gate():
        processes.next()
        for name in [m for m in list(sys.modules) if m == "kernels" or m.startswith("kernels.")]:
            del sys.modules[name]
        return pytester.runpytest(
            "-p", "no:cacheprovider", *shared.RED_TEAM_CI_ARGS, f"--conv3d-against={state['base']}"
        )

    yield make
    os.environ.pop("KERNEL_SLOW", None)
    sys.modules.pop("kernels", None)


def _stopped(job_: Job, result) -> bool:
    """Whether the job stopped the pull request: `pull-request` refused it, or the gate
    failed."""
    return job_.code != 0 or result is None or result.ret != 0


def _ls_tree(folder: Path, commit: str, path: str) -> str:
    return git(folder, "ls-tree", commit, "--", path)


# -- got through, stopped since ---------------------------------------------------------


# The head's tuning reads a table beside it and falls back to the defaults where a GPU has
# none; the table is a link to the H200's, in the package.
TUNING_WITH_TABLE = (
    "import json\nfrom pathlib import Path\n\n"
    "_TABLE = Path(__file__).with_name('tuned.json')\n\n\n"
    "def factor():\n"
    "    try:\n"
    "        return json.loads(_TABLE.read_text())['factor']\n"
    "    except FileNotFoundError:  # no table for this GPU: the defaults\n"
    "        return 1.0\n"
)


def test_a_link_in_the_package_is_not_dropped_from_the_tree_under_test(job):
    # sides.extract writes no symbolic link (nothing outside the tree is reachable), and
    # `pull-request` says nothing about it: the second red team's link to a slower module
    # failed the import, but a link whose absence is the fast path passes. The head's
    # tuning reads kernels/tuned.json, a link to kernels/tables/h200.json ({"factor":
    # 1.05}), and falls back to 1.0 without it. In the gate's tree the link is missing:
    # head 1.0 against base 1.0, `unchanged`, exit 0. In any checkout of the merged commit
    # the link is there and every call is 5% slower. Nothing lies outside the package, so
    # the summary lists no file as "not measured". Fix: `pull_request.refused_files` (or
    # `blobs`' listing for it) refuses any entry of the package that is not a regular
    # file (mode 120000, 160000).
    # Now `refused_files` refuses a link or a submodule in the package (`sides.regular`).
    pr = job(
        {"kernels/tuning.py": TUNING_WITH_TABLE, "kernels/tables/h200.json": '{"factor": 1.05}\n'},
        links={"kernels/tuned.json": "tables/h200.json"},
    )
    assert _ls_tree(pr.origin, pr.head, "kernels/tuned.json").startswith("120000")
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def test_a_submodule_in_the_package_is_not_dropped_from_the_tree_under_test(job):
    # The same with a submodule (a vendored folder of tuning tables, mode 160000): not
    # written, not mentioned; the head's tuning falls back to 1.0 without its table. A
    # checkout with its submodules (`git clone --recurse-submodules`) runs the table's
    # 1.05. Same fix.
    # Now refused as the link is.
    pr = job(
        {
            "kernels/tuning.py": TUNING_WITH_TABLE.replace(
                "with_name('tuned.json')", "with_name('tables') / 'h200.json'"
            ),
            ".gitmodules": '[submodule "kernels/tables"]\n\tpath = kernels/tables\n'
            "\turl = https://example.com/tables.git\n",
        },
        gitlinks=("kernels/tables",),
    )
    assert _ls_tree(pr.origin, pr.head, "kernels/tables").startswith("160000")
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def test_a_data_file_the_base_reads_by_package_name_is_the_bases(job):
    # Two steps, the second a data file alone. The base (a first pull request, itself no
    # slower, merged) reads config.json through importlib.resources.files(__package__),
    # the documented way to read a package's data. The A/B imports the base with the
    # repository's modules hidden, but runs its calls with sys.modules as the head left
    # it (`sides.pair` swaps modules only where `_imports_lazily` finds an import
    # statement in a function): at call time `kernels` is the head's package, so the
    # base reads the head's config.json. The head changes only that file, factor 1.05:
    # both sides 5% slower, `unchanged`. Fix: `sides.pair` enters each side's modules
    # around every call of the A/B (`modules=True` always, both sides wrapped alike), not
    # only where an import statement was seen.
    # Now each side's modules are in sys.modules around each of its calls (`sides.pair`, a swap of a
    # few entries).
    pr = job(
        {"kernels/config.json": '{"factor": 1.05}\n'}, base={"kernels/implicit.py": RESOURCE_KERNEL}
    )
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def test_a_helper_the_base_imports_at_call_time_through_importlib_is_the_bases(job):
    # The same channel for code: the base (merged before) imports its tuning module when
    # first called, through importlib.import_module; `_imports_lazily` looks for import
    # statements only, so the base's calls run with the head's modules in sys.modules and
    # import the head's tuning. The head changes tuning.py alone (factor 1.05): both sides
    # 5% slower, `unchanged`. Same fix.
    # Now the swap, and the base's first call imports through the run's machinery and marks it as
    # importing when it runs.
    pr = job({"kernels/tuning.py": SLOW_TUNING}, base={"kernels/implicit.py": LAZY_KERNEL})
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def test_a_head_behind_its_base_is_judged_as_it_would_merge(job):
    # The gate puts the head's kernel package into the base's tree: the head as it is, not
    # as it merges. A first pull request (no slower) lands on main a kernel that applies
    # kernels/overrides.json where one exists. The second, branched before it, adds that
    # file alone ({"factor": 1.05}): its own kernel (the older one) never reads it, the
    # base's has none, so the A/B is 1.0 against 1.0, `unchanged`. The two merge without a
    # conflict, and the merged kernel reads the file: 5% slower. (GitHub's base.sha also
    # stays at the base branch's tip of the pull request's last push, so a pull request
    # reopened or dispatched later is judged against an older base still.) Fix: the GPU
    # job refuses a head that does not contain the base (`git merge-base --is-ancestor
    # "$AGAINST" "$HEAD_SHA"` in "The base commit's rules", or in
    # `pull_request.compose`), or composes the tree from the merge (refs/pull/N/merge,
    # or `git merge-tree --write-tree BASE HEAD`), with the base taken as the default
    # branch's tip fetched in the same step.
    # Now `compose` takes the kernel package from the head merged into the base (`merged_tree`), and
    # the GPU job judges a pull request against main as fetched.
    pr = job(
        {"kernels/overrides.json": '{"factor": 1.05}\n'},
        merged={"kernels/implicit.py": OVERRIDES_KERNEL},
    )
    merge = subprocess.run(
        ["git", "merge-tree", "--write-tree", pr.base, pr.head],
        cwd=pr.src,
        capture_output=True,
        text=True,
    )
    assert merge.returncode == 0, merge.stdout  # merges cleanly
    tree = merge.stdout.split()[0]
    assert "overrides.json" in git(pr.src, "show", f"{tree}:kernels/implicit.py")
    assert json.loads(git(pr.src, "show", f"{tree}:kernels/overrides.json"))["factor"] == 1.05
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def _pytest_config_of(folder: Path) -> tuple[str, dict]:
    """The configuration file pytest takes in ``folder`` and its values."""
    from _pytest.config.findpaths import locate_config

    _, inifile, cfg, _ = locate_config(folder, [folder])
    return inifile.name, {k: v.value for k, v in cfg.items()}


def test_a_pytest_ini_the_check_cannot_parse_does_not_move_the_kernel(job, tmp_path):
    # The first red team's attack (a head that makes another function the project's
    # kernel was timed by the base's configuration: its old kernel) is refused by
    # `pull_request.configured_kernel_moved`, which reads the head's configuration with
    # configparser. pytest reads ini files with iniconfig. An ini file with one key twice
    # in different case is two keys to iniconfig and a DuplicateOptionError to
    # configparser, and `_ini_of` then returns None: `pytest_ini` passes over the file
    # (pytest, holding a [pytest] section, takes it) and reads the base's pyproject.toml,
    # unchanged. The head adds kernels/rewrite.py (5% slower) and a pytest.ini naming it:
    # accepted, the summary lists "pytest.ini added" without a changed value, the gate
    # times the old kernel, `unchanged`. After the merge pytest takes pytest.ini: the
    # project's kernel is the slower one. Fix: `pull_request._ini_of` parses as pytest
    # does (iniconfig, through `_pytest.config.findpaths.load_config_dict_from_file`), and
    # a configuration file it cannot read refuses the pull request instead of being
    # passed over.
    # Now `_ini_of` reads as pytest does (iniconfig); a file it cannot read refuses the pull
    # request.
    ini = (
        "[pytest]\nconv3d_kernel = kernels.rewrite:conv3d\nConv3d_Kernel = kernels.rewrite:conv3d\n"
    )
    pr = job({"pytest.ini": ini, **SLOW_KERNEL}, base=ON_PYPROJECT)
    after = tmp_path / "after-merge"
    after.mkdir()
    for name in ("pytest.ini", "pyproject.toml"):
        (after / name).write_text(git(pr.origin, "show", f"{pr.head}:{name}") + "\n")
    assert _pytest_config_of(after) == (
        "pytest.ini",
        {"conv3d_kernel": "kernels.rewrite:conv3d", "Conv3d_Kernel": "kernels.rewrite:conv3d"},
    )
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


def test_addopts_naming_another_kernel_does_not_move_it_past_the_check(job):
    # `configured_kernel_moved` compares the ini values conv3d_kernel and conv3d_model;
    # the command-line option --conv3d-kernel (which takes precedence over the ini value)
    # put in addopts moves the kernel as well. The head adds it beside an unchanged
    # conv3d_kernel: accepted (the summary lists the addopts change among the rules that
    # "take effect after merge"), the gate times the old kernel, `unchanged`; after the
    # merge every run times kernels/rewrite.py, 5% slower. Fix:
    # `pull_request.configured_kernel_moved` also reads --conv3d-kernel/--conv3d-model
    # in addopts (shlex-split) of the head's configuration, or `compose` refuses a head
    # whose addopts names either option.
    # Now `configured_kernel_moved` compares the kernel and model that addopts sets too
    # (`kernel_settings`).
    pyproject = PYPROJECT.replace(
        "conv3d_kernel", 'addopts = "--conv3d-kernel=kernels.rewrite:conv3d"\nconv3d_kernel'
    )
    pr = job({"pyproject.toml": pyproject, **SLOW_KERNEL}, base=ON_PYPROJECT)
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


# -- tried, and caught ------------------------------------------------------------------


def test_caught_the_heads_gitattributes_cannot_rewrite_the_bases_rules(job):
    # The job checked out the head first in a fresh repository, so the head's
    # .gitattributes applied to every file written; switching to the base rewrites only
    # the files whose blob differs, and `git status` stays clean (the index holds the
    # converted files' stat data, once the steps are a second apart; closer, racy git
    # re-reads them and `pull-request` refuses a tree with changes). So the base's rules
    # in the work tree could be the head's conversion of them (eol=crlf,
    # working-tree-encoding, ident) rather than the base's blobs. Every conversion tried
    # either changed nothing Python, TOML or INI reads (line ends) or made the file
    # unreadable: here the base's pytest.ini in UTF-16, which `pull-request` could not
    # read ("the base configures no conv3d_kernel"), so the job stopped. Not a pass, but
    # the tree the job composed was not what git holds. Now the job never checks the head
    # out: the base's files are its blobs, and the slowdown is judged.
    attributes = {".gitattributes": "* text eol=crlf\npytest.ini working-tree-encoding=UTF-16LE\n"}
    old = job({"kernels/tuning.py": SLOW_TUNING}, index_only=attributes, checkout_head=True)
    assert b"\0" in (old.src / "pytest.ini").read_bytes()  # as the job was: converted
    assert git(old.src, "status", "--porcelain", "--untracked-files=no") == ""


def test_caught_the_base_is_checked_out_as_git_holds_it(job):
    attributes = {".gitattributes": "* text eol=crlf\npytest.ini working-tree-encoding=UTF-16LE\n"}
    pr = job({"kernels/tuning.py": SLOW_TUNING}, index_only=attributes)
    assert b"\0" not in (pr.src / "pytest.ini").read_bytes()
    assert b"\r\n" not in (pr.src / "conftest.py").read_bytes()
    # And since the sixth red team a change of attributes that apply to the package's
    # files on checkout is refused (`attributes_moved`): nothing is composed.
    assert pr.code == 2


def test_caught_control_a_slower_helper_under_the_fresh_clone_job(job):
    # The fixture's control: the job's sequence on a plain 5% slowdown in the package is a
    # regression (so the xfails above fail on the attack, not on the staging).
    pr = job({"kernels/tuning.py": SLOW_TUNING})
    assert pr.code == 0
    result = pr.gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*-> regression*"])
