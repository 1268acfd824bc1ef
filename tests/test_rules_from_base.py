"""The pull-request gate judges the head's kernel by the base's rules: every knob a pull
request once used to pass its own 5% regression (issue 25) leaves the verdict where it is,
and is listed for the reviewer."""

import os

import pytest

from pytest_conv3d_perf import cli
from pytest_conv3d_perf.pull_request import (
    PullRequestError,
    RuleChange,
    attributes_moved,
    classify,
    configured_kernel_moved,
    kernel_paths,
    kernel_settings,
    markdown,
    merged_tree,
    nested_configuration,
    plain,
    pytest_ini,
)
from tests.fake_gpu import (
    KERNEL_PACKAGE,
    FakeProcesses,
    commit_all,
    git,
    place,
    write_files,
)
from tests.test_ab import forget_kernels

CASES_FILE = """
[[cases]]
name = "mine"
n = 1
ic = 2
oc = 3
kernel = 1
input = [2, 3, 4]
"""
BASE = {
    **KERNEL_PACKAGE,
    "pytest.ini": "[pytest]\nconv3d_kernel = kernels.implicit:conv3d\n"
    "conv3d_cases_file = cases.toml\n",
    "cases.toml": CASES_FILE,
}
INI = BASE["pytest.ini"]
# The speed test, as the GPU job runs it (gpu-gate.yml, "Performance gate").
CI_ARGS = ("-k", "speed", "--conv3d-perf", "--conv3d-unstable=fail", "--conv3d-case=mine")

# Each knob as the head's edits (file -> new text), and what the rules list must name.
KNOBS = {
    "an ini threshold": (
        {"pytest.ini": INI + "conv3d_fail = 90\nconv3d_warn = 80\n"},
        "conv3d_fail",
    ),
    "a marker": (
        {
            "test_gate.py": "import pytest\n\n\n@pytest.mark.conv3d_perf(fail=50, warn=40)\n"
            + KERNEL_PACKAGE["test_gate.py"]
        },
        "test_gate.py",
    ),
    "per-case thresholds": (
        {"cases.toml": CASES_FILE + "fail_threshold = 90.0\nwarn_threshold = 80.0\n"},
        "cases.toml",
    ),
    "addopts with an update": (
        {"pytest.ini": INI + "addopts = --conv3d-update-baselines --conv3d-dry-run\n"},
        "addopts",
    ),
    "a conftest that moves the baselines": (
        {
            "conftest.py": KERNEL_PACKAGE["conftest.py"] + "\n\ndef pytest_configure(config):\n"
            "    config.option.conv3d_baseline_dir = 'elsewhere'\n"
        },
        "conftest.py",
    ),
    "a renamed speed test": (
        {"test_gate.py": KERNEL_PACKAGE["test_gate.py"].replace("test_speed", "test_sped")},
        "test_gate.py",
    ),
    "a case renamed by name=": (
        {
            "test_gate.py": KERNEL_PACKAGE["test_gate.py"].replace(
                "conv3d_case)\n", "conv3d_case, name='other')\n"
            )
        },
        "test_gate.py",
    ),
    "--deselect in addopts": (
        {"pytest.ini": INI + "addopts = --deselect test_gate.py::test_speed\n"},
        "addopts",
    ),
    "a warm L2": ({"pytest.ini": INI + "conv3d_l2 = warm\n"}, "conv3d_l2"),
    "scaled-down sizes": ({"pytest.ini": INI + "conv3d_size = small\n"}, "conv3d_size"),
    "a timer hook": (
        {
            "conftest.py": KERNEL_PACKAGE["conftest.py"].replace(
                'slowdown=_env("FAKE_SLOWDOWN", 0)', "slowdown=-0.05"
            )
        },
        "conftest.py",
    ),
    "the decision code": (
        {"pytest_conv3d_perf/verdict.py": "def decide(*args, **kwargs):\n    return 'unchanged'\n"},
        "pytest_conv3d_perf/verdict.py",
    ),
}


