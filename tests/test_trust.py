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


sys.path.insert(0, str(ROOT / ".github" / "scripts"))  # the scripts import untrusted.py
untrusted = script("untrusted")
trust = script("gpu_trust")
comment = script("pr_comment")


def fake_api(permissions: dict[str, str], reviews: list[dict], head: str = SHA):
    def api(path: str, paginate: bool = False) -> object:
        if "/collaborators/" in path:
            user = path.split("/collaborators/")[1].split("/")[0]
            return {"permission": permissions.get(user, "read")}
        if path.endswith("/reviews?per_page=100"):
            return reviews if paginate else reviews[:100]  # GitHub's first page
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
    assert push.gpu and push.sha == SHA and push.base_sha == SHA  # the job takes its parent
    push = trust.decide("push", {"after": SHA, "before": OLD}, REPO, api)
    assert push.base_sha == OLD
    push = trust.decide("push", {"after": SHA, "before": "0" * 40}, REPO, api)
    assert push.base_sha == SHA
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


def test_a_change_request_past_the_first_page_of_reviews_still_counts():
    others = [{"user": {"login": f"u{i}"}, "state": "COMMENTED"} for i in range(99)]
    later = {"user": {"login": "maintainer"}, "state": "CHANGES_REQUESTED", "commit_id": SHA}
    e = event("labeled", label="gpu-run")
    d = trust.decide("pull_request_target", e, REPO, fake_api(WRITERS, [*APPROVED, *others]))
    assert d.gpu
    d = trust.decide("pull_request_target", e, REPO, fake_api(WRITERS, [*APPROVED, *others, later]))
    assert not d.gpu and "no approving review" in d.reason


def test_gh_api_reads_every_page(monkeypatch):
    seen = []

    def run(args, **kwargs):
        seen.append(args)
        pages = [[{"id": 1}, {"id": 2}], [{"id": 3}]]
        return subprocess.CompletedProcess(args, 0, json.dumps(pages), "")

    monkeypatch.setattr(trust.subprocess, "run", run)
    assert trust.gh_api("repos/x/y/pulls/7/reviews", paginate=True) == [
        {"id": 1},
        {"id": 2},
        {"id": 3},
    ]
    assert seen[0][:4] == ["gh", "api", "--paginate", "--slurp"]
    assert trust.flatten({"message": "Not Found"}) == []


def test_a_label_that_decides_nothing_leaves_the_comment_alone():
    api = fake_api(WRITERS, APPROVED)
    same = trust.decide("pull_request_target", event("labeled", fork=False), REPO, api)
    other = trust.decide("pull_request_target", event("labeled", label="bug"), REPO, api)
    opened = trust.decide("pull_request_target", event("opened"), REPO, api)
    assert not same.notify and not other.notify
    assert opened.notify and not opened.gpu


def test_the_outputs_name_the_attempt_that_decided(tmp_path, monkeypatch):
    (tmp_path / "event.json").write_text(json.dumps({"after": SHA}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(tmp_path / "event.json"))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "3")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert trust.main() == 0
    lines = (tmp_path / "out").read_text().splitlines()
    assert "attempt=3" in lines and "gpu=true" in lines and f"sha={SHA}" in lines


def test_other_events_never_run_the_gpu_job():
    assert not trust.decide("pull_request", event("opened", fork=False), REPO, fake_api({}, [])).gpu


# -- the comment writer ----------------------------------------------------------------

DECIDED = {"gpu": "true", "sha": SHA, "pr": "7", "reason": "a branch of this repository"}
RUN = "https://github.com/x/y/actions/runs/1"


def through_the_job(tmp_path, report: bytes) -> bytes:
    """What the comment job receives: the GPU job's handoff of its report file."""
    (tmp_path / "conv3d-perf.json").write_bytes(report)
    line = comment.handoff(tmp_path / "conv3d-perf.json")
    assert "\n" not in line and line.isascii() and len(line) <= comment.HANDOFF_BYTES
    return line.encode()


