"""The pull-request gate's tree: the base commit's harness with the head's code under test.

A pull request must not supply the rules it is judged by (DESIGN.md, "The verdict belongs
to the base"): each of an ini threshold, a marker, a case file, ``addopts``, a conftest
hook and a renamed test once turned a 5% regression into a pass. So the GPU job checks out
the base commit, puts the head's kernel package (the top-level package of the configured
``conv3d_kernel`` and ``conv3d_model``, as the base configures them) in place of the
base's, and runs the base's tests with ``--conv3d-against BASE``. Everything else the pull
request changes is listed for the reviewer and takes effect after merge.
"""

from __future__ import annotations

import configparser
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_conv3d_perf.sides import HARNESS, blobs, extract, git, resolve

# Where pytest reads its configuration, in its order of precedence.
CONFIG_FILES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml")
CONFIG_FILES += ("tox.ini", "setup.cfg")


Reader = Callable[[str], "str | None"]  # a file's text in one tree, or None


class PullRequestError(RuntimeError):
    """The tree cannot be composed; the message says why in one line."""


def _ini_of(name: str, text: str) -> dict[str, str] | None:
    """The pytest ini values one configuration file holds, or None where it holds none
    (pytest then looks at the next file)."""
    if name.endswith(".toml"):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None
        if name == "pyproject.toml":
            table = data.get("tool", {}).get("pytest")
            if table is None:
                return None
            table = table.get("ini_options", table)
        else:
            table = data.get("pytest", {})
        return {k: str(v) for k, v in table.items()}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    section = {"setup.cfg": "tool:pytest"}.get(name, "pytest")
    if not parser.has_section(section):
        return {} if name in ("pytest.ini", ".pytest.ini") else None
    return dict(parser.items(section))


def pytest_ini(read: Reader) -> tuple[str, dict[str, str]]:
    """The configuration file pytest would use and its ini values; ``read(name)`` returns
    a file's text or None."""
    for name in CONFIG_FILES:
        text = read(name)
        if text is None:
            continue
        values = _ini_of(name, text)
        if values is not None:
            return name, values
    return "", {}


def _cases_table(text: str | None) -> object:
    if text is None:
        return None
    try:
        return tomllib.loads(text).get("tool", {}).get("conv3d-perf")
    except tomllib.TOMLDecodeError:
        return "(not valid TOML)"


def kernel_paths(values: dict[str, str], exists: Callable[[str], bool]) -> list[str]:
    """The repository paths that hold the configured kernel and model: the top-level
    package (or module) of each ``module:attribute``. ``exists(path)``: whether the tree
    has it."""
    paths = []
    for key in ("conv3d_kernel", "conv3d_model"):
        spec = values.get(key, "").strip()
        if not spec:
            continue
        top = spec.partition(":")[0].split(".")[0]
        if top == HARNESS:
            raise PullRequestError(f"{key} = {spec}: the plugin cannot be the code under test")
        path = top if exists(top) else f"{top}.py"
        if path not in paths:
            paths.append(path)
    if not paths:
        raise PullRequestError(
            "the base configures no conv3d_kernel or conv3d_model: nothing to take from the head"
        )
    return paths


def configured_kernel_moved(base: dict[str, str], head: dict[str, str]) -> str:
    """'conv3d_kernel: a -> b' where the head configures another kernel or model, else ''."""
    moved = [
        f"{key}: {base.get(key, '(unset)')} -> {head.get(key, '(unset)')}"
        for key in ("conv3d_kernel", "conv3d_model")
        if base.get(key, "").strip() != head.get(key, "").strip()
    ]
    return "; ".join(moved)


@dataclass(frozen=True)
class RuleChange:
    what: str  # the kind of rule
    path: str
    detail: str


def classify(path: str, config_file: str, case_files: frozenset[str]) -> str:
    if path.startswith("baselines/"):
        return "baselines"
    if path == config_file or path in CONFIG_FILES:
        return "pytest configuration"
    if path in case_files or path == f"{HARNESS}/suite.toml":
        return "cases"
    if path.startswith(f"{HARNESS}/"):
        return "the plugin"
    name = path.rsplit("/", 1)[-1]
    if path.startswith("tests/") or name == "conftest.py" or name.startswith("test_"):
        return "tests and conftest"
    if path.startswith((".github/", ".ci/")):
        return "workflows and CI"
    if name.endswith((".py", ".json", ".toml", ".yaml", ".yml", ".cfg", ".txt", ".so")):
        # The head's kernel package runs with the base's copy of these in the gate: a
        # change here that the kernel reads is not measured (issue 25's red team).
        return "code or data outside the kernel package (not measured: the base's copy ran)"
    return "other files"


_STATUS = {"A": "added", "M": "changed", "D": "deleted", "T": "changed"}


def rule_changes(
    changed: list[tuple[str, str]],
    under_test: list[str],
    base_read: Reader,
    head_read: Reader,
) -> list[RuleChange]:
    """What a pull request changes outside the code under test: each file with its kind,
    and, for the pytest configuration, each ini value that moved."""
    config_file, base_ini = pytest_ini(base_read)
    _, head_ini = pytest_ini(head_read)
    case_files = frozenset(base_ini.get("conv3d_cases_file", "").split())
    out = []
    for status, path in changed:
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in under_test):
            continue
        what = classify(path, config_file, case_files)
        out.append(RuleChange(what, path, _STATUS.get(status[:1], status)))
        if what == "pytest configuration":
            for key in sorted(set(base_ini) | set(head_ini)):
                if base_ini.get(key) != head_ini.get(key):
                    out.append(
                        RuleChange(
                            what,
                            path,
                            f"{key}: {base_ini.get(key, '(unset)')} -> "
                            f"{head_ini.get(key, '(unset)')}",
                        )
                    )
            if path == "pyproject.toml" and _cases_table(base_read(path)) != _cases_table(
                head_read(path)
            ):
                out.append(RuleChange("cases", path, "[tool.conv3d-perf] changed"))
    return out


