"""The update workflow's hand-over: new baseline files from the measuring job's artifact,
checked by the default branch's own rules, copied into baselines/, and the pull request's
body written from what changed, never from text in the artifact.

Runs in the propose job on GitHub's runner, in a checkout of the default branch, with the
standard library only (`PYTHONPATH=.` for this repository's checker):

    python3 .github/scripts/propose_baselines.py NEW_DIR BODY_FILE

Takes only files named like a GPU model's baseline (`nvidia-geforce-rtx-4090.json`), regular
and no larger than a baseline may be. Any problem in any of them: one line each (file,
case, field), exit 1, nothing copied. Otherwise the files are copied and BODY_FILE gets the
entries each file changes (as `conv3d-perf diff-baselines` lists them) and the file's diff,
capped under GitHub's limit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from untrusted import fenced, fit, inline, room

from pytest_conv3d_perf.baseline import changed_entries, read_file

FILE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,100}\.json")


def candidates(new_dir: Path) -> tuple[list[Path], list[str]]:
    """The artifact's baseline files, and a line for each other file that was left out."""
    files, skipped = [], []
    for path in sorted(new_dir.glob("*.json")):
        if not FILE_NAME.fullmatch(path.name):
            skipped.append(f"{inline(path.name)}: not a baseline file's name")
        elif path.is_symlink() or not path.is_file():
            skipped.append(f"{inline(path.name)}: not a regular file")
        else:
            files.append(path)
    return files, skipped


def body(changes: dict[str, list[str]], diff: str, run_url: str, skipped: list[str]) -> str:
    run = f"[this run]({run_url})" if re.fullmatch(r"https://[\w./-]+", run_url) else "a run"
    head = [
        f"Baselines measured on the GPU runner by {run} of the update workflow, checked with "
        "`conv3d-perf check-baselines` before this pull request was opened.",
        "",
        "A pull request opened by a workflow starts no other workflow: close and reopen it "
        "to run the CPU checks.",
        "",
        "### Entries",
        "",
    ]
    entries = [
        f"- {inline(name)}: {inline(line, 200)}"
        for name, lines in sorted(changes.items())
        for line in lines
    ]
    entries += [f"- left out of the artifact: {line}" for line in skipped]
    # The entries first, up to half the room; the diff takes what is left.
    entries, entries_cut = fit(entries, room(head) // 2, "entries")
    middle = [*entries, *entries_cut, "", "### Diff", ""]
    block = fenced(diff, "diff")
    lines, lines_cut = fit(block[1:-1], room(head, middle, block[:1], block[-1:]), "diff lines")
    return "\n".join([*head, *middle, block[0], *lines, block[-1], *lines_cut]) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: propose_baselines.py NEW_DIR BODY_FILE RUN_URL", file=sys.stderr)
        return 2
    new_dir, body_file, run_url = Path(argv[0]), Path(argv[1]), argv[2]
    baselines = Path("baselines")
    files, skipped = candidates(new_dir)
    if not files:
        print("::error::the artifact holds no baseline file")
        return 1
    checked = {path: read_file(path) for path in files}
    found = [line for _, lines in checked.values() for line in lines]
    for line in found:
        print(f"::error::{line}")
    if found:
        print(f"{len(found)} problem(s): no pull request opened, baselines/ left as it is")
        return 1
    changes = {}
    for path, (entries, _) in checked.items():
        target = baselines / path.name
        old = read_file(target)[0] if target.is_file() else {}
        changes[path.name] = changed_entries(old, entries)
        shutil.copyfile(path, target)
    names = [str(baselines / path.name) for path in files]
    subprocess.run(["git", "add", "--", *names], check=True)
    diff = subprocess.run(
        ["git", "diff", "--cached", "--no-color", "--no-ext-diff", "--", *names],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body_file.write_text(body(changes, diff, run_url, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