def body(tmp_path, report: bytes | None, result="success", decided=DECIDED) -> str:
    handed = None if report is None else through_the_job(tmp_path, report)
    return comment.build_body(comment.trusted(decided), result, handed, False, RUN)


GOOD_ROW = {
    "case": "kb54",
    "nodeid": "tests/test_suite.py::test_conv3d_speed[kb54]",
    "verdict": "unchanged",
    "median_ms": 1.9,
    "baseline_ms": 1.9,
}


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


@pytest.mark.parametrize(
    "handed",
    [
        b"[" * 100_000,
        b'{"results": [{"case": "\\ud800", "verdict": "new"}]}',
        b'{"unreadable": "\\u202e\\u0000"}',
        b'{"results": [], "cut": 1e999}',
        '{"results": [{"case": "\u202e", "verdict": "new"}]}'.encode(),
        b"\xff" * 10,
    ],
)
def test_hostile_handoffs_never_crash_the_writer(handed):
    # The GPU job ran the pull request's code: what it hands over need not come from handoff.
    text = comment.build_body(comment.trusted(DECIDED), "failure", handed, False, RUN)
    assert text.startswith(comment.MARKER) and "❌" in text
    text.encode("utf-8")  # no lone surrogate reached the body
    assert all(line.isprintable() for line in text.splitlines() if line)


def test_a_huge_number_is_shown_as_missing_not_an_error(tmp_path):
    row = '{"case": "x", "verdict": "unchanged", "median_ms": 1' + "0" * 400 + "}"
    text = body(tmp_path, ('{"results": [' + row + "]}").encode())
    assert "| ✅ | `x` | - |" in text


def test_untrusted_strings_are_plain_text(tmp_path):
    rows = [
        {**GOOD_ROW, "case": "[click](https://evil.example)"},
        {**GOOD_ROW, "case": "![img](https://evil.example/x.png)"},
        {**GOOD_ROW, "case": "@everyone `break` |cell|\nnew line"},
        {**GOOD_ROW, "case": "rev\u202eersed\u2066 zero\u200bwidth\x00nul\ud800"},
    ]
    text = body(tmp_path, json.dumps({"results": rows}).encode())
    assert "`[click](https://evil.example)`" in text
    assert "`![img](https://evil.example/x.png)`" in text
    assert "`@everyone 'break' 'cell'new line`" in text
    assert "`reversed zerowidthnul`" in text
    assert all(line.isprintable() for line in text.splitlines() if line)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 5 and all(line.count("|") == 7 for line in rows)


def test_a_report_too_large_for_one_comment_is_cut_with_a_line_saying_so(tmp_path):
    # 200 rows of 1.7e308 once made a body over 65,536 characters: the update failed and an
    # old "passed" stayed.
    wide = [
        {
            "case": f"c{i}" + "x" * 90,
            "verdict": "regression",
            "median_ms": 1.7e308,
            "baseline_ms": 1.7e308,
            "change_pct": 1.7e308,
            "change_interval_pct": [1.7e308] * 2,
        }
        for i in range(1000)
    ]
    text = body(tmp_path, json.dumps({"results": wide}).encode(), result="failure")
    assert len(text) < 65_536
    assert re.search(r"\(\d+ more rows were cut by the GPU job", text)
    handed = json.dumps({"results": wide[:200]}).encode()
    direct = comment.build_body(comment.trusted(DECIDED), "failure", handed, False, RUN)
    assert len(direct) < 65_536


def test_the_body_cap_says_how_many_rows_it_cut():
    rows = [f"| row {i} " + "x" * 1000 + " |" for i in range(100)]
    kept, cut = untrusted.fit(rows, untrusted.room(["head"], ["tail"]), "rows")
    assert sum(len(line) + 1 for line in ["head", *kept, *cut, "tail"]) <= untrusted.BODY_LIMIT
    assert kept == rows[: len(kept)] and 0 < len(kept) < 100
    assert cut == [
        f"({100 - len(kept)} of 100 rows not shown: GitHub holds a body to 65,536 characters. "
        "The run has them all.)"
    ]
    assert untrusted.fit(rows[:3], untrusted.room(["head"]), "rows") == (rows[:3], [])


