"""A conftest body that replaces the GPU with the simulated one of
``pytest_conv3d_perf.simulated`` (the noise measured on the H100), for pytester runs.

Environment knobs, read when a run makes its timer: FAKE_PROFILE (``h100``, the default,
or ``quiet``), FAKE_SEED (a repeatable process; unset, every run draws its own noise),
FAKE_KERNEL_MS (1.0) and FAKE_REF_MS (3.0), FAKE_SLOWDOWN (fraction added to the kernel's
time), FAKE_REF_SLOWDOWN (the same for the reference), FAKE_RECORDED_SLOWDOWN (the kernel
as recorded at the baseline's commit, when the gate times it beside today's),
FAKE_HOST_MS (host work the launcher adds to each call: seen in the call time only),
FAKE_NOISE and FAKE_BATCH_NOISE (override the per-sample and per-batch relative standard
deviations), FAKE_THROTTLE (a reason name) and FAKE_THROTTLE_FRACTION (the share of clock
readings that show it, 1 by default), FAKE_MHZ (the SM clock). Budgets are spent on
the simulated GPU's own clock (its ``now``), so a simulated 10-second budget costs
milliseconds of wall time and the decisions are those a GPU of that noise would get."""

CONFTEST = """
import dataclasses
import os

import pytest

from pytest_conv3d_perf.simulated import PROFILES, SimulatedGpu


def _env(name, default):
    return float(os.environ.get(name, "") or default)


@pytest.hookimpl(tryfirst=True)
def pytest_conv3d_perf_make_timer(config, l2):
    noise = PROFILES[os.environ.get("FAKE_PROFILE", "") or "h100"]
    if os.environ.get("FAKE_NOISE"):
        noise = dataclasses.replace(noise, sample_sd=_env("FAKE_NOISE", 0))
    if os.environ.get("FAKE_BATCH_NOISE"):
        noise = dataclasses.replace(noise, batch_sd=_env("FAKE_BATCH_NOISE", 0))
    seed = os.environ.get("FAKE_SEED")
    reason = os.environ.get("FAKE_THROTTLE", "")
    fraction = _env("FAKE_THROTTLE_FRACTION", 1.0)
    return SimulatedGpu(
        _env("FAKE_KERNEL_MS", 1.0),
        _env("FAKE_REF_MS", 3.0),
        slowdown=_env("FAKE_SLOWDOWN", 0),
        recorded_slowdown=_env("FAKE_RECORDED_SLOWDOWN", 0),
        reference_slowdown=_env("FAKE_REF_SLOWDOWN", 0),
        extra_host_ms=_env("FAKE_HOST_MS", 0),
        sm_mhz=_env("FAKE_MHZ", 1980),
        throttle=(reason,) if reason else (),
        throttle_fraction=fraction,
        noise=noise,
        seed=int(seed) if seed else None,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_conv3d_perf_device_info(config):
    return {"gpu": "Fake GPU 9000", "torch": "x", "triton": "y"}
"""

TEST_FILE = """
import torch


def conv(x, w, b, stride, padding, dilation):
    return torch.nn.functional.conv3d(x, w, b, stride, padding, dilation)


def test_speed(conv3d_case, conv3d_perf):
    conv3d_perf.case(conv, conv3d_case)
"""

KNOBS = (
    "FAKE_PROFILE",
    "FAKE_SEED",
    "FAKE_KERNEL_MS",
    "FAKE_REF_MS",
    "FAKE_SLOWDOWN",
    "FAKE_REF_SLOWDOWN",
    "FAKE_RECORDED_SLOWDOWN",
    "FAKE_HOST_MS",
    "FAKE_NOISE",
    "FAKE_BATCH_NOISE",
    "FAKE_THROTTLE",
    "FAKE_THROTTLE_FRACTION",
    "FAKE_MHZ",
)


class FakeProcesses:
    """Each run a new simulated process with its own, repeatable noise: the seed is the
    test's and the run's number, so a test sees several processes yet never flakes."""

    def __init__(self, monkeypatch, test_name: str) -> None:
        for var in KNOBS:
            monkeypatch.delenv(var, raising=False)
        self.monkeypatch = monkeypatch
        self.base = sum(ord(c) * (i + 1) for i, c in enumerate(test_name)) % 100_000
        self.runs = 0

    def next(self, **env: object) -> None:
        """Set the knobs for the next run (unset ones keep their last value)."""
        self.runs += 1
        self.monkeypatch.setenv("FAKE_SEED", str(self.base * 1000 + self.runs))
        for key, value in env.items():
            self.monkeypatch.setenv(key, str(value))


# A kernel package whose simulated device time is what its code says (the simulated GPU
# reads ``simulated_ms`` off a call's result), so a test can place a slowdown anywhere in it
# and check that the gate finds it: in the kernel's file, a module it imports, the
# package's __init__, a data file it reads, or an environment variable its package sets.
KERNEL_PACKAGE = {
    "kernels/__init__.py": "from kernels.implicit import conv3d\n",
    "kernels/implicit.py": """
import json
import os
from pathlib import Path

from kernels import tuning

MS = 1.0


class Launch:
    def __init__(self, ms):
        self.simulated_ms = ms


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    config = json.loads((Path(__file__).parent / "config.json").read_text())
    slow = 1.05 if os.environ.get("KERNEL_SLOW") else 1.0
    return Launch(MS * tuning.factor() * config["factor"] * slow)
""",
    "kernels/tuning.py": "def factor():\n    return 1.0\n",
    "kernels/config.json": '{"factor": 1.0}\n',
    "pytest.ini": "[pytest]\nconv3d_kernel = kernels.implicit:conv3d\n",
    "conftest.py": CONFTEST,
    "test_gate.py": """
def test_speed(conv3d_case, conv3d_perf, conv3d_kernel):
    conv3d_perf.case(conv3d_kernel, conv3d_case)
""",
}

# Each a 5% slowdown, placed where the issue found the gate blind (issue 25).
SLOWDOWNS = {
    "the kernel's file": ("kernels/implicit.py", "MS = 1.0", "MS = 1.05"),
    "a module it imports": ("kernels/tuning.py", "return 1.0", "return 1.05"),
    "the package __init__": (
        "kernels/__init__.py",
        "from kernels.implicit import conv3d\n",
        "from kernels import implicit\nfrom kernels.implicit import conv3d\n\nimplicit.MS = 1.05\n",
    ),
    "a data file it reads": ("kernels/config.json", '"factor": 1.0', '"factor": 1.05'),
    "an environment variable its package sets": (
        "kernels/__init__.py",
        "from kernels.implicit import conv3d\n",
        "import os\n\nfrom kernels.implicit import conv3d\n\nos.environ['KERNEL_SLOW'] = '1'\n",
    ),
}


def git(folder, *args: str) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def write_files(folder, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit_all(folder, message: str = "x") -> str:
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", message)
    return git(folder, "rev-parse", "HEAD")


def place(folder, where: str) -> None:
    """Put the 5% slowdown of ``SLOWDOWNS[where]`` into the tree at ``folder``."""
    name, old, new = SLOWDOWNS[where]
    path = folder / name
    text = path.read_text()
    assert old in text, (name, old)
    path.write_text(text.replace(old, new))
