"""The GPU gate's result as one pull-request comment, updated in place.

Two halves, one format between them:

- ``handoff REPORT_JSON`` runs at the end of the GPU job and writes the job output
  ``report``: the rows of the timing report (case, verdict, times, change), one line of
  ASCII JSON, at most HANDOFF_BYTES. The GPU job ran the pull request's code, so what it
  hands over is untrusted; the output only keeps its size inside what GitHub passes on.
- ``post`` runs in the comment job of gpu-gate.yml, on GitHub's runner, from the default
  branch. Its inputs are the trust job's outputs (pull request, commit, whether the GPU job
  ran and why: decided before any pull-request code ran), the GPU job's result as GitHub
  reports it (the headline) and the GPU job's ``report`` output, read size-limited, strictly
  decoded, depth-checked and field by field. Whatever the report holds, the comment is
  posted (an unreadable report says so), its strings are shown as plain inline code with
  no bidi, zero-width or control characters, and the body stays under GitHub's limit.

Every comment names its commit and replaces the previous one, so a GPU job that failed
before reporting replaces an old "passed". A run whose commit is no longer the pull
request's head posts nothing: the newer commit's run reports.

    python3 .github/scripts/pr_comment.py handoff REPORT_JSON   # GPU job
    python3 .github/scripts/pr_comment.py post                  # comment job
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from untrusted import TooLarge, fit, inline, read_limited, room

MARKER = "<!-- conv3d-perf-gate -->"
MAX_BYTES = 512 * 1024
# Job outputs reach the comment job as an environment variable: Linux refuses one over
# 128 KiB (MAX_ARG_STRLEN), and the step would not start.
HANDOFF_BYTES = 48 * 1024
# The selected cases without a row that the handoff names (it counts them all).
MAX_MISSING = 20
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
ROW_KEYS = (
    "case",
    "verdict",
    "fails",
    "median_ms",
    "baseline_ms",
    "change_pct",
    "change_interval_pct",
)


class Unreadable(Exception):
    pass


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


def loads(raw: bytes) -> object:
    """JSON written by untrusted code, or Unreadable."""
    if len(raw) > MAX_BYTES:
        raise Unreadable(f"larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        if _too_deep(text):
            raise Unreadable(f"nested deeper than {MAX_DEPTH} levels")
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Unreadable(type(exc).__name__) from None


def read_json(path: Path) -> object:
    try:
        return loads(read_limited(path, MAX_BYTES))
    except TooLarge as exc:
        raise Unreadable(str(exc)) from None
    except OSError as exc:
        raise Unreadable(type(exc).__name__) from None


# -- the GPU job's half ---------------------------------------------------------------


def handoff(report_path: Path) -> str:
    """The report's rows as one line of ASCII JSON of at most HANDOFF_BYTES."""
    try:
        report = read_json(report_path)
        if not isinstance(report, dict) or not isinstance(report.get("results"), list):
            raise Unreadable("no results list")
    except Unreadable as exc:
        return json.dumps({"unreadable": str(exc)})
    rows = [
        {k: r[k] for k in ROW_KEYS if k in r}
        for r in report["results"][:MAX_ROWS]
        if isinstance(r, dict)
    ]
    for row in rows:
        row.update({k: v[:100] for k, v in row.items() if isinstance(v, str)})
    cut = len(report["results"]) - len(rows)
    absent = unjudged(report)
    lost = {"missing": None} if absent is None else {"missing": absent[:MAX_MISSING]}
    if absent:
        lost["missing_count"] = len(absent)
    while True:
        line = json.dumps({"results": rows, "cut": cut, **lost}, ensure_ascii=True)
        if len(line) <= HANDOFF_BYTES:
            return line
        rows, cut = rows[: len(rows) * 3 // 4], cut + len(rows) - len(rows) * 3 // 4


def unjudged(report: dict) -> list[str] | None:
    """The selected timed tests (the report's ``selected``, node ids) that have no row, or
    None where the report does not say what was selected. The kernel's code runs in the
    gate's process and can end it with status 0 before the case it slows is timed: the
    report then holds only the earlier cases' rows, none failing (the fourth red team)."""
    selected = report.get("selected")
    if not isinstance(selected, list):
        return None
    # Strings only on both sides: the report is untrusted, and a list among them would
    # make the set lookup raise.
    judged = {
        r["nodeid"]
        for r in report["results"]
        if isinstance(r, dict) and isinstance(r.get("nodeid"), str)
    }
    return [str(n)[:100] for n in selected if not (isinstance(n, str) and n in judged)]


def incomplete(report: object) -> str:
    """Why a handed-over report (already read by ``rows``) is not the whole run, or ''."""
    missing = report.get("missing") if isinstance(report, dict) else None
    if missing is None:
        return "the report does not say which cases the run selected"
    if not isinstance(missing, list):
        return "the report's list of unjudged cases is unreadable"
    if not missing:
        return ""
    count = report.get("missing_count")
    n = count if isinstance(count, int) and not isinstance(count, bool) else len(missing)
    names = ", ".join(inline(m) for m in missing[:5])
    return f"the run ended before {n} selected case(s) had a verdict: {names}"


# -- the comment job's half -------------------------------------------------------------


def trusted(outputs: object) -> dict[str, str]:
    """The trust job's outputs: written by default-branch code, still checked."""
    if not isinstance(outputs, dict):
        return {}
    out = {k: v for k, v in outputs.items() if isinstance(v, str)}
    if not re.fullmatch(r"[0-9]{1,9}", out.get("pr", "")):
        return {}
    if not re.fullmatch(r"[0-9a-f]{40}", out.get("sha", "")):
        out["sha"] = ""
    return out


def rows(report: object) -> tuple[list[str], int]:
    """Table rows of the handed-over report, and how many the GPU job already cut."""
    if not isinstance(report, dict):
        raise Unreadable("not an object")
    if "unreadable" in report:
        raise Unreadable(str(report["unreadable"]))
    if not isinstance(report.get("results"), list):
        raise Unreadable("no results list")
    results = [r for r in report["results"][:MAX_ROWS] if isinstance(r, dict)]
    results = [r for r in results if r.get("verdict") in ICONS]
    results.sort(key=lambda r: (ORDER.index(r["verdict"]), inline(r.get("case"))))
    lines = []
    for r in results:
        ms, base, change = (number(r.get(k)) for k in ("median_ms", "baseline_ms", "change_pct"))
        span = ""
        interval = r.get("change_interval_pct")
        if isinstance(interval, list) and len(interval) == 2:
            lo, hi = number(interval[0]), number(interval[1])
            if lo is not None and hi is not None:
                span = f" [{lo:+.2f}, {hi:+.2f}]"
        lines.append(
            f"| {ICONS[r['verdict']]} | {inline(r.get('case'))} | "
            f"{'-' if ms is None else f'{ms:.4f}'} | {'-' if base is None else f'{base:.4f}'} | "
            f"{'-' if change is None else f'{change:+.2f}%'}{span} | **{r['verdict']}** |"
        )
    cut = report.get("cut")
    return lines, cut if isinstance(cut, int) and not isinstance(cut, bool) and cut > 0 else 0


# Verdicts that fail the gate in CI (`--conv3d-unstable=fail`).
FAILING = ("regression", "unstable")


def failing(report: object) -> list[str]:
    """The cases of a handed-over report (already read by ``rows``) whose verdict fails,
    or that the gate failed whatever their verdict (``fails``: the output of a timed call
    on fresh inputs was wrong)."""
    results = report.get("results", []) if isinstance(report, dict) else []
    return [
        inline(r.get("case"))
        for r in results[:MAX_ROWS]
        if isinstance(r, dict) and (r.get("verdict") in FAILING or r.get("fails") is True)
    ]


TABLE = [
    "| | case | ms | baseline ms | change [95% interval] | verdict |",
    "|---|---|---:|---:|---|---|",
]


def build_body(
    trust: dict[str, str], result: str, report: bytes | None, baselines_changed: bool, run_url: str
) -> str:
    """``result``: the GPU job's result as GitHub reports it (success, failure, cancelled,
    skipped). ``report``: the GPU job's handed-over rows, untrusted: empty where it wrote
    none, None where they could not be passed on (too large for an environment variable)."""
    sha = trust.get("sha", "")
    commit = f"commit {inline(sha[:12])}" if sha else "the pull request's head"
    run = f"[the run]({run_url})" if re.fullmatch(r"https://[\w./-]+", run_url) else "the run"
    if trust.get("gpu") != "true":
        reason = trust.get("reason", "the trust decision did not allow it")
        return (
            f"{MARKER}\n## ⏸️ conv3d GPU gate not run on {commit}\n\n"
            f"{inline(reason, 400)}\n\nSee {run}.\n"
        )
    passed = result == "success"
    head = "✅ conv3d GPU gate passed" if passed else f"❌ conv3d GPU gate: {inline(result, 20)}"
    lines = [MARKER, f"## {head} on {commit}", ""]
    table: list[str] = []
    bad: list[str] = []
    gap = ""
    tail = []
    if report is None:
        lines.append(f"The GPU job's report could not be handed to this job; see {run}.")
    elif not report:
        lines.append(f"The GPU job finished without a timing report; see {run}.")
    else:
        try:
            handed = loads(report)
            table, cut = rows(handed)
            bad = failing(handed)
            gap = incomplete(handed)
            lines += TABLE
            if cut:
                tail += ["", f"({cut} more rows were cut by the GPU job; see {run}.)"]
        except Unreadable as exc:
            lines.append(f"The timing report was unreadable ({inline(exc, 80)}); see {run}.")
    if passed and not table:
        # A job that succeeded without a judged case is no pass: the kernel's own code can
        # skip the tests or end the process early (the red team).
        lines[1] = f"## ⚠️ conv3d GPU gate judged no case on {commit}"
    elif passed and (bad or gap):
        # Nor is one whose own rows fail, or that lacks a selected case's row: the kernel's
        # code ended the run with status 0 after a regression was recorded, or before the
        # case it slows was timed (pytest.exit, an atexit hook: the third and fourth red
        # teams).
        lines[1] = f"## ❌ conv3d GPU gate: the job passed, its report did not, on {commit}"
    if gap:
        # Plain text: the names in it went through inline() already.
        tail += ["", f"The report is incomplete: {gap}."]
    if baselines_changed:
        tail += [
            "",
            "This pull request changes `baselines/`; its verdicts were computed against the "
            f"base commit's files. The entries it changes are listed in {run}.",
        ]
    tail += ["", f"Details, charts and the JSON reports: {run}."]
    shown, cut_line = fit(table, room(lines, tail), "rows")
    return "\n".join([*lines, *shown, *cut_line, *tail]) + "\n"


def gh(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["gh", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def post(env: dict[str, str]) -> int:
    repo, run_url = env["REPO"], env.get("RUN_URL", "")
    try:
        trust = trusted(json.loads(env.get("TRUST", "")))
    except ValueError:
        trust = {}
    if not trust:
        print("no trust decision with a pull-request number; nothing to comment on")
        return 0
    pr, sha = trust["pr"], trust["sha"]
    report = env["REPORT"].encode("utf-8", "replace") if "REPORT" in env else None
    changed = env.get("BASELINES_CHANGED") == "true"
    body = build_body(trust, env.get("GPU_RESULT", ""), report, changed, run_url)
    if env.get("ACT"):
        print(body)  # under act GitHub is out of reach: the comment is shown, not posted
        return 0
    head = json.loads(gh("api", f"repos/{repo}/pulls/{pr}")).get("head", {}).get("sha")
    if sha and head != sha:
        print(f"commit {sha[:12]} is no longer the head of #{pr} ({str(head)[:12]}): not posted")
        return 0
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
    print(f"commented on #{pr} ({len(body)} characters)")
    return 0


def report_failure(line: str | None) -> str:
    """Why the GPU job must fail whatever the gate's exit status said, or '': no report,
    an unreadable one, no judged case, or a row that fails. The gate's status is the
    process's, and the kernel's code runs in that process: it ended a run with status 0
    after a regression was recorded (pytest.exit, an atexit hook: the third red team)."""
    if line is None:
        return "the performance gate wrote no report"
    try:
        report = json.loads(line)
        table, _ = rows(report)
    except (ValueError, Unreadable) as exc:
        return f"the performance gate's report is unreadable ({str(exc)[:80]})"
    if not table:
        return "the performance gate judged no case"
    gap = incomplete(report)
    if gap:
        return f"the performance gate's report is incomplete: {gap}"
    bad = failing(report)
    if bad:
        return f"the report holds {len(bad)} failing case(s): {', '.join(bad[:5])}"
    return ""


def main(argv: list[str]) -> int:
    if argv[:1] == ["handoff"] and len(argv) == 2:
        line = handoff(Path(argv[1])) if Path(argv[1]).is_file() else None
        if line is not None:
            # One line of ASCII JSON: no newline can end the value early.
            with open(os.environ["GITHUB_OUTPUT"], "a") as fh:
                fh.write(f"report={line}\n")
        why = report_failure(line)
        if why:
            print(f"::error title=conv3d-perf::{why}")
            return 1
        return 0
    if argv == ["post"]:
        return post(dict(os.environ))
    print(__doc__.rsplit("\n\n", 1)[-1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