def test_the_headline_comes_from_the_run_not_the_report(tmp_path):
    liar = json.dumps({"results": [{**GOOD_ROW, "fails": False}]}).encode()
    text = body(tmp_path, liar, result="failure")
    assert "❌ conv3d GPU gate: `failure` on commit" in text


def test_a_job_that_failed_before_reporting_replaces_a_passed_comment(tmp_path):
    text = comment.build_body(comment.trusted(DECIDED), "failure", b"", False, RUN)
    assert "❌" in text and "without a timing report" in text
    lost = comment.build_body(comment.trusted(DECIDED), "failure", None, False, RUN)
    assert "❌" in lost and "could not be handed to this job" in lost


def test_a_job_that_succeeded_without_judging_a_case_is_not_called_passed(tmp_path):
    # The kernel's own code can skip every timed test or end the process early: a
    # successful job with no rows is no pass.
    for report in (b"", json.dumps({"results": []}).encode(), None):
        text = comment.build_body(comment.trusted(DECIDED), "success", report, False, RUN)
        assert "passed" not in text and "judged no case" in text
    good = json.dumps({"results": [GOOD_ROW], "selected": [GOOD_ROW["nodeid"]]}).encode()
    assert "✅ conv3d GPU gate passed" in body(tmp_path, good, result="success")


def test_a_gpu_job_not_run_says_why(tmp_path):
    doc = {"gpu": "false", "sha": SHA, "pr": "7", "reason": "GPU job not run: a fork"}
    text = body(tmp_path, None, decided=doc)
    assert "not run on commit" in text and "`GPU job not run: a fork`" in text


@pytest.mark.parametrize("doc", [{"pr": "7\xff", "sha": "x"}, {"pr": "7; rm -rf /"}, [], {"pr": 7}])
def test_a_bad_trust_decision_means_no_comment(doc):
    assert comment.trusted(doc) == {}


def test_the_handoff_is_small_ascii_and_one_line_whatever_the_report(tmp_path):
    huge = [{**GOOD_ROW, "case": "\u202e" * 100, "extra": "x" * 200} for _ in range(400)]
    line = through_the_job(tmp_path, json.dumps({"results": huge}).encode())
    handed = json.loads(line)
    assert handed["cut"] + len(handed["results"]) == 400 and handed["cut"] > 200
    assert all(set(r) <= set(comment.ROW_KEYS) for r in handed["results"])
    (tmp_path / "big.json").write_bytes(b" " * (comment.MAX_BYTES + 1))
    assert json.loads(comment.handoff(tmp_path / "big.json")) == {
        "unreadable": f"larger than {comment.MAX_BYTES} bytes"
    }


class FakeGh:
    """`gh` as the comment job calls it: the pull request, its comments, and the write."""

    def __init__(self, head: str, comments: list[dict]):
        self.head, self.comments, self.writes = head, comments, []

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        if args[-1].endswith("/pulls/7"):
            return json.dumps({"head": {"sha": self.head}})
        if args[-1].endswith("/issues/7/comments") and "-X" not in args:
            return json.dumps([self.comments])
        self.writes.append((args, json.loads(stdin or "{}")))
        return "{}"


def post_env(**extra) -> dict[str, str]:
    return {"REPO": REPO, "RUN_URL": RUN, "TRUST": json.dumps(DECIDED), **extra}