@pytest.fixture
def pull_request(pytester, monkeypatch, request):
    """A repository with a base commit and a head commit that is 5% slower in the kernel's
    package; ``compose(edits)`` adds ``edits`` to the head, composes the gate's tree in a
    checkout of the base and returns its rules Markdown; ``gate()`` runs the CI's speed
    test there against the base."""
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    forget_kernels(monkeypatch)
    processes = FakeProcesses(monkeypatch, request.node.name)
    monkeypatch.chdir(pytester.path)
    write_files(pytester.path, BASE)
    git(pytester.path, "init", "-q")
    state = {"base": commit_all(pytester.path, "base")}

    def compose(edits: dict[str, str]) -> str:
        place(pytester.path, "a module it imports")
        write_files(pytester.path, edits)
        state["head"] = commit_all(pytester.path, "head")
        git(pytester.path, "checkout", "-q", "--detach", state["base"])
        code = cli.main(
            ["pull-request", "--base", state["base"], "--head", state["head"], "--markdown", "r.md"]
        )
        assert code == 0
        return (pytester.path / "r.md").read_text()

    def gate(*args):
        processes.next()
        return pytester.runpytest(
            "-p", "no:cacheprovider", *CI_ARGS, f"--conv3d-against={state['base']}", *args
        )

    yield compose, gate, state
    os.environ.pop("KERNEL_SLOW", None)


@pytest.mark.parametrize("knob", list(KNOBS))
def test_no_knob_of_the_pull_request_moves_its_verdict(pull_request, pytester, knob):
    compose, gate, _ = pull_request
    edits, named = KNOBS[knob]
    rules = compose(edits)
    result = gate()
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*A/B against*+[45].*-> regression*", "*FAILED (1 regression)*"])
    assert named in rules, rules
    assert "take effect after merge" in rules
    # The head's kernel package is under test; its other files are the base's.
    assert "1.05" in (pytester.path / "kernels" / "tuning.py").read_text()
    for path, text in edits.items():
        here = pytester.path / path
        assert not here.exists() or here.read_text() != text, path


def test_a_pull_request_that_changes_only_the_kernel_lists_no_rule(pull_request):
    compose, gate, _ = pull_request
    rules = compose({})
    assert "changes none of the rules" in rules and "`kernels`" in rules
    assert gate().ret == 1


def test_the_head_kernel_package_replaces_the_base_one(pull_request, pytester):
    compose, _, state = pull_request
    write_files(pytester.path, {"kernels/extra.py": "X = 1\n"})
    state["base"] = commit_all(pytester.path, "a base with one more module")
    git(pytester.path, "rm", "-q", "kernels/extra.py")
    compose({})  # the head deletes it
    assert not (pytester.path / "kernels" / "extra.py").exists()
    assert "1.05" in (pytester.path / "kernels" / "tuning.py").read_text()


