"""The seventh red team: ways a 5% slowdown of what lands on main passed the gate after the
sixth session's fixes, staged as the GPU job runs the gate with the fifth red team's `job`
fixture (an origin repository, a fresh clone that fetches every branch and checks out the
base, `conv3d-perf pull-request`, then the base's speed test with --conv3d-against BASE
--conv3d-unstable=fail).

None of these monkeypatches a library, looks at the stack, caches calls, patches the
plugin, mutates the base's objects or hides an import (the conceded kinds): each works
through git, the workflow's own steps or what the suite times.

Each test asserts what the gate should do. All three got through when written; two are
plain tests since the fixes of the same session, and the third (a slower ModelNew, which
the gate does not time) stays a strict xfail, named in the README. notes/gate-quality.md,
"A seventh red-team review"."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tests.conftest as shared
from tests import test_red_team_5, test_red_team_6
from tests.fake_gpu import KERNEL_PACKAGE, FakeProcesses, git
from tests.test_red_team import SLOW_TUNING
from tests.test_red_team_5 import _stopped
from tests.test_red_team_6 import IDENT_TUNING, _checkout

# The fifth red team's staging of the GPU job (its `job` fixture), used as it is.
job = test_red_team_5.job

ROOT = Path(__file__).resolve().parents[1]
assert test_red_team_6.job is job


# -- 1. .gitattributes patterns `_pattern_matches` reads otherwise than git ---------------

# Each line sets `ident` on kernels/tuning.py as git reads it (`git check-attr`): a checkout
# stamps "$Id$", the head's tuning then runs 1.05 (the sixth red team's IDENT_TUNING). The
# gate's check (`pull_request._pattern_matches`) reads the pattern with fnmatch, which
# differs from git's wildmatch: a leading "**/" matches no top-level file there (git: any
# depth, the top included), "/**/" needs a folder between (git: zero or more), "[^x]" is
# the two characters "^" and "x" (git: a negated class), and a backslash is itself (git: it
# escapes the next character). None of the lines matches a package file by fnmatch, so
# `attributes_moved` passes the change, and the gate runs the unstamped blob: 1.0.
PATTERNS = {
    "double-star-in-the-package": {"kernels/.gitattributes": "**/tuning.py ident\n"},
    "double-star-at-the-top": {".gitattributes": "**/kernels/tuning.py ident\n"},
    "slash-double-star-slash-at-the-top": {".gitattributes": "kernels/**/tuning.py ident\n"},
    "caret-negated-class": {".gitattributes": "tuning.p[^x] ident\n"},
    "backslash-escape": {".gitattributes": "tuning\\.py ident\n"},
}


@pytest.mark.parametrize("spelling", sorted(PATTERNS))
def test_gitattributes_in_any_pattern_spelling_git_reads_are_refused(job, tmp_path, spelling):
    # Now git reads the attributes itself: each package file's checkout attributes from a temporary
    # index of each tree (`git check-attr --cached`), compared (`pull_request.checkout_attributes`).
    pr = job({**PATTERNS[spelling], "kernels/tuning.py": IDENT_TUNING})
    merged = _checkout(pr.origin, pr.head, tmp_path / "merged")
    # git applies the line: every checkout of the merged commit runs the stamped tuning.
    assert "$Id: " in (merged / "kernels/tuning.py").read_text()
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


# -- 2. ModelNew, what KernelBench times, is never timed by the gate ---------------------

# The fake package with a KernelBench-style model class configured as conv3d_model (as this
# repository configures kernels.implicit_gemm:ModelNew): its forward calls the kernel.
MODEL = """

