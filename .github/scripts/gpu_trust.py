"""May the GPU job run this code? Decided from the default branch (gpu-gate.yml runs on
pull_request_target, push to main and workflow_dispatch), never by the pull request.

Trusted: a push to the default branch; a pull request from a branch of this repository
(only people with write access push branches here); a pull request from a fork whose head
commit a person with write access approved in a review of exactly that commit, asked for by
that person with the 'gpu-run' label or a manual dispatch naming the commit. A new push
makes a new head commit, which nobody has approved yet.

Writes gpu, sha, base_sha, pr, reason, notify (whether this run's decision belongs in the
pull request's comment: a label other than 'gpu-run' decides nothing) and attempt (the run
attempt it was made in: "re-run failed jobs" reuses these outputs, and the GPU job refuses
a decision from an earlier attempt, whose approval may have been withdrawn since) to
$GITHUB_OUTPUT and the reason to the job summary; the API is read with the job's read-only
token through `gh api`, every page of a list.

    python3 .github/scripts/gpu_trust.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

WRITERS = {"admin", "maintain", "write"}
LABEL = "gpu-run"
SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Decision:
    gpu: bool
    sha: str = ""  # the commit the GPU job runs, or the one refused
    base_sha: str = ""
    pr: str = ""
    reason: str = ""
    notify: bool = True


# GET path -> parsed JSON; with paginate=True, a list endpoint's items over all its pages.
Api = Callable[..., object]


def _permission(api: Api, repo: str, user: str) -> str:
    data = api(f"repos/{repo}/collaborators/{user}/permission")
    return str(data.get("permission", "none")) if isinstance(data, dict) else "none"


def _approved_by_writer(api: Api, repo: str, number: int, sha: str) -> str | None:
    """The login of a writer whose latest review approved exactly ``sha``, if any."""
    latest: dict[str, dict] = {}
    # Every page: a "changes requested" after the hundredth review still counts.
    reviews = api(f"repos/{repo}/pulls/{number}/reviews?per_page=100", paginate=True)
    for review in reviews if isinstance(reviews, list) else []:
        user = (review.get("user") or {}).get("login")
        if user:
            latest[user] = review
    for user, review in sorted(latest.items()):
        if review.get("state") == "APPROVED" and review.get("commit_id") == sha:
            if _permission(api, repo, user) in WRITERS:
                return user
    return None


def decide(event_name: str, event: dict, repo: str, api: Api) -> Decision:
    if event_name == "push":
        sha = str(event.get("after", ""))
        # Judged against the commit before it; the GPU job takes the parent where GitHub
        # names none (a branch's first push).
        before = str(event.get("before", ""))
        base = before if SHA.fullmatch(before) and before.strip("0") else sha
        return Decision(True, sha, base, "", "a push to the default branch")
    if event_name == "workflow_dispatch":
        inputs = event.get("inputs") or {}
        number, wanted = str(inputs.get("pr", "")), str(inputs.get("sha", ""))
        if not number.isdigit() or not SHA.fullmatch(wanted):
            return Decision(False, reason="dispatch needs a pull-request number and a full sha")
        actor = str((event.get("sender") or {}).get("login", ""))
        pull = api(f"repos/{repo}/pulls/{number}")
        event = {"action": "dispatch", "pull_request": pull, "sender": {"login": actor}}
        if not isinstance(pull, dict) or pull.get("head", {}).get("sha") != wanted:
            return Decision(
                False, pr=number, reason=f"the pull request's head is no longer {wanted[:12]}"
            )
    elif event_name != "pull_request_target":
        return Decision(False, reason=f"event {event_name!r} never runs the GPU job")
    pull = event.get("pull_request") or {}
    number = int(pull.get("number", 0))
    sha = str(pull.get("head", {}).get("sha", ""))
    base = str(pull.get("base", {}).get("sha", ""))
    head_repo = (pull.get("head", {}).get("repo") or {}).get("full_name")
    action = event.get("action")
    if head_repo == repo:
        if action == "labeled":
            return Decision(
                False, pr=str(number), reason="a label changes nothing here", notify=False
            )
        return Decision(True, sha, base, str(number), "a branch of this repository")
    ask = (
        f"GPU job not run: this pull request comes from a fork. A maintainer who has read "
        f"commit {sha[:12]} approves it in a review and adds the '{LABEL}' label (or "
        f"dispatches gpu-gate.yml with this pull request and that commit); a new push needs "
        "a new approval."
    )
    asked = action == "dispatch" or (
        action == "labeled" and (event.get("label") or {}).get("name") == LABEL
    )
    if not asked:
        # Another label on an approved commit must not replace its result in the comment.
        return Decision(False, sha, pr=str(number), reason=ask, notify=action != "labeled")
    asker = str((event.get("sender") or {}).get("login", ""))
    if _permission(api, repo, asker) not in WRITERS:
        return Decision(False, sha, pr=str(number), reason=f"{asker} may not ask for a GPU run")
    reviewer = _approved_by_writer(api, repo, number, sha)
    if reviewer is None:
        return Decision(
            False,
            sha,
            pr=str(number),
            reason=f"no approving review of commit {sha[:12]} by a person with write access; "
            + ask,
        )
    return Decision(True, sha, base, str(number), f"commit {sha[:12]} approved by {reviewer}")


def gh_api(path: str, paginate: bool = False) -> object:
    args = ["gh", "api", *(["--paginate", "--slurp"] if paginate else []), path]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    data = json.loads(done.stdout)
    return flatten(data) if paginate else data


def flatten(pages: object) -> list:
    """`gh api --paginate --slurp` gives a list of pages, each a list of items."""
    if not isinstance(pages, list):
        return []
    return [item for page in pages if isinstance(page, list) for item in page]


def main() -> int:
    with open(os.environ["GITHUB_EVENT_PATH"]) as fh:
        event = json.load(fh)
    decision = decide(
        os.environ["GITHUB_EVENT_NAME"], event, os.environ["GITHUB_REPOSITORY"], gh_api
    )
    line = f"gpu={'true' if decision.gpu else 'false'}: {decision.reason}"
    print(line)
    if not decision.gpu:
        print(f"::notice::{decision.reason}")
    outputs = {
        "gpu": "true" if decision.gpu else "false",
        "sha": decision.sha,
        "base_sha": decision.base_sha,
        "pr": decision.pr,
        "reason": decision.reason.replace("\n", " "),
        "notify": "true" if decision.notify else "false",
        "attempt": os.environ.get("GITHUB_RUN_ATTEMPT", ""),
    }
    with open(os.environ["GITHUB_OUTPUT"], "a") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in outputs.items())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
