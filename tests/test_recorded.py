"""Verdicts settled against the recorded code: the kernel as it was at the baseline's
commit, loaded from git beside today's and timed interleaved with it (the kernel here is
the test file's own function; tests/test_ab.py has a kernel package)."""

import json

import pytest

from tests.fake_gpu import CONFTEST, TEST_FILE, FakeProcesses, commit_all, git


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


def test_missing_history_says_so_and_the_stored_number_decides(repo_gate, pytester):
    change_the_kernel(pytester)
    path = pytester.path / "baselines/fake-gpu-9000.json"
    data = json.loads(path.read_text())
    data["cases"]["n1_oc17_bias"]["environment"]["commit"] = "f" * 40
    path.write_text(json.dumps(data))
    result = repo_gate(FAKE_SLOWDOWN=0.05)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*names no commit in *(a shallow clone*?); the stored number decides*"]
    )


def test_the_note_on_configs_names_both_picks_only_when_they_differ():
    from pytest_conv3d_perf.environment import config_note

    a, b = {"BLOCK_M": 128, "num_warps": 8}, {"BLOCK_M": 128, "num_warps": 4}
    note = config_note(a, b)
    assert note is not None
    assert "BLOCK_M=128, num_warps=8 for today's kernel" in note
    assert "BLOCK_M=128, num_warps=4 for the recorded one" in note
    assert "for main (abc)" in (config_note(a, b, "main (abc)") or "")
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
    # Unchanged source, run at another pick than the one it was recorded at: the A/B
    # decides, and a line names both sides' picks.
    picks = "\n\n_PICK = [64]\n\ndef last_config():\n    return {'BLOCK_M': _PICK[0]}\n"
    processes, args = _recorded_repo(pytester, monkeypatch, request, picks)
    # The pick moves without a change to the source: the conftest sets it for this run.
    pytester.makeconftest(CONFTEST + "\nimport test_gate\ntest_gate._PICK[0] = 128\n")
    processes.next()
    result = pytester.runpytest(*args, "--conv3d-against=HEAD")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*A/B against HEAD (*-> unchanged (this decides)*",
            "*the autotuner ran BLOCK_M=128 for today's kernel and BLOCK_M=64 for HEAD (*",
        ]
    )
