"""Verdicts settled against the recorded code: the kernel as it was at the baseline's
commit, loaded from git beside today's and timed interleaved with it."""

import json
import subprocess

import pytest

from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.recorded import load_recorded, repository_path
from tests.fake_gpu import CONFTEST, TEST_FILE, FakeProcesses


def git(folder, *args):
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def commit_all(folder) -> str:
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "x")
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_recorded_function_comes_from_git_and_the_tree_is_untouched(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    (tmp_path / "mod.py").write_text("def kernel():\n    return 'then'\n")
    then = commit_all(tmp_path)
    (tmp_path / "mod.py").write_text("def kernel():\n    return 'now'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mod

    assert repository_path(mod.kernel, tmp_path) == "mod.py"
    entry = BaselineEntry(
        1.0, 0.99, 1.01, 10, "flush", kernel_file="mod.py", environment={"commit": then}
    )
    recorded = load_recorded(mod.kernel, entry, tmp_path, "sha256:today")
    assert recorded.fn is not None and recorded.fn() == "then"
    assert (tmp_path / "mod.py").read_text() == "def kernel():\n    return 'now'\n"
    missing = BaselineEntry(
        1.0, 0.99, 1.01, 10, "flush", kernel_file="mod.py", environment={"commit": "f" * 40}
    )
    why = load_recorded(mod.kernel, missing, tmp_path, "sha256:today").why
    assert "not in this clone's history" in why
    old = BaselineEntry(1.0, 0.99, 1.01, 10, "flush", environment={"commit": then})
    assert (
        "cannot be confirmed against its code" in load_recorded(mod.kernel, old, tmp_path, "x").why
    )
    same = BaselineEntry(
        1.0,
        0.99,
        1.01,
        10,
        "flush",
        kernel_hash="sha256:today",
        kernel_file="mod.py",
        environment={"commit": then},
    )
    assert load_recorded(mod.kernel, same, tmp_path, "sha256:today").same_code


@pytest.fixture
def repo_gate(pytester, monkeypatch, request):
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    processes = FakeProcesses(monkeypatch, request.node.name)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_gate=TEST_FILE)
    git(pytester.path, "init", "-q")
    commit_all(pytester.path)

    def run(*args, **env):
        processes.next(**env)
        return pytester.runpytest(
            "-p",
            "no:cacheprovider",
            "--conv3d-perf",
            "--conv3d-budget=0.5",
            "--conv3d-case=n1_oc17_bias",
            *args,
        )

    assert run("--conv3d-update-baselines").ret == 0
    entry = json.loads((pytester.path / "baselines/fake-gpu-9000.json").read_text())
    assert entry["cases"]["n1_oc17_bias"]["kernel_file"] == "test_gate.py"
    return run


def change_the_kernel(pytester):
    path = pytester.path / "test_gate.py"
    path.write_text(path.read_text() + "\n# today's version\n")


def test_a_real_slowdown_is_confirmed_by_the_ab(repo_gate, pytester):
    change_the_kernel(pytester)
    result = repo_gate(FAKE_SLOWDOWN=0.05)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*A/B against the kernel as recorded at *: +[45].* -> regression (this decides)*"]
    )


def test_a_machine_that_moved_is_not_blamed_on_the_kernel(repo_gate, pytester):
    # Today's kernel and the recorded one both run 5% slower: the machine moved.
    change_the_kernel(pytester)
    result = repo_gate(FAKE_SLOWDOWN=0.05, FAKE_RECORDED_SLOWDOWN=0.05)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*against the stored number: regression (+[45].*",
            "*-> unchanged (this decides)*",
            "*the machine: the recorded kernel runs +[45].*% * against its stored time*",
        ]
    )


def test_unchanged_kernel_source_means_the_move_is_the_machines(repo_gate):
    result = repo_gate(FAKE_SLOWDOWN=0.05)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*the kernel's source is the one the baseline recorded*"])


def test_missing_history_says_so_and_the_stored_number_decides(repo_gate, pytester):
    change_the_kernel(pytester)
    path = pytester.path / "baselines/fake-gpu-9000.json"
    data = json.loads(path.read_text())
    data["cases"]["n1_oc17_bias"]["environment"]["commit"] = "f" * 40
    path.write_text(json.dumps(data))
    result = repo_gate(FAKE_SLOWDOWN=0.05)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*not in this clone's history*the stored number decides*"])