def test_the_comment_is_updated_in_place_and_only_for_the_current_head(monkeypatch):
    mine = {"id": 5, "body": comment.MARKER + " old", "user": {"type": "Bot"}}
    forged = {"id": 6, "body": comment.MARKER, "user": {"type": "User"}}
    gh = FakeGh(SHA, [forged, mine])
    monkeypatch.setattr(comment, "gh", gh)
    assert comment.post(post_env(GPU_RESULT="success", REPORT="")) == 0
    [(args, payload)] = gh.writes
    assert args[:3] == ("api", "-X", "PATCH") and args[3].endswith("/issues/comments/5")
    assert payload["body"].startswith(comment.MARKER)
    moved = FakeGh(OLD, [mine])
    monkeypatch.setattr(comment, "gh", moved)
    assert comment.post(post_env(GPU_RESULT="success", REPORT="")) == 0
    assert moved.writes == []


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


CONTAINED = "/usr/bin/unshare --user --map-root-user --pid --fork --kill-child --mount-proc"


def shell(job: dict, step: dict) -> str:
    return step.get("shell") or job["defaults"]["run"]["shell"]


def test_the_gpu_job_waits_for_the_trust_decision_and_runs_in_a_fresh_clone():
    gpu = workflows()["gpu-gate.yml"]["jobs"]["gpu"]
    assert gpu["needs"] == "trust" and gpu["if"] == "needs.trust.outputs.gpu == 'true'"
    assert gpu["env"]["HEAD_SHA"] == "${{ needs.trust.outputs.sha }}"
    assert gpu["env"]["TRUST_ATTEMPT"] == "${{ needs.trust.outputs.attempt }}"
    run = "\n".join(s.get("run", "") for s in gpu["steps"])
    # No checkout into the runner's reused work folder, where a planted hook would run (act
    # alone needs one to copy the local repository).
    checkouts = [s for s in gpu["steps"] if "checkout" in str(s.get("uses", ""))]
    assert [s["if"] for s in checkouts] == ["${{ env.ACT }}"]
    # The work tree is the base commit (its tests, plugin, settings judge); the head's kernel
    # package is put into it, and every case is an A/B against the base.
    assert 'git init -q "$SCRATCH/src"' in run and 'git checkout -q --detach "$HEAD_SHA"' not in run
    assert 'test "$(git rev-parse -q --verify "$HEAD_SHA^{commit}")" = "$HEAD_SHA"' in run
    assert 'git checkout -q --detach "$against"' in run
    assert 'conv3d-perf" pull-request --base "$AGAINST" --head "$HEAD_SHA"' in run
    assert '--conv3d-against="$AGAINST" --conv3d-unstable=fail' in run
    assert "GIT_CONFIG_KEY_0=core.hooksPath" in run and "GIT_CONFIG_VALUE_0=/dev/null" in run
    assert "GIT_CONFIG_GLOBAL=/dev/null" in run and "GIT_CONFIG_NOSYSTEM=1" in run
    assert 'git archive "$GITHUB_SHA" .github/scripts' in run
    assert 'git archive "$AGAINST" baselines' in run
    assert '--conv3d-baseline-dir="$SCRATCH/base/baselines"' in run
    for name in ("HOME", "TMPDIR", "TRITON_CACHE_DIR", "PIP_CACHE_DIR"):
        assert f'echo "{name}=$SCRATCH/' in run, name
    # The runner's Python checks itself and makes the venv; no --system-site-packages.
    assert 'python3 -I "$SCRATCH/trusted/.github/scripts/job_venv.py"' in run
    assert '-c "$SCRATCH/venv/constraints.txt" -e .' in run and "system-site" not in run
    assert gpu["steps"][-1]["if"] == "always()" and 'rm -rf -- "$SCRATCH"' in run