def markdown(changes: list[RuleChange], under_test: list[str], head: str) -> str:
    lines = [
        "### What this pull request changes among the rules\n",
        f"The gate ran the base commit's tests, plugin and settings on the head's "
        f"{', '.join(plain(p) for p in under_test)} ({plain(head[:10])}). ",
    ]
    rules = [c for c in changes if c.what != "baselines"]
    if not rules:
        lines[-1] += "The pull request changes none of the rules.\n"
        return "".join(lines)
    lines[-1] += "These changes take effect after merge, not in this run:\n\n"
    lines += [f"- {c.what}: {plain(c.path)} {plain(c.detail)}\n" for c in rules]
    return "".join(lines)


def plain(text: str) -> str:
    """Untrusted text as inline code: no links, images or mentions, and none of the
    characters that reorder or hide text (bidi controls and zero-width characters are
    format characters, which ``isprintable`` refuses, as it refuses control characters)."""
    shown = "".join(ch if ch.isprintable() else " " for ch in text.replace("`", "'"))
    return "`" + shown[:200] + "`"


def _reader(root: Path, sha: str) -> Reader:
    def read(path: str) -> str | None:
        done = git(root, "show", f"{sha}:{path}")
        return done.stdout if done.returncode == 0 else None

    return read


# Files Python loads in place of a module's source (bytecode, extension modules): in the
# head's package they would run code no reviewer's diff shows (the red team: an
# unchecked-hash .pyc beside byte-identical sources passed a hidden slowdown).
COMPILED = (".pyc", ".pyo", ".so", ".pyd")
# Files pytest reads as part of the rules wherever they lie under the rootdir: a
# conftest.py in the package set the exit status to 0 after a regression (the third red
# team), and test files or ini files there would bring tests or settings of the head's.
# Every configuration file name pytest reads (CONFIG_FILES), though it reads them at the
# rootdir only: the fourth red team's pytest.toml in the package was never read, and
# refusing it keeps the rule one list.
RULE_FILES = ("conftest.py", *CONFIG_FILES)


def refused_files(root: Path, sha: str, paths: list[str]) -> list[tuple[str, str]]:
    """The files under ``paths`` in commit ``sha`` that the head's package may not hold,
    each with why: compiled code, the harness's files, and anything not text (a zip
    archive named like data, put on sys.path, ran code no diff shows: the third red
    team)."""
    if not paths:
        return []
    out = []
    for path, (_, body) in sorted(blobs(root, sha, tuple(paths)).items()):
        name = path.rsplit("/", 1)[-1]
        if path.endswith(COMPILED) or ".so." in name or "__pycache__" in path.split("/"):
            out.append((path, "compiled code, which Python runs in place of the source"))
        elif name in RULE_FILES or (
            name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
        ):
            out.append((path, "a file pytest reads as part of the rules"))
        elif b"\0" in body or not _is_text(body):
            out.append((path, "not text: code in it (an archive, a library) is not reviewed"))
    return out


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def compose(root: Path, base: str, head: str) -> tuple[list[str], list[RuleChange], str]:
    """Put the head's kernel package into the work tree at ``root``, which must be a
    clean checkout of ``base``; return the paths taken from the head, the rules the
    pull request changes, and the head's sha."""
    top = git(root, "rev-parse", "--show-toplevel").stdout.strip()
    if top and Path(top).resolve() != root.resolve():
        raise PullRequestError(f"run it at the repository's top ({top}), not in {root}")
    base_sha, head_sha = resolve(root, base), resolve(root, head)
    current = git(root, "rev-parse", "HEAD").stdout.strip()
    if current != base_sha:
        raise PullRequestError(
            f"the work tree is at {current[:10]}, not the base {base_sha[:10]}: check out the "
            "base commit first (its tests, plugin and settings judge the pull request)"
        )
    if git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise PullRequestError("the work tree has changes: this command overwrites files there")
    base_read, head_read = _reader(root, base_sha), _reader(root, head_sha)
    _, ini = pytest_ini(lambda name: (root / name).read_text() if (root / name).is_file() else None)
    under_test = kernel_paths(ini, lambda p: (root / p).is_dir())
    moved = configured_kernel_moved(ini, pytest_ini(head_read)[1])
    if moved:
        # The base's configuration would time the base's choice of code while the head
        # makes another function the project's kernel: nothing here could judge it.
        raise PullRequestError(
            f"the pull request changes which kernel is under test ({moved}): the gate judges "
            "the head's kernel by the base's configuration, so that change must land on its "
            "own first, with the kernel it names unchanged"
        )
    refused = refused_files(root, head_sha, under_test)
    if refused:
        raise PullRequestError(
            "the head's kernel package holds files the gate does not take from a pull "
            "request: "
            + "; ".join(f"{plain(p)} ({why})" for p, why in refused[:3])
            + ". Take them out of the pull request (the harness's files come from the base)"
        )
    for path in under_test:
        target = root / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        # Exactly the head's files (not git archive, which obeys .gitattributes); a path
        # the head deleted stays deleted, and the tests say so when they import it.
        extract(root, head_sha, root, (path,))
    listing = git(root, "diff", "--name-status", "--no-renames", "-z", base_sha, head_sha)
    fields = listing.stdout.split("\0")
    changed = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
    return under_test, rule_changes(changed, under_test, base_read, head_read), head_sha
