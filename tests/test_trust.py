"""The gate a pull request can neither reach unapproved nor edit: the trust decision, the
comment writer against hostile artifacts, and the workflows' jobs and permissions."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SHA = "a" * 40
OLD = "b" * 40
REPO = "conv3d/pytest-conv3d-perf"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / ".github" / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


trust = script("gpu_trust")
comment = script("pr_comment")


def fake_api(permissions: dict[str, str], reviews: list[dict], head: str = SHA):
    def api(path: str) -> object:
        if "/collaborators/" in path:
            user = path.split("/collaborators/")[1].split("/")[0]
            return {"permission": permissions.get(user, "read")}
        if path.endswith("/reviews?per_page=100"):
            return reviews
        if re.search(r"/pulls/\d+$", path):
            return pull_request(fork=True, head=head)
        raise AssertionError(path)

    return api


def pull_request(fork: bool, head: str = SHA) -> dict:
    owner = "someone-else/pytest-conv3d-perf" if fork else REPO
    return {
        "number": 7,
        "head": {"sha": head, "repo": {"full_name": owner}},
        "base": {"sha": OLD, "repo": {"full_name": REPO}},
    }


def event(action: str, fork: bool = True, label: str = "", sender: str = "maintainer") -> dict:
    return {
        "action": action,
        "pull_request": pull_request(fork),
        "label": {"name": label},
        "sender": {"login": sender},
    }


APPROVED = [{"user": {"login": "maintainer"}, "state": "APPROVED", "commit_id": SHA}]
WRITERS = {"maintainer": "write"}


def test_push_and_branches_of_this_repository_run():
    api = fake_api({}, [])
    push = trust.decide("push", {"after": SHA}, REPO, api)
    assert push.gpu and push.sha == SHA
    same = trust.decide("pull_request_target", event("synchronize", fork=False), REPO, api)
    assert same.gpu and same.sha == SHA and same.base_sha == OLD and same.pr == "7"


def test_a_fork_runs_nothing_until_asked_and_says_how():
    d = trust.decide("pull_request_target", event("opened"), REPO, fake_api({}, []))
    assert not d.gpu
    assert "comes from a fork" in d.reason and "gpu-run" in d.reason and SHA[:12] in d.reason


@pytest.mark.parametrize(
    "permissions, reviews, sender, label, why",
    [
        (WRITERS, APPROVED, "stranger", "gpu-run", "stranger may not ask"),
        ({**WRITERS, "stranger": "triage"}, APPROVED, "stranger", "gpu-run", "may not ask"),
        (WRITERS, [{**APPROVED[0], "commit_id": OLD}], "maintainer", "gpu-run", "no approving"),
        (
            {"maintainer": "write", "reader": "read"},
            [{"user": {"login": "reader"}, "state": "APPROVED", "commit_id": SHA}],
            "maintainer",
            "gpu-run",
            "no approving",
        ),
        (
            WRITERS,
            [*APPROVED, {"user": {"login": "maintainer"}, "state": "CHANGES_REQUESTED"}],
            "maintainer",
            "gpu-run",
            "no approving",
        ),
        (WRITERS, APPROVED, "maintainer", "other-label", "comes from a fork"),
    ],
)
def test_a_fork_needs_a_writers_approval_of_exactly_this_commit(
    permissions, reviews, sender, label, why
):
    e = event("labeled", label=label, sender=sender)
    d = trust.decide("pull_request_target", e, REPO, fake_api(permissions, reviews))
    assert not d.gpu and why in d.reason


def test_an_approved_fork_commit_runs_by_label_or_dispatch():
    e = event("labeled", label="gpu-run")
    d = trust.decide("pull_request_target", e, REPO, fake_api(WRITERS, APPROVED))
    assert d.gpu and d.sha == SHA and "approved by maintainer" in d.reason
    dispatch = {"inputs": {"pr": "7", "sha": SHA}, "sender": {"login": "maintainer"}}
    assert trust.decide("workflow_dispatch", dispatch, REPO, fake_api(WRITERS, APPROVED)).gpu
    moved = fake_api(WRITERS, APPROVED, head=OLD)
    assert not trust.decide("workflow_dispatch", dispatch, REPO, moved).gpu


def test_other_events_never_run_the_gpu_job():
    assert not trust.decide("pull_request", event("opened", fork=False), REPO, fake_api({}, [])).gpu


# -- the comment writer ----------------------------------------------------------------


def artifacts(tmp_path, report: bytes | None, trust_doc: object = None, raw_trust: bytes = b""):
    (tmp_path / "trust").mkdir()
    (tmp_path / "report").mkdir()
    doc = {"gpu": "true", "sha": SHA, "pr": "7", "reason": "a branch of this repository"}
    text = raw_trust or json.dumps(doc if trust_doc is None else trust_doc).encode()
    (tmp_path / "trust" / "trust.json").write_bytes(text)
    if report is not None:
        (tmp_path / "report" / "conv3d-perf.json").write_bytes(report)
    return comment.read_trust(tmp_path / "trust"), tmp_path / "report"


def body(tmp_path, report, conclusion="success", **kw) -> str:
    decided, folder = artifacts(tmp_path, report, **kw)
    return comment.build_body(decided, folder, conclusion, "https://github.com/x/y/actions/runs/1")


GOOD_ROW = {"case": "kb54", "verdict": "unchanged", "median_ms": 1.9, "baseline_ms": 1.9}


@pytest.mark.parametrize(
    "report, readable",
    [
        (b"[1, 2, 3]", False),
        (b'{"results": 5}', False),
        (b"[" * 100_000 + b"]" * 100_000, False),
        (
            b'{"results": [{"case": "x", "verdict": "new", "median_ms": 1' + b"0" * 400 + b"}]}",
            True,
        ),
        (b'{"results": [{"case": "\xff\xfe"}]}', False),
        (b"{not json", False),
        (b"", False),
    ],
)
def test_hostile_reports_never_crash_the_writer(tmp_path, report, readable):
    text = body(tmp_path, report)
    assert text.startswith(comment.MARKER)
    assert "on commit `aaaaaaaaaaaa`" in text
    assert ("timing report was unreadable" in text) == (not readable)


def test_a_huge_number_is_shown_as_missing_not_an_error(tmp_path):
    row = '{"case": "x", "verdict": "unchanged", "median_ms": 1' + "0" * 400 + "}"
    text = body(tmp_path, ('{"results": [' + row + "]}").encode())
    assert "| ✅ | `x` | - |" in text


def test_untrusted_strings_are_plain_text(tmp_path):
    rows = [
        {**GOOD_ROW, "case": "[click](https://evil.example)"},
        {**GOOD_ROW, "case": "![img](https://evil.example/x.png)"},
        {**GOOD_ROW, "case": "@everyone `break` |cell|\nnew line"},
    ]
    text = body(tmp_path, json.dumps({"results": rows}).encode())
    assert "`[click](https://evil.example)`" in text
    assert "`![img](https://evil.example/x.png)`" in text
    assert "`@everyone 'break' 'cell''new line`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 4 and all(line.count("|") == 7 for line in rows)


def test_the_headline_comes_from_the_run_not_the_report(tmp_path):
    liar = json.dumps({"results": [{**GOOD_ROW, "fails": False}]}).encode()
    text = body(tmp_path, liar, conclusion="failure")
    assert "❌ conv3d GPU gate: `failure` on commit" in text


def test_a_job_that_failed_before_reporting_replaces_a_passed_comment(tmp_path):
    text = body(tmp_path, None, conclusion="failure")
    assert "❌" in text and "without a timing report" in text


def test_a_gpu_job_not_run_says_why(tmp_path):
    doc = {"gpu": "false", "sha": SHA, "pr": "7", "reason": "GPU job not run: a fork"}
    text = body(tmp_path, None, trust_doc=doc)
    assert "not run on commit" in text and "`GPU job not run: a fork`" in text


@pytest.mark.parametrize(
    "raw", [b'{"pr": "7\xff", "sha": "x"}', b'{"pr": "7; rm -rf /"}', b"[]", b'{"pr": 7}']
)
def test_a_bad_trust_file_means_no_comment(tmp_path, raw):
    decided, _ = artifacts(tmp_path, None, raw_trust=raw)
    assert decided == {}


# -- the workflows ---------------------------------------------------------------------


def workflows() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def triggers(doc: dict) -> set[str]:
    on = doc.get(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return set(on) if isinstance(on, dict) else {on} if isinstance(on, str) else set(on)


def self_hosted(job: dict) -> bool:
    runs_on = job.get("runs-on")
    labels = runs_on.get("labels", []) if isinstance(runs_on, dict) else runs_on
    return "self-hosted" in (labels if isinstance(labels, list) else [labels])


def test_no_workflow_a_pull_request_runs_as_its_own_copy_reaches_the_gpu_runner():
    for name, doc in workflows().items():
        if triggers(doc) & {"pull_request", "pull_request_review", "issue_comment"}:
            assert not any(self_hosted(j) for j in doc["jobs"].values()), name


def test_gpu_jobs_run_in_the_runner_group_with_a_read_only_token_and_no_credentials():
    for name, doc in workflows().items():
        for job_name, job in doc["jobs"].items():
            if not self_hosted(job):
                continue
            assert job["runs-on"]["group"] == "conv3d-gpu", (name, job_name)
            assert job.get("permissions") == {"contents": "read"}, (name, job_name)
            assert doc.get("permissions") == {}, name
            assert "secrets" not in json.dumps(job), (name, job_name)
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, (name, job_name)


def test_the_gpu_job_waits_for_the_trust_decision_and_checks_out_that_commit():
    gpu = workflows()["gpu-gate.yml"]["jobs"]["gpu"]
    assert gpu["needs"] == "trust" and gpu["if"] == "needs.trust.outputs.gpu == 'true'"
    run = "\n".join(s.get("run", "") for s in gpu["steps"])
    assert 'git checkout --detach "$HEAD_SHA"' in run and gpu["env"]["HEAD_SHA"] == (
        "${{ needs.trust.outputs.sha }}"
    )
    assert 'git archive "$BASE_SHA" baselines' in run
    assert '--conv3d-baseline-dir="$SCRATCH/base/baselines"' in run
    assert "HOME=$scratch/home" in run and "TRITON_CACHE_DIR" in run and "PIP_CACHE_DIR" in run
    assert gpu["steps"][-1]["if"] == "always()" and "rm -rf" in gpu["steps"][-1]["run"]


def test_update_workflow_measures_read_only_and_proposes_from_githubs_runner():
    jobs = workflows()["update-baselines.yml"]["jobs"]
    assert self_hosted(jobs["measure"]) and jobs["measure"]["permissions"] == {"contents": "read"}
    propose = jobs["propose"]
    assert propose["runs-on"] == "ubuntu-latest" and propose["needs"] == "measure"
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "git add baselines/*.json" in propose["steps"][-1]["run"]


def test_comment_accepts_only_the_trusted_workflow_by_path_and_event():
    job = workflows()["comment.yml"]["jobs"]["comment"]
    assert "workflow_run.path == '.github/workflows/gpu-gate.yml'" in job["if"]
    assert "pull_request_target" in job["if"] and "workflow_run.name" not in job["if"]


def test_every_action_is_pinned_to_a_full_commit_sha():
    for path in WORKFLOWS.glob("*.yml"):
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), (path.name, ref)


def test_zizmor_finds_nothing():
    exe = shutil.which("zizmor")
    assert exe, "zizmor is missing: the set-up command installs it"
    done = subprocess.run(
        [exe, "--offline", "--config", ".github/zizmor.yml", ".github/workflows"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr
