"""ruff, as the CPU job runs it, so the README's test command covers lint too."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=" ".join)
def test_ruff(args):
    exe = shutil.which("ruff")
    assert exe, "ruff is missing: the set-up command installs it"
    out = subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
