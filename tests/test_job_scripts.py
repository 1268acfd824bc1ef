"""The scripts the workflows run around the gate: the GPU job's venv over the runner's torch
and Triton (.github/scripts/job_venv.py), and the update workflow's hand-over of new baseline
files (.github/scripts/propose_baselines.py)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / ".github" / "scripts"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


job_venv = script("job_venv")


# -- the GPU job's venv -------------------------------------------------------------------


def test_a_runner_without_torch_or_triton_is_refused_in_one_line(monkeypatch, capsys):
    def version(name: str) -> str:
        if name == "triton":
            raise metadata.PackageNotFoundError(name)
        return "2.11.0+cu130"

    with pytest.raises(LookupError, match="triton"):
        job_venv.kept_versions(version)
    monkeypatch.setattr(
        job_venv, "kept_versions", lambda: (_ for _ in ()).throw(LookupError("torch"))
    )
    assert job_venv.main(["venv"]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("::error::the runner's Python") and "has no torch" in line


@pytest.mark.parametrize("act, code, level", [("", 1, "::error::"), ("true", 0, "::warning::")])
def test_a_runner_python_the_job_can_write_into_is_refused_outside_act(
    monkeypatch, capsys, tmp_path, act, code, level
):
    monkeypatch.setattr(job_venv, "runner_folders", lambda: [str(tmp_path)])
    monkeypatch.setattr(job_venv, "kept_versions", lambda: {"torch": "2.11", "triton": "3.6"})
    monkeypatch.setattr(job_venv.os, "access", lambda path, mode: True)
    made = []
    monkeypatch.setattr(job_venv, "make", lambda *args: made.append(args))
    monkeypatch.setenv("ACT", act)
    assert job_venv.main([str(tmp_path / "venv")]) == code
    out = capsys.readouterr().out
    assert out.startswith(level) and f"can write into the runner's Python ({tmp_path})" in out
    assert bool(made) is (code == 0)


def test_only_writable_folders_are_named():
    assert job_venv.writable(["/a", "/b", "/c"], lambda f: f == "/b") == ["/b"]


def test_the_venv_sees_the_runners_packages_after_its_own_and_pins_torch_and_triton(tmp_path):
    runner = tmp_path / "runner-site"
    (runner / "runnerpkg").mkdir(parents=True)
    (runner / "runnerpkg" / "__init__.py").write_text("WHERE = 'runner'\n")
    # A .pth of the runner's (an editable install, say) must not run in the job's venv.
    (runner / "evil.pth").write_text(
        f"import pathlib; pathlib.Path({str(tmp_path / 'ran')!r}).touch()\n"
    )
    job_venv.make(tmp_path / "venv", [str(runner)], {"torch": "2.11.0+cu130", "triton": "3.6.0"})
    assert (tmp_path / "venv" / "constraints.txt").read_text() == (
        "torch==2.11.0+cu130\ntriton==3.6.0\n"
    )
    probe = "import json, sys, runnerpkg; print(json.dumps([runnerpkg.WHERE, sys.path]))"
    done = subprocess.run(
        [tmp_path / "venv" / "bin" / "python", "-c", probe], capture_output=True, text=True
    )
    where, path = json.loads(done.stdout or "[null, []]")
    assert where == "runner", done.stderr
    own = next(i for i, p in enumerate(path) if p.startswith(str(tmp_path / "venv")))
    assert own < path.index(str(runner))  # the job's own packages come first
    assert not (tmp_path / "ran").exists()


# -- the update workflow's hand-over --------------------------------------------------------

GOOD = {"median_ms": 1.0, "ci_low_ms": 0.999, "ci_high_ms": 1.001, "samples": 100, "l2": "flush"}


def baseline(**fields) -> str:
    doc = {"schema": 1, "gpu": "G", "cases": {"a": {**GOOD, **fields}}}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "baselines").mkdir(parents=True)
    (repo / "baselines" / "g.json").write_text(baseline())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    (tmp_path / "new").mkdir()
    return repo


def propose(repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            SCRIPTS / "propose_baselines.py",
            repo.parent / "new",
            repo.parent / "body.md",
            "https://github.com/o/r/actions/runs/9",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_checked_file_is_staged_and_the_body_comes_from_its_diff(repo):
    new = repo.parent / "new"
    (new / "g.json").write_text(baseline(median_ms=1.0005))
    (new / "baseline-summary.md").write_text("[click me](https://evil.example) all good")
    (new / "Bad Name.json").write_text(baseline())
    (new / "link.json").symlink_to("/etc/hostname")
    done = propose(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "diff", "--cached", "--name-only").split() == ["baselines/g.json"]
    body = (repo.parent / "body.md").read_text()
    assert "- `g.json`: `a: 1.0000 -> 1.0005 ms (+0.05%)`" in body
    assert '-      "median_ms": 1.0,' in body and '+      "median_ms": 1.0005,' in body
    assert "```diff" in body and "evil.example" not in body
    assert "`Bad Name.json`: not a baseline file's name" in body
    assert "`link.json`: not a regular file" in body


def test_a_file_that_fails_the_check_opens_nothing(repo):
    new = repo.parent / "new"
    (new / "g.json").write_text(baseline(sm_mhz=1e300))
    (new / "h.json").write_text(baseline(environment={"commit": "HEAD"}))
    done = propose(repo)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 2
    assert "g.json: case 'a': field 'sm_mhz'" in errors[0]
    assert "h.json: case 'a': field 'environment': key 'commit'" in errors[1]
    assert (repo / "baselines" / "g.json").read_text() == baseline()
    assert not (repo / "baselines" / "h.json").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_a_diff_too_long_for_one_body_is_cut_with_a_line_saying_so(repo):
    cases = {f"case{i:04d}": {**GOOD, "median_ms": 1.0 + i / 1e7} for i in range(3000)}
    doc = {"schema": 1, "gpu": "G", "cases": cases}
    (repo.parent / "new" / "g.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    done = propose(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    body = (repo.parent / "body.md").read_text()
    assert len(body) < 65_536
    assert "entries not shown: GitHub holds a body to 65,536 characters" in body
    # The diff's block is closed before the line saying how much of it was cut.
    assert re.search(r"\n```\n\(\d+ of \d+ diff lines not shown: GitHub holds a body", body)


def test_a_diff_cannot_close_its_own_code_block():
    untrusted = script("untrusted")
    block = untrusted.fenced('+  "gpu": "x ```` y\u202e"\n+ ok', "diff")
    assert block[0] == "`````diff" and block[-1] == "`````"
    assert block[1:-1] == ['+  "gpu": "x ```` y"', "+ ok"]
