import os
import sys
import tempfile

import pytest

from tests.launch_stubs import Recorder, TunerStub, split_on_the_host

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _not_in_the_ci_job_summary(monkeypatch):
    # Inside a GitHub Actions job the plugin appends to $GITHUB_STEP_SUMMARY and prints
    # annotations; the plugin's own tests must not write into the job's summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


@pytest.fixture(autouse=True)
def _temporary_files_under_pytests_own_folder(tmp_path_factory, monkeypatch):
    # A baseline file's lock lives in the temporary folder, keyed by the file's path, and
    # filelock leaves it there: each test's own baseline folder would leave one in /tmp for
    # good (751 after a few runs). Here they go under pytest's folder, which keeps the last
    # three runs; TMPDIR takes the same folder to the processes a test starts.
    where = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    monkeypatch.setenv("TMPDIR", str(where))


# The red teams' pull request (tests/test_red_team*.py): the GPU job's steps on the fake
# kernel package, a base commit and a head that edits it.
RED_TEAM_CI_ARGS = (
    "-k",
    "speed",
    "--conv3d-perf",
    "--conv3d-unstable=fail",
    "--conv3d-case=n1_oc17_bias",
)


@pytest.fixture
def pull(pytester, monkeypatch, request):
    """``pull(edits, binary, links)``: a base of the fake package and a head with ``edits``
    (path -> text), ``binary`` (path -> bytes) and ``links`` (path -> symlink target);
    composes the gate's tree in a checkout of the base (its summary in rules.md) and
    returns (exit code of `conv3d-perf pull-request`, a function that runs the gate)."""
    from pytest_conv3d_perf import cli
    from tests.fake_gpu import KERNEL_PACKAGE, FakeProcesses, commit_all, git, write_files
    from tests.test_ab import forget_kernels

    monkeypatch.delenv("GITHUB_SHA", raising=False)
    monkeypatch.delenv("KERNEL_SLOW", raising=False)
    monkeypatch.chdir(pytester.path)
    forget_kernels(monkeypatch)
    processes = FakeProcesses(monkeypatch, request.node.name)
    write_files(pytester.path, KERNEL_PACKAGE)
    git(pytester.path, "init", "-q")
    base = commit_all(pytester.path, "base")

    def make(edits, binary=None, links=None):
        write_files(pytester.path, edits)
        for name, target in (links or {}).items():
            (pytester.path / name).unlink(missing_ok=True)
            (pytester.path / name).symlink_to(target)
        for name, data in (binary or {}).items():
            (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
            (pytester.path / name).write_bytes(data)
        git(pytester.path, "add", "-A", "-f")
        head = commit_all(pytester.path, "head")
        git(pytester.path, "checkout", "-q", "--detach", base)
        code = cli.main(["pull-request", "--base", base, "--head", head, "--markdown", "rules.md"])

        def gate():
            processes.next()
            for name in [
                m for m in list(sys.modules) if m == "kernels" or m.startswith("kernels.")
            ]:
                del sys.modules[name]
            return pytester.runpytest(
                "-p", "no:cacheprovider", *RED_TEAM_CI_ARGS, f"--conv3d-against={base}"
            )

        return code, gate

    yield make
    os.environ.pop("KERNEL_SLOW", None)
    sys.modules.pop("kernels", None)


@pytest.fixture
def stubbed_gpu_path(monkeypatch):
    """The GPU launch path with the kernel and the tuner stubbed, on the CPU. The
    weight's split runs on the host too: where a GPU is present Triton runs compiled
    kernels, which cannot read the CPU tensors these tests pass."""
    # Imported here: the plugin decides TRITON_INTERPRET before Triton's first import.
    from kernels import implicit_gemm as ig

    monkeypatch.setattr(ig, "interpreting", lambda: False)
    monkeypatch.setattr(ig, "runs_on", lambda device: True)
    monkeypatch.setattr(ig, "split_tf32", split_on_the_host)
    monkeypatch.setattr(ig, "_TUNED", {})
    monkeypatch.setattr(ig, "_PLANS", {})
    monkeypatch.setattr(ig, "_MODE_BY_DEVICE", {-1: "tf32x3-ws"})
    kernel = Recorder([])
    tuner = TunerStub(ig.AUTOTUNE_CONFIGS[2])
    monkeypatch.setattr(ig, "_conv3d_kernel", kernel)
    monkeypatch.setattr(ig, "_tune", tuner)
    return kernel, tuner


@pytest.fixture
def hopper(conv3d_device):
    """The device, where it is an sm_90 GPU and this Triton has Gluon's Hopper ops and TMA:
    the only place the Gluon kernels (the ring, the persistent and the resident one) run."""
    import torch

    from kernels import implicit_gemm as ig

    if conv3d_device.type != "cuda" or ig.gluon is None or ig.tma is None:
        pytest.skip("the Gluon kernels run on an sm_90 GPU only")
    if torch.cuda.get_device_capability(conv3d_device) != (9, 0):
        pytest.skip("the Gluon kernels run on an sm_90 GPU only")
    return conv3d_device