def test_compose_refuses_a_dirty_tree_or_another_commit(pytester, monkeypatch, capsys):
    monkeypatch.chdir(pytester.path)
    write_files(pytester.path, BASE)
    git(pytester.path, "init", "-q")
    base = commit_all(pytester.path, "base")
    place(pytester.path, "the kernel's file")
    head = commit_all(pytester.path, "head")
    assert cli.main(["pull-request", "--base", base, "--head", head]) == 2
    assert "not the base" in capsys.readouterr().err
    git(pytester.path, "checkout", "-q", "--detach", base)
    (pytester.path / "cases.toml").write_text("edited\n")
    assert cli.main(["pull-request", "--base", base, "--head", head]) == 2
    assert "the work tree has changes" in capsys.readouterr().err
    assert (pytester.path / "cases.toml").read_text() == "edited\n"  # nothing overwritten
    for bad in ("--output=/tmp/x", "no-such"):
        assert cli.main(["pull-request", f"--base={bad}", "--head", head]) == 2
        assert "conv3d-perf pull-request:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("pytest.ini", "[pytest]\nconv3d_fail = 3\n", {"conv3d_fail": "3"}),
        ("pyproject.toml", "[tool.pytest.ini_options]\nconv3d_fail = '3'\n", {"conv3d_fail": "3"}),
        ("pyproject.toml", "[tool.pytest]\nconv3d_fail = '3'\n", {"conv3d_fail": "3"}),
        ("pytest.toml", "[pytest]\nconv3d_fail = '3'\n", {"conv3d_fail": "3"}),
        ("tox.ini", "[pytest]\nconv3d_fail = 3\n", {"conv3d_fail": "3"}),
        ("setup.cfg", "[tool:pytest]\nconv3d_fail = 3\n", {"conv3d_fail": "3"}),
    ],
)
def test_the_configuration_is_read_where_pytest_reads_it(name, text, expected):
    files = {name: text, "pyproject.toml": "[project]\nname = 'x'\n", **{name: text}}
    assert pytest_ini(files.get) == (name, expected)


def test_the_kernel_package_comes_from_the_configuration():
    values = {"conv3d_kernel": "kernels.implicit_gemm:conv3d", "conv3d_model": "models:M"}
    assert kernel_paths(values, lambda p: p == "kernels") == ["kernels", "models.py"]
    with pytest.raises(PullRequestError, match="nothing to take"):
        kernel_paths({}, lambda p: True)
    with pytest.raises(PullRequestError, match="plugin cannot be"):
        kernel_paths({"conv3d_kernel": "pytest_conv3d_perf.x:f"}, lambda p: True)


@pytest.mark.parametrize(
    "path, kind",
    [
        ("pytest.ini", "pytest configuration"),
        ("cases.toml", "cases"),
        ("pytest_conv3d_perf/suite.toml", "cases"),
        ("pytest_conv3d_perf/gate.py", "the plugin"),
        ("tests/test_suite.py", "tests and conftest"),
        ("sub/conftest.py", "tests and conftest"),
        (".github/workflows/gpu-gate.yml", "workflows and CI"),
        ("baselines/x.json", "baselines"),
        ("README.md", "other files"),
        (
            "kernel_helpers.py",
            "code or data outside the kernel package (not measured: the base's copy ran)",
        ),
        (
            "data/tuning.json",
            "code or data outside the kernel package (not measured: the base's copy ran)",
        ),
    ],
)
def test_each_changed_file_is_named_with_its_kind(path, kind):
    assert classify(path, "pytest.ini", frozenset({"cases.toml"})) == kind


def test_untrusted_names_are_shown_as_plain_text():
    hostile = "a`b\u202e[x](http://e)\u200b\n@someone"
    shown = plain(hostile)
    assert shown.startswith("`") and shown.endswith("`") and shown.count("`") == 2
    assert "\u202e" not in shown and "\u200b" not in shown and "\n" not in shown
    text = markdown([RuleChange("the plugin", hostile, "changed")], ["kernels"], "f" * 40)
    assert "\u202e" not in text and "take effect after merge" in text


@pytest.mark.parametrize(
    "addopts",
    [
        "--conv3d-kernel=kernels.rewrite:conv3d",
        "-q --conv3d-kernel kernels.rewrite:conv3d",
        "-o conv3d_kernel=kernels.rewrite:conv3d",
        "-oconv3d_kernel=kernels.rewrite:conv3d",
        "--override-ini=conv3d_kernel=kernels.rewrite:conv3d",
        "--override-ini 'conv3d_kernel = kernels.rewrite:conv3d'",
    ],
)
def test_a_kernel_set_in_addopts_is_the_configured_one(addopts):
    base = {"conv3d_kernel": "kernels.implicit:conv3d"}
    head = {**base, "addopts": addopts}
    assert kernel_settings(head)["conv3d_kernel"] == "kernels.rewrite:conv3d"
    moved = configured_kernel_moved(base, head)
    assert moved.startswith("addopts: (unset) -> ") and "kernels.rewrite:conv3d" in moved


