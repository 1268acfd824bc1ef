"""Untrusted text in GitHub Markdown (pull-request comments and bodies), standard library
only: these scripts run from a sparse checkout with nothing installed.

- ``clean``: drops what reorders or hides text (bidi controls such as U+202E and U+2066,
  zero-width characters such as U+200B, control characters, NUL, lone surrogates): every
  character ``str.isprintable`` refuses, spaces aside.
- ``inline``: cleaned text as inline code, which GitHub renders with no links, images,
  mentions or markup.
- ``fenced``: cleaned lines in a code block whose fence is longer than any backtick run in
  them, so the text cannot close it.
- ``fit`` and ``room``: a body under GitHub's 65,536-character limit, with a line saying
  what was cut.
- ``read_limited``: a file's first bytes, refusing one past a size bound unread.
"""

from __future__ import annotations

import re
from pathlib import Path

# GitHub refuses a comment or pull-request body over 65,536 characters; an update that fails
# leaves the old body, an old "passed" with it. The margin covers characters GitHub counts
# twice (UTF-16) and the line saying what was cut.
BODY_LIMIT = 60_000


class TooLarge(Exception):
    pass


def clean(text: str) -> str:
    return "".join(ch for ch in text if ch == " " or ch.isprintable())


def inline(value: object, limit: int = 60) -> str:
    text = re.sub(r"[`|]", "'", clean(str(value)))[:limit]
    return f"`{text}`" if text.strip() else "`?`"


def fenced(text: str, info: str = "") -> list[str]:
    lines = [clean(line) for line in text.splitlines()]
    longest = max((len(run) for run in re.findall(r"`+", "\n".join(lines))), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *lines, fence]


def fit(rows: list[str], budget: int, what: str) -> tuple[list[str], list[str]]:
    """As many of ``rows`` as fit in ``budget`` characters (a newline each), and a line
    saying how many ``what`` were cut and why, if any were."""
    budget -= 200  # the line saying what was cut
    kept: list[str] = []
    for row in rows:
        budget -= len(row) + 1
        if budget < 0:
            break
        kept.append(row)
    if len(kept) == len(rows):
        return kept, []
    return kept, [
        f"({len(rows) - len(kept)} of {len(rows)} {what} not shown: GitHub holds a body to "
        "65,536 characters. The run has them all.)"
    ]


def room(*parts: list[str]) -> int:
    """What is left of BODY_LIMIT after these lines."""
    return BODY_LIMIT - sum(len(line) + 1 for part in parts for line in part)


def read_limited(path: Path, limit: int) -> bytes:
    """The file's bytes; TooLarge past ``limit`` without reading further. OSError passes."""
    with open(path, "rb") as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"larger than {limit} bytes")
    return raw