class ModelNew:
    def __init__(self, *args, **kwargs):
        self.args = args

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        return conv3d(x, None)
"""
# The head keeps conv3d as it is and adds 5% to the model's forward (say a copy of the
# input into another layout before each call, or a weight split redone per call).
SLOW_MODEL = MODEL.replace(
    "        return conv3d(x, None)\n",
    "        out = conv3d(x, None)\n        return Launch(out.simulated_ms * 1.05)\n",
)
MODEL_BASE = {
    "kernels/implicit.py": KERNEL_PACKAGE["kernels/implicit.py"] + MODEL,
    "pytest.ini": "[pytest]\nconv3d_kernel = kernels.implicit:conv3d\n"
    "conv3d_model = kernels.implicit:ModelNew\n",
}
assert "1.05" in SLOW_MODEL


def _model_ms(folder: Path) -> float:
    """The simulated time of one forward of ``folder``'s ModelNew (KernelBench's call)."""
    code = (
        "from kernels.implicit import ModelNew\nprint(ModelNew(3, 8, 3).forward(None).simulated_ms)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "KERNEL_SLOW"} | {"PYTHONPATH": "."},
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


@pytest.mark.xfail(
    strict=True,
    reason="red team 7: the gate times conv3d_kernel only; a slower conv3d_model "
    "(ModelNew, what KernelBench runs) is never measured",
)
def test_a_slower_model_new_with_the_same_kernel_function_is_caught(job, tmp_path):
    # README: "A slowdown anywhere in the package ... is measured". The suite's speed test
    # times `conv3d_kernel` alone; `conv3d_model` (kernels.implicit_gemm:ModelNew, the
    # class handed to KernelBench) is only checked for correctness, so a head that slows
    # ModelNew.forward and leaves conv3d alone reads `unchanged`, exit 0.
    pr = job(
        {"kernels/implicit.py": KERNEL_PACKAGE["kernels/implicit.py"] + SLOW_MODEL},
        base=MODEL_BASE,
    )
    base = _checkout(pr.origin, pr.base, tmp_path / "base")
    merged = _checkout(pr.origin, pr.head, tmp_path / "merged")
    assert _model_ms(base) == 1.0 and _model_ms(merged) == pytest.approx(1.05)
    result = pr.gate() if pr.code == 0 else None
    assert _stopped(pr, result), result.stdout.str()


# -- 3. a push to main is judged against itself ------------------------------------------


def _step(job_name: str, step_name: str) -> str:
    workflow = yaml.safe_load((ROOT / ".github/workflows/gpu-gate.yml").read_text())
    [step] = [s for s in workflow["jobs"][job_name]["steps"] if s.get("name") == step_name]
    return step["run"]


def test_a_push_to_main_is_judged_against_the_commit_before_it(
    job, pytester, monkeypatch, request, tmp_path
):
    # gpu_trust.decide gives a push base_sha = the event's `before`, sha = `after`. The
    # step "The base commit's rules" keeps BASE_SHA only where it equals HEAD_SHA (a
    # branch's first push); otherwise it takes refs/remotes/origin/main, meant for a pull
    # request (judged against main as fetched). For a push, main as fetched IS the pushed
    # commit (or a later one): AGAINST = HEAD_SHA, `pull-request` composes nothing, and
    # every case is the commit timed against itself, `unchanged`. README: "A push to main
    # is judged the same way against the commit before it."
    # Now the step takes main's tip for a pull request only (`GITHUB_EVENT_NAME`): a push is judged
    # against the commit before it.
    from pytest_conv3d_perf import cli

    pr = job({"kernels/tuning.py": SLOW_TUNING})  # the pushed commit, 5% slower
    assert pr.code == 0
    # The push: main moves to the commit; the job's clone fetches every branch again.
    git(pr.origin, "branch", "-f", "main", pr.head)
    git(pr.src, "checkout", "-q", "-f", "--detach", pr.base)
    git(pr.src, "fetch", "-q", "--no-tags", str(pr.origin), "+refs/heads/*:refs/remotes/origin/*")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "src").symlink_to(pr.src)
    github_env = tmp_path / "github_env"
    github_env.touch()
    done = subprocess.run(
        [
            "bash",
            "--noprofile",
            "--norc",
            "-euo",
            "pipefail",
            "-c",
            _step("gpu", "The base commit's rules"),
        ],
        env={
            "PATH": os.environ["PATH"],
            "SCRATCH": str(scratch),
            "BASE_SHA": pr.base,  # the event's `before`
            "HEAD_SHA": pr.head,  # the event's `after`
            "GITHUB_ENV": str(github_env),
            "GITHUB_EVENT_NAME": "push",  # as GitHub sets it for every step
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    against = github_env.read_text().strip().removeprefix("AGAINST=")
    # The job's next steps, with the commit the step chose.
    code = cli.main(["pull-request", "--base", against, "--head", pr.head, "--markdown", "r.md"])
    assert code == 0
    FakeProcesses(monkeypatch, request.node.name + "-push").next()
    for name in [m for m in list(sys.modules) if m == "kernels" or m.startswith("kernels.")]:
        del sys.modules[name]
    result = pytester.runpytest(
        "-p", "no:cacheprovider", *shared.RED_TEAM_CI_ARGS, f"--conv3d-against={against}"
    )
    assert against == pr.base and result.ret != 0, (against, pr.base, result.stdout.str())