@pytest.mark.parametrize(
    "before, after",
    [
        ("", "-vo conv3d_kernel=kernels.rewrite:conv3d"),  # -o grouped after a flag
        ("", "-o=conv3d_model=models:Other"),
        ("--conv3d-kernel kernels.implicit:conv3d", "--conv3d-kernel kernels.rewrite:conv3d"),
        ("--conv3d-kernel kernels.implicit:conv3d", ""),  # back to the ini value
    ],
)
def test_an_addopts_change_where_it_names_the_kernel_counts_whatever_it_sets(before, after):
    base = {"conv3d_kernel": "kernels.implicit:conv3d", "addopts": before}
    assert configured_kernel_moved(base, {**base, "addopts": after}).startswith("addopts: ")


def test_addopts_that_name_no_kernel_move_nothing():
    base = {"conv3d_kernel": "kernels.implicit:conv3d", "addopts": "-ra"}
    head = {**base, "addopts": "-ra -o conv3d_fail=3 -p no:foo"}
    assert configured_kernel_moved(base, head) == ""
    same = {**base, "addopts": "--conv3d-kernel kernels.implicit:conv3d"}
    assert configured_kernel_moved(same, dict(same)) == ""


def test_a_toml_list_is_read_as_the_words_it_holds():
    text = '[tool.pytest]\naddopts = ["-o", "conv3d_kernel=a b:c", "-ra"]\n'
    _, values = pytest_ini({"pyproject.toml": text}.get)
    assert values["addopts"] == "-o 'conv3d_kernel=a b:c' -ra"


def test_addopts_pytest_cannot_split_refuse_the_pull_request():
    with pytest.raises(PullRequestError, match="addopts does not split"):
        kernel_settings({"addopts": "--conv3d-kernel 'kernels.rewrite:conv3d"})


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("pytest.ini", "[pytest]\nconv3d_kernel = a:b\nconv3d_kernel = c:d\n", "duplicate name"),
        ("pyproject.toml", "[tool.pytest.ini_options\n", "not valid TOML"),
    ],
)
def test_a_configuration_file_pytest_cannot_read_refuses_the_pull_request(name, text, match):
    with pytest.raises(PullRequestError, match=match):
        pytest_ini({name: text}.get)


def test_keys_that_differ_in_case_are_two_keys_as_pytest_reads_them():
    ini = "[pytest]\nconv3d_kernel = kernels.rewrite:conv3d\nConv3d_Kernel = x:y\n"
    name, values = pytest_ini({"pytest.ini": ini, "pyproject.toml": "[project]\n"}.get)
    assert name == "pytest.ini"
    assert values["conv3d_kernel"] == "kernels.rewrite:conv3d"


def test_a_head_behind_the_base_is_merged_and_a_conflict_refused(tmp_path, capsys):
    write_files(tmp_path, {"kernels/a.py": "A = 1\n", "kernels/b.py": "B = 1\n"})
    git(tmp_path, "init", "-q")
    fork = commit_all(tmp_path, "fork")
    write_files(tmp_path, {"kernels/a.py": "A = 2\n"})
    base = commit_all(tmp_path, "main moved on")
    git(tmp_path, "checkout", "-q", "--detach", fork)
    write_files(tmp_path, {"kernels/b.py": "B = 2\n"})
    head = commit_all(tmp_path, "head")
    assert merged_tree(tmp_path, fork, head) == head  # it contains that one
    tree = merged_tree(tmp_path, base, head)
    assert git(tmp_path, "show", f"{tree}:kernels/a.py") == "A = 2"
    assert git(tmp_path, "show", f"{tree}:kernels/b.py") == "B = 2"
    git(tmp_path, "checkout", "-q", "--detach", fork)
    write_files(tmp_path, {"kernels/a.py": "A = 3\n"})
    clash = commit_all(tmp_path, "clash")
    with pytest.raises(PullRequestError, match=r"without conflicts.*kernels/a\.py"):
        merged_tree(tmp_path, base, clash)


