"""Post the conv3d gate's result as one pull-request comment, updated in place.

Runs from the default branch in a workflow_run job. The artifact was made by the pull
request's code, so it is untrusted: only the JSON report is read, size-limited and checked
field by field, and every string is escaped; the PR number must name a pull request whose
head is the commit the gate ran on.

    python3 .github/scripts/pr_comment.py REPORT_DIR
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

MARKER = "<!-- conv3d-perf-gate -->"
MAX_BYTES = 512 * 1024
MAX_ROWS = 200
ICONS = {
    "regression": "❌",
    "unstable": "❔",
    "warning": "⚠️",
    "new": "🆕",
    "improvement": "🚀",
    "unchanged": "✅",
}
ORDER = list(ICONS)


def text(value: object, limit: int = 80) -> str:
    s = str(value)[:limit]
    s = html.escape(s).replace("|", "\\|").replace("`", "'").replace("\n", " ")
    return s.replace("@", "@\u200b")  # no mentions from untrusted text


def number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def render(report: dict, run_url: str) -> str:
    rows = [r for r in report.get("results", []) if isinstance(r, dict)][:MAX_ROWS]
    rows = [r for r in rows if r.get("verdict") in ICONS]
    rows.sort(key=lambda r: (ORDER.index(r["verdict"]), str(r.get("case"))))
    failed = [text(r.get("case")) for r in rows if r.get("fails") is True]
    head = f"❌ conv3d gate failed: {', '.join(failed)}" if failed else "✅ conv3d gate passed"
    lines = [
        MARKER,
        f"## {head}",
        "",
        "| | case | ms | baseline ms | change [95% interval] | verdict |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        ms, base = number(r.get("median_ms")), number(r.get("baseline_ms"))
        change, interval = number(r.get("change_pct")), r.get("change_interval_pct")
        span = ""
        if isinstance(interval, list) and len(interval) == 2 and all(map(number, interval)):
            span = f" [{interval[0]:+.2f}, {interval[1]:+.2f}]"
        lines.append(
            f"| {ICONS[r['verdict']]} | {text(r.get('case'))} | "
            f"{'-' if ms is None else f'{ms:.4f}'} | {'-' if base is None else f'{base:.4f}'} | "
            f"{'-' if change is None else f'{change:+.2f}%'}{span} | **{r['verdict']}** |"
        )
    lines += ["", f"Details, charts and the JSON reports: [the gate's run]({run_url})."]
    return "\n".join(lines) + "\n"


def gh(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["gh", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def main(report_dir: str) -> int:
    repo, sha, run_url = os.environ["REPO"], os.environ["HEAD_SHA"], os.environ["RUN_URL"]
    folder = Path(report_dir)
    pr_text = (
        (folder / "pr-number").read_text()[:20].strip() if (folder / "pr-number").exists() else ""
    )
    if not re.fullmatch(r"[0-9]{1,9}", pr_text):
        print("no valid pull-request number in the artifact; nothing to comment on")
        return 0
    if gh("api", f"repos/{repo}/pulls/{pr_text}", "--jq", ".head.sha").strip() != sha:
        print("the pull request's head is not the commit the gate ran on; not commenting")
        return 0
    path = folder / "conv3d-perf.json"
    if path.exists() and path.stat().st_size <= MAX_BYTES:
        try:
            body = render(json.loads(path.read_text()), run_url)
        except (ValueError, TypeError, KeyError):
            body = f"{MARKER}\n## ❔ conv3d gate: unreadable report\n\nSee [the run]({run_url}).\n"
    else:
        conclusion = text(os.environ.get("CONCLUSION", "unknown"), 20)
        body = (
            f"{MARKER}\n## conv3d gate: {conclusion}, no timing report\n\n"
            f"The GPU job did not produce one; see [the run]({run_url}).\n"
        )
    comments = json.loads(
        gh("api", "--paginate", "--slurp", f"repos/{repo}/issues/{pr_text}/comments")
    )
    mine = [
        c
        for page in comments
        for c in page
        if MARKER in c.get("body", "") and c.get("user", {}).get("type") == "Bot"
    ]
    payload = json.dumps({"body": body})
    if mine:
        gh(
            "api",
            "-X",
            "PATCH",
            f"repos/{repo}/issues/comments/{mine[0]['id']}",
            "--input",
            "-",
            stdin=payload,
        )
    else:
        gh(
            "api",
            "-X",
            "POST",
            f"repos/{repo}/issues/{pr_text}/comments",
            "--input",
            "-",
            stdin=payload,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