def test_same_source_on_other_software_is_not_called_the_machines(tmp_path):
    # A Triton upgrade that slows the kernel is not the machine's move: the stored
    # number decides, and the reviewer is told why.
    import types

    (tmp_path / "m.py").write_text("def kernel():\n    pass\n")
    mod = types.SimpleNamespace(kernel=lambda: None)
    entry = BaselineEntry(
        1.0,
        0.99,
        1.01,
        10,
        "flush",
        kernel_hash="sha256:x",
        kernel_file="m.py",
        environment={"commit": "abc", "triton": "3.6.0", "torch": "2.11"},
    )
    same = load_recorded(mod.kernel, entry, tmp_path, "sha256:x", {"triton": "3.6.0"})
    assert same.same_code
    moved = load_recorded(mod.kernel, entry, tmp_path, "sha256:x", {"triton": "3.7.0"})
    assert not moved.same_code and moved.fn is None
    assert "triton 3.6.0 -> 3.7.0" in moved.why and "stored number decides" in moved.why


def test_the_note_on_configs_names_both_picks_only_when_they_differ():
    from pytest_conv3d_perf.environment import config_note

    a, b = {"BLOCK_M": 128, "num_warps": 8}, {"BLOCK_M": 128, "num_warps": 4}
    note = config_note(a, b)
    assert note is not None
    assert "BLOCK_M=128, num_warps=8 for today's kernel" in note
    assert "BLOCK_M=128, num_warps=4 for the recorded one" in note
    assert config_note(a, dict(a)) is None
    assert config_note(None, b) is None and config_note(a, None) is None


def _recorded_repo(pytester, monkeypatch, request, kernel_tail: str):
    """A git repository whose kernel module is the fake one plus ``kernel_tail``, its
    baseline recorded at the first commit; the fake processes and the gate's arguments."""
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    processes = FakeProcesses(monkeypatch, request.node.name)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_gate=TEST_FILE + kernel_tail)
    git(pytester.path, "init", "-q")
    commit_all(pytester.path)
    args = ("-p", "no:cacheprovider", "--conv3d-perf", "--conv3d-budget=0.5")
    args += ("--conv3d-case=n1_oc17_bias",)
    processes.next()
    assert pytester.runpytest(*args, "--conv3d-update-baselines").ret == 0
    return processes, args


def test_an_ab_whose_kernels_ran_other_configs_says_so(pytester, monkeypatch, request):
    # A kernel module that reports its autotuner's pick (``last_config``): the recorded
    # version picked 64, today's 128; the A/B's verdict carries a line that says so.
    picks = "\n\ndef last_config():\n    return {'BLOCK_M': %d, 'num_warps': 4}\n"
    processes, args = _recorded_repo(pytester, monkeypatch, request, picks % 64)
    entry = json.loads((pytester.path / "baselines/fake-gpu-9000.json").read_text())
    assert entry["cases"]["n1_oc17_bias"]["autotune"] == {"BLOCK_M": 64, "num_warps": 4}
    pytester.makepyfile(test_gate=TEST_FILE + picks % 128)
    processes.next(FAKE_SLOWDOWN=0.05)
    result = pytester.runpytest(*args)
    result.stdout.fnmatch_lines(
        [
            "*-> regression (this decides)*",
            "*the autotuner ran BLOCK_M=128, num_warps=4 for today's kernel and BLOCK_M=64, "
            "num_warps=4 for the recorded one*",
        ]
    )
    # Same pick on both sides: no such line.
    pytester.makepyfile(test_gate=TEST_FILE + picks % 64 + "\n# today's version\n")
    processes.next(FAKE_SLOWDOWN=0.05)
    assert "the autotuner ran" not in pytester.runpytest(*args).stdout.str()


def test_the_same_source_at_another_autotune_pick_says_so(pytester, monkeypatch, request):
    # Unchanged source, recorded at one pick and run at another: the verdict stays the
    # machine's, and a line names both picks.
    picks = "\n\n_PICK = [64]\n\ndef last_config():\n    return {'BLOCK_M': _PICK[0]}\n"
    processes, args = _recorded_repo(pytester, monkeypatch, request, picks)
    # The pick moves without a change to the source: the conftest sets it for this run.
    pytester.makeconftest(CONFTEST + "\nimport test_gate\ntest_gate._PICK[0] = 128\n")
    processes.next(FAKE_SLOWDOWN=0.05)
    result = pytester.runpytest(*args)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*the kernel's source is the one the baseline recorded*",
            "*the autotuner ran BLOCK_M=128 for today's kernel and BLOCK_M=64 for the "
            "recorded one*",
        ]
    )
