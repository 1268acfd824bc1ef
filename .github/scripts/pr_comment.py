"""Post the GPU gate's result as one pull-request comment, updated in place.

Runs from the default branch in a workflow_run job. Two inputs:

- the trust job's decision (`trust.json`: pull request, commit, whether the GPU job ran,
  why), written by default-branch code before any pull-request code ran;
- the GPU job's report, written by the pull request's own code: untrusted. It is read
  size-limited, strictly decoded, depth-checked and field by field; whatever it holds, this
  script never crashes (it says the report was unreadable) and shows its strings as plain
  text (inline code: no links, images or mentions).

The headline comes from the workflow run's conclusion, which GitHub reports, not from the
report. Every comment names the commit it reports on, and replaces the previous one, so a
GPU job that failed before reporting replaces an old "passed".

    python3 .github/scripts/pr_comment.py TRUST_DIR REPORT_DIR
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

MARKER = "<!-- conv3d-perf-gate -->"
MAX_BYTES = 512 * 1024
MAX_DEPTH = 16
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


class Unreadable(Exception):
    pass


def plain(value: object, limit: int = 60) -> str:
    """Untrusted text as inline code, which GitHub renders with no links, images,
    mentions or markup."""
    text = re.sub(r"[`\r\n|]", "'", str(value))[:limit]
    return f"`{text}`" if text.strip() else "`?`"


def number(value: object) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _too_deep(text: str) -> bool:
    """Bracket depth, strings skipped, before json.loads can recurse on hostile nesting.
    pytest_conv3d_perf.baseline has the same scan; this script runs from a sparse checkout
    of .github/scripts with nothing installed, so it cannot import it."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def read_json(path: Path) -> object:
    """A JSON file written by untrusted code, or Unreadable."""
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
        if len(raw) > MAX_BYTES:
            raise Unreadable(f"larger than {MAX_BYTES} bytes")
        text = raw.decode("utf-8")
        if _too_deep(text):
            raise Unreadable(f"nested deeper than {MAX_DEPTH} levels")
        return json.loads(text)
    except Unreadable:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Unreadable(type(exc).__name__) from None


def read_trust(folder: Path) -> dict[str, str]:
    """The trust job's decision; written by default-branch code, still checked."""
    try:
        data = read_json(folder / "trust.json")
    except Unreadable:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    if not re.fullmatch(r"[0-9]{1,9}", out.get("pr", "")):
        return {}
    if not re.fullmatch(r"[0-9a-f]{40}", out.get("sha", "")):
        out["sha"] = ""
    return out


def table(report: object) -> list[str]:
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise Unreadable("no results list")
    rows = [r for r in report["results"][:MAX_ROWS] if isinstance(r, dict)]
    rows = [r for r in rows if r.get("verdict") in ICONS]
    rows.sort(key=lambda r: (ORDER.index(r["verdict"]), plain(r.get("case"))))
    lines = [
        "| | case | ms | baseline ms | change [95% interval] | verdict |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        ms, base, change = (number(r.get(k)) for k in ("median_ms", "baseline_ms", "change_pct"))
        span = ""
        interval = r.get("change_interval_pct")
        if isinstance(interval, list) and len(interval) == 2:
            lo, hi = number(interval[0]), number(interval[1])
            if lo is not None and hi is not None:
                span = f" [{lo:+.2f}, {hi:+.2f}]"
        lines.append(
            f"| {ICONS[r['verdict']]} | {plain(r.get('case'))} | "
            f"{'-' if ms is None else f'{ms:.4f}'} | {'-' if base is None else f'{base:.4f}'} | "
            f"{'-' if change is None else f'{change:+.2f}%'}{span} | **{r['verdict']}** |"
        )
    return lines


def build_body(trust: dict[str, str], report_dir: Path, conclusion: str, run_url: str) -> str:
    sha = trust.get("sha", "")
    commit = f"commit {plain(sha[:12])}" if sha else "the pull request's head"
    run = f"[the run]({run_url})" if re.fullmatch(r"https://[\w./-]+", run_url) else "the run"
    if trust.get("gpu") != "true":
        reason = trust.get("reason", "the trust decision did not allow it")
        return (
            f"{MARKER}\n## ⏸️ conv3d GPU gate not run on {commit}\n\n"
            f"{plain(reason, 400)}\n\nSee {run}.\n"
        )
    passed = conclusion == "success"
    head = "✅ conv3d GPU gate passed" if passed else f"❌ conv3d GPU gate: {plain(conclusion, 20)}"
    lines = [MARKER, f"## {head} on {commit}", ""]
    report = report_dir / "conv3d-perf.json"
    if not report.is_file():
        lines.append(f"The GPU job finished without a timing report; see {run}.")
    else:
        try:
            lines += table(read_json(report))
        except Unreadable as exc:
            lines.append(f"The timing report was unreadable ({plain(exc, 80)}); see {run}.")
    if (report_dir / "baselines-changed.md").is_file():
        lines += [
            "",
            "This pull request changes `baselines/`; its verdicts were computed against the "
            f"base commit's files. The entries it changes are listed in {run}.",
        ]
    lines += ["", f"Details, charts and the JSON reports: {run}."]
    return "\n".join(lines) + "\n"


def gh(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["gh", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def main(trust_dir: str, report_dir: str) -> int:
    repo, run_url = os.environ["REPO"], os.environ.get("RUN_URL", "")
    trust = read_trust(Path(trust_dir))
    if not trust:
        print("no trust decision with a pull-request number; nothing to comment on")
        return 0
    pr = trust["pr"]
    body = build_body(trust, Path(report_dir), os.environ.get("CONCLUSION", ""), run_url)
    pages = json.loads(gh("api", "--paginate", "--slurp", f"repos/{repo}/issues/{pr}/comments"))
    mine = [
        c
        for page in pages
        for c in page
        if MARKER in c.get("body", "") and c.get("user", {}).get("type") == "Bot"
    ]
    payload = json.dumps({"body": body})
    if mine:
        path = f"repos/{repo}/issues/comments/{mine[0]['id']}"
        gh("api", "-X", "PATCH", path, "--input", "-", stdin=payload)
    else:
        gh("api", "-X", "POST", f"repos/{repo}/issues/{pr}/comments", "--input", "-", stdin=payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