def test_the_summary_says_when_the_head_was_merged_into_the_base():
    text = markdown([], ["kernels"], "a" * 40, "b" * 40)
    assert "merged into the base `bbbbbbbbbb` as it would land" in text
    assert "merged" not in markdown([], ["kernels"], "a" * 40)


def test_a_pytest_configuration_below_the_top_is_found_and_other_files_of_its_name_are_not():
    files = {
        "tests/pytest.ini": "[pytest]\nconv3d_kernel = kernels.rewrite:conv3d\n",
        "tests/tox.ini": "[tox]\nenvlist = py311\n",  # no [pytest]: pytest passes it over
        "docs/pyproject.toml": "[project]\nname = 'docs'\n",
        "tools/pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-ra'\n",
        "pytest.ini": "[pytest]\n",  # the top's: judged as the rules are
    }
    assert nested_configuration(list(files), files.get) == [
        "tests/pytest.ini",
        "tools/pyproject.toml",
    ]


PACKAGE = {
    "kernels/__init__.py": "",
    "kernels/tuning.py": "",
    "kernels/tables/h200.json": "{}\n",
    "docs/a.md": "",
}


@pytest.mark.parametrize(
    "path, before, after, moved",
    [
        (".gitattributes", "", "kernels/tuning.py ident\n", ["kernels/tuning.py"]),
        (
            ".gitattributes",
            "",
            "*.py text eol=crlf\n",
            ["kernels/__init__.py", "kernels/tuning.py"],
        ),
        (".gitattributes", "", "tuning.py filter=lfs\n", ["kernels/tuning.py"]),
        (".gitattributes", "", "*.json binary\n", ["kernels/tables/h200.json"]),  # -text
        (".gitattributes", "", "[attr]fast ident\ntuning.py fast\n", ["kernels/tuning.py"]),
        (".gitattributes", "*.py ident\n", "", ["kernels/__init__.py", "kernels/tuning.py"]),
        # Patterns as git reads them (the seventh red team): fnmatch read each otherwise.
        (".gitattributes", "", "**/kernels/tuning.py ident\n", ["kernels/tuning.py"]),
        (".gitattributes", "", "kernels/**/tuning.py ident\n", ["kernels/tuning.py"]),
        (".gitattributes", "", "tuning.p[^x] ident\n", ["kernels/tuning.py"]),
        (".gitattributes", "", "tuning\\.py ident\n", ["kernels/tuning.py"]),
        ("kernels/.gitattributes", "", "**/tuning.py ident\n", ["kernels/tuning.py"]),
        # What changes no byte a checkout writes, or applies to no file of the package.
        (".gitattributes", "", "*.py diff=python linguist-language=Python\n", []),
        (".gitattributes", "", "docs/*.md text eol=crlf\n", []),
        (".gitattributes", "", "*.png binary\n", []),
        (".gitattributes", "# a comment\n", "# another comment\n", []),
        ("docs/.gitattributes", "", "* ident\n", []),
        (
            "kernels/tables/.gitattributes",
            "",
            "*.json eol=crlf\n",
            ["kernels/tables/h200.json"],
        ),
    ],
)
def test_attributes_that_change_the_packages_checkout_are_found(
    tmp_path, path, before, after, moved
):
    write_files(tmp_path, {**PACKAGE, path: before})
    git(tmp_path, "init", "-q")
    base = commit_all(tmp_path, "base")
    write_files(tmp_path, {path: after})
    head = commit_all(tmp_path, "head")
    files = [f for f in PACKAGE if f.startswith("kernels/")]
    assert attributes_moved(tmp_path, base, head, files) == moved