def test_the_gate_is_the_first_step_that_runs_the_pull_requests_code():
    # Run after the correctness tests, the gate would find a tree, a venv and caches the
    # head's kernel package could have written to (issue 25's red team: appending
    # conv3d_fail = 90 to pytest.ini from the kernel's __init__ during the correctness step).
    gpu = workflows()["gpu-gate.yml"]["jobs"]["gpu"]
    names = [s.get("name", "") for s in gpu["steps"]]
    runs = [s.get("run", "") for s in gpu["steps"]]
    pytest_steps = [n for n, r in zip(names, runs) if "python3 -m pytest" in r]
    assert pytest_steps == ["Performance gate", "Correctness on the GPU"]
    before_gate = runs[: names.index("Performance gate")]
    assert not any("pytest" in r or "import kernels" in r for r in before_gate)


def test_every_step_after_the_clone_runs_contained_and_the_tests_offline():
    for name, job in [
        ("gpu", workflows()["gpu-gate.yml"]["jobs"]["gpu"]),
        ("measure", workflows()["update-baselines.yml"]["jobs"]["measure"]),
    ]:
        steps = job["steps"]
        first = next(i for i, s in enumerate(steps) if s.get("name", "").startswith("A fresh"))
        for step in steps[first:]:
            if "uses" in step or step.get("name") == "Leave nothing behind":
                continue  # an action runs in the runner; the clean-up runs no job code
            assert shell(job, step).startswith(CONTAINED), (name, step.get("name"))
            needs_network = step["name"].startswith(("A fresh", "Install"))
            assert ("--net " in shell(job, step)) is not needs_network, (name, step["name"])
    gpu = workflows()["gpu-gate.yml"]["jobs"]["gpu"]
    names = [s.get("name") for s in gpu["steps"]]
    assert "Correctness on the GPU" in names and "Performance gate" in names


def test_the_update_job_builds_its_environment_as_the_gpu_job_does():
    def environment(job: dict) -> list[dict]:
        return [s for s in job["steps"] if s.get("name", "").startswith(("A fresh", "Install"))]

    gpu = workflows()["gpu-gate.yml"]["jobs"]["gpu"]
    measure = workflows()["update-baselines.yml"]["jobs"]["measure"]
    assert len(environment(gpu)) == 2 and environment(gpu) == environment(measure)
    assert gpu["defaults"] == measure["defaults"]


def test_a_rerun_of_the_gpu_job_alone_refuses_an_old_trust_decision():
    gpu = workflows()["gpu-gate.yml"]["jobs"]["gpu"]
    first = gpu["steps"][0]
    assert '"$TRUST_ATTEMPT" != "$GITHUB_RUN_ATTEMPT"' in first["run"] and "exit 1" in first["run"]
    trust_job = workflows()["gpu-gate.yml"]["jobs"]["trust"]
    assert trust_job["outputs"]["attempt"] == "${{ steps.decide.outputs.attempt }}"


def test_pull_request_target_runs_for_the_default_branch_only():
    on = workflows()["gpu-gate.yml"][True]
    assert on["pull_request_target"]["branches"] == ["main"]


def test_the_comment_comes_from_this_workflow_reading_job_outputs_only():
    docs = workflows()
    assert "comment.yml" not in docs
    assert not [n for n, d in docs.items() if "workflow_run" in triggers(d)]
    gate = docs["gpu-gate.yml"]
    job = gate["jobs"]["comment"]
    assert job["needs"] == ["trust", "gpu"] and job["runs-on"] == "ubuntu-latest"
    assert job["if"].startswith("!cancelled()") and "attempt == github.run_attempt" in job["if"]
    assert job["concurrency"] == {
        "group": "conv3d-gpu-comment-${{ needs.trust.outputs.pr }}",
        "cancel-in-progress": False,
    }
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    text = (WORKFLOWS / "gpu-gate.yml").read_text()
    assert "download-artifact" not in text  # nothing the GPU job could replace
    post = job["steps"][1]["env"]
    assert post["TRUST"] == "${{ toJSON(needs.trust.outputs) }}"
    assert post["GPU_RESULT"] == "${{ needs.gpu.result }}"
    assert post["REPORT"] == "${{ needs.gpu.outputs.report }}"
    assert "REPORT" not in job["steps"][2]["env"] and job["steps"][2]["if"].startswith("failure()")
    group = gate["concurrency"]["group"]
    assert "github.event.pull_request.number" in group and "inputs.pr" in group


