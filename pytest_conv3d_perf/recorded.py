"""The kernel as it was at a baseline entry's commit: read from git into a module of its
own (the working tree untouched), so the gate can time it beside today's in one process.

A stored number is a claim about a machine on a day; the recorded code is a fact. Timed
interleaved with today's code, it tells a change of the code from a change of the machine
(notes/gate-quality.md)."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.target import source_file


@dataclass(frozen=True)
class Recorded:
    """The recorded function, or why there is none (then the stored number decides)."""

    fn: Callable[..., object] | None
    why: str = ""
    same_code: bool = False


def repository_path(fn: object, root: Path) -> str:
    """``fn``'s source file relative to the git work tree holding ``root``, or ''."""
    path = source_file(fn)
    top = _git(root, "rev-parse", "--show-toplevel")
    if path is None or top is None:
        return ""
    try:
        return path.resolve().relative_to(Path(top).resolve()).as_posix()
    except ValueError:
        return ""


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# A kernel's time belongs to its source and to the compiler and library that built and run
# it: with the same source and the same software, a moved number is the machine's.
SOFTWARE = ("torch", "triton")


def load_recorded(
    fn: object,
    entry: BaselineEntry,
    root: Path,
    today_hash: str,
    software: Mapping[str, object] | None = None,
) -> Recorded:
    """``software``: today's versions (``SOFTWARE`` keys of the device info)."""
    commit = str(entry.environment.get("commit", ""))
    name = getattr(fn, "__name__", "")
    if not entry.kernel_file or not commit or not name:
        return Recorded(
            None,
            "the entry names no kernel file and commit in a git repository (recorded by an "
            "older version, or outside git): it cannot be confirmed against its code; "
            "re-record it with `conv3d-perf update-baselines` in the repository",
        )
    if entry.kernel_hash and entry.kernel_hash == today_hash:
        then, today = entry.environment, software or {}
        moved = [
            f"{key} {then[key]} -> {today[key]}"
            for key in SOFTWARE
            if then.get(key) and today.get(key) and str(then[key]) != str(today[key])
        ]
        if not moved:
            return Recorded(None, "", same_code=True)
        # The recorded code is today's code: an A/B of it against itself would run on
        # today's software too and could not see what the upgrade did.
        return Recorded(
            None,
            "the kernel's source is the recorded one but the software moved ("
            + ", ".join(moved)
            + "); the stored number decides",
        )
    text = _git(root, "show", f"{commit}:{entry.kernel_file}")
    if text is None:
        return Recorded(
            None,
            f"the baseline's commit {commit[:10]} (or its {entry.kernel_file}) is not in "
            "this clone's history (a shallow clone?); the stored number decides",
        )
    folder = Path(tempfile.mkdtemp(prefix="conv3d-recorded-"))
    key = hashlib.sha256(f"{commit}:{entry.kernel_file}".encode()).hexdigest()[:12]
    module_name = f"conv3d_perf_recorded_{key}"
    path = folder / f"{module_name}.py"
    path.write_text(text + "\n")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # Triton and dataclasses look modules up there
    try:
        spec.loader.exec_module(module)
        recorded = getattr(module, name)
    except Exception as exc:  # the old code may not import today: say so, do not crash
        sys.modules.pop(module_name, None)
        return Recorded(
            None,
            f"the kernel at {commit[:10]} does not load today ({type(exc).__name__}: "
            f"{str(exc)[:120]}); the stored number decides",
        )
    return Recorded(recorded)