def test_update_workflow_measures_read_only_and_proposes_from_githubs_runner():
    jobs = workflows()["update-baselines.yml"]["jobs"]
    assert self_hosted(jobs["measure"]) and jobs["measure"]["permissions"] == {"contents": "read"}
    propose = jobs["propose"]
    assert propose["runs-on"] == "ubuntu-latest" and propose["needs"] == "measure"
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    run = propose["steps"][-1]["run"]
    assert "propose_baselines.py" in run and '--body-file "$RUNNER_TEMP/body.md"' in run
    assert "baseline-summary" not in run


def test_every_action_is_pinned_to_a_full_commit_sha():
    for path in WORKFLOWS.glob("*.yml"):
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), (path.name, ref)


def test_zizmor_finds_nothing_at_the_auditor_persona():
    exe = shutil.which("zizmor")
    assert exe, "zizmor is missing: the set-up command installs it"
    done = subprocess.run(
        [
            exe,
            "--offline",
            "--persona=auditor",
            "--config",
            ".github/zizmor.yml",
            ".github/workflows",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def _row(case: str, verdict: str) -> dict:
    return {"case": case, "nodeid": f"t.py::speed[{case}]", "verdict": verdict}


@pytest.mark.parametrize(
    "results, selected, why",
    [
        (None, None, "wrote no report"),
        ([], [], "judged no case"),
        (
            [_row("kb54", "unchanged"), _row("tiny", "regression")],
            ["t.py::speed[kb54]", "t.py::speed[tiny]"],
            "1 failing case(s): `tiny`",
        ),
        ([_row("kb54", "unstable")], ["t.py::speed[kb54]"], "1 failing case(s): `kb54`"),
        # A wrong output on fresh inputs fails the case whatever its verdict.
        (
            [{**_row("kb54", "unchanged"), "fails": True}],
            ["t.py::speed[kb54]"],
            "1 failing case(s): `kb54`",
        ),
        (
            [_row("kb54", "unchanged"), _row("x", "warning")],
            ["t.py::speed[kb54]", "t.py::speed[x]"],
            "",
        ),
        # The run ended (status 0) before a selected case had a row (the fourth red team).
        (
            [_row("kb54", "unchanged")],
            ["t.py::speed[kb54]", "t.py::speed[video_c64]"],
            "ended before 1 selected case(s) had a verdict: `t.py::speed[video_c64]`",
        ),
        # A report that does not say what was selected cannot show it is whole.
        ([_row("kb54", "unchanged")], None, "does not say which cases the run selected"),
        # Garbage among the selected or the rows' node ids is unjudged, never a crash.
        (
            [_row("kb54", "unchanged"), {"case": "y", "nodeid": ["x"], "verdict": "unchanged"}],
            ["t.py::speed[kb54]", ["x"]],
            "ended before 1 selected case(s) had a verdict: `['x']`",
        ),
    ],
)
def test_the_handoff_fails_the_job_on_its_report_whatever_the_gate_said(
    tmp_path, monkeypatch, capsys, results, selected, why
):
    # The gate's exit status is the process's, where the kernel's code runs: it ended a run
    # with 0 after a regression (the third red team), or before the case it slows was
    # timed (the fourth). The trusted handoff reads the rows and the selection.
    out = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    report = tmp_path / "conv3d-perf.json"
    if results is not None:
        doc = {"results": results}
        if selected is not None:
            doc["selected"] = selected
        report.write_text(json.dumps(doc))
    code = comment.main(["handoff", str(report)])
    assert code == (1 if why else 0)
    printed = capsys.readouterr().out
    assert (why in printed and "::error" in printed) if why else printed == ""
    assert out.exists() == (results is not None)
